import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseImageName, parseReference, pullName, validateName, validateTag, AMD64, ARM64 } from '../../src/image/name.js';
import { InvalidNameError, InvalidTagError } from '../../src/errors.js';

// Nixery's builder_test.go vectors, plus de-duplication (Nixery kept duplicates).
const vectors: Array<[string, string, string[]]> = [
  ['hello', 'hello', ['cacert', 'hello', 'iana-etc']],
  ['hello/git/htop', 'git/hello/htop', ['cacert', 'git', 'hello', 'htop', 'iana-etc']],
  ['shell', 'shell', ['bashInteractive', 'cacert', 'coreutils', 'iana-etc', 'moreutils', 'nano']],
  ['shell/htop', 'htop/shell', ['bashInteractive', 'cacert', 'coreutils', 'htop', 'iana-etc', 'moreutils', 'nano']],
  ['shell/coreutils', 'coreutils/shell', ['bashInteractive', 'cacert', 'coreutils', 'iana-etc', 'moreutils', 'nano']],
  ['shell/shell', 'shell', ['bashInteractive', 'cacert', 'coreutils', 'iana-etc', 'moreutils', 'nano']],
  ['hello/cacert/hello', 'cacert/hello', ['cacert', 'hello', 'iana-etc']],
];

for (const [input, name, packages] of vectors) {
  test(`parseImageName(${input})`, () => {
    const image = parseImageName(input, 'latest');
    assert.equal(image.name, name);
    assert.deepEqual(image.packages, packages);
    assert.deepEqual(image.arch, AMD64);
    assert.equal(image.tag, 'latest');
  });
}

test('arm64 meta-package selects aarch64-linux and adds no package', () => {
  const image = parseImageName('shell/arm64');
  assert.deepEqual(image.arch, ARM64);
  assert.equal(image.name, 'arm64/shell');
  assert.deepEqual(image.packages, parseImageName('shell').packages);
});

test('meta-packages count only as a leading run', () => {
  const image = parseImageName('hello/shell');
  assert.deepEqual(image.packages, ['cacert', 'hello', 'iana-etc', 'shell']);
  assert.deepEqual(parseImageName('hello/arm64').arch, AMD64);
});

test('the order of components never changes the package set', () => {
  assert.deepEqual(parseImageName('hello/busybox'), parseImageName('busybox/hello'));
});

test('dotted and digit-leading names pass through', () => {
  assert.deepEqual(parseImageName('python3packages.requests/1password').packages, [
    '1password',
    'cacert',
    'iana-etc',
    'python3packages.requests',
  ]);
});

test('invalid names are rejected with a message saying what is wrong', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['Hello', /upper-case/],
    ['hello//git', /component 2 "": it is empty/],
    ['-hello', /component 1/],
    ['hello-', /component 1/],
    ['he$llo', /characters a name cannot have \("\$"\)/],
    ['a'.repeat(256), /256 characters long \(at most 255\)/],
  ];
  for (const [name, message] of cases) {
    assert.throws(() => validateName(name), (err: unknown) => err instanceof InvalidNameError && message.test(err.message), name);
  }
  assert.equal(validateName('a'.repeat(255)), 'a'.repeat(255));
});

test('invalid tags are rejected', () => {
  for (const tag of ['', '.hidden', '-x', 'a:b', 'a/b', 'x'.repeat(129)]) {
    assert.throws(() => validateTag(tag), InvalidTagError, tag);
  }
  for (const tag of ['latest', 'v1.2.3', '_x', '0123456789abcdef0123456789abcdef01234567', 'x'.repeat(128)]) {
    assert.equal(validateTag(tag), tag);
  }
});

test('parseReference splits NAME[:TAG]', () => {
  assert.equal(parseReference('shell/hello:v1').tag, 'v1');
  assert.equal(parseReference('shell/hello').tag, 'latest');
  assert.throws(() => parseReference('shell/hello:'), InvalidTagError);
});

test('pullName: a name that parses back to the same image, meta-packages first', () => {
  for (const [input, expected] of [
    ['hello/shell', 'hello/shell'],
    ['shell/hello', 'shell/hello'],
    ['git/arm64/shell/htop', 'git/htop/arm64/shell'],
    ['cacert/arm64', 'cacert/arm64'],
    ['shell/iana-etc/shell', 'shell/cacert/shell'],
    ['arm64/shell/htop/git', 'arm64/shell/git/htop'],
    ['shell/cacert/hello', 'shell/hello'],
    ['cacert', 'cacert'],
    ['python3packages.requests/1password', '1password/python3packages.requests'],
  ] as const) {
    const image = parseImageName(input);
    assert.equal(pullName(image), expected, input);
    const again = parseImageName(pullName(image));
    assert.deepEqual([again.packages, again.arch], [image.packages, image.arch], input);
  }
});
