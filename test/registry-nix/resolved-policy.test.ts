// Policies hold on what a name resolves to (issue 21, point 4), and what the request got wrong
// in Nix is a 4xx naming it (point 11): real registry, real Nix, the example package set.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { initRepo } from '../helpers/git.js';

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function pull(r: TestRegistry, name: string, tag = 'latest'): Promise<{ status: number; body: { errors?: Array<{ code: string; message: string }> } }> {
  const res = await fetch(`${r.url}/v2/${name}/manifests/${tag}`, { headers: { Accept: MANIFEST } });
  return { status: res.status, body: (await res.json()) as { errors?: Array<{ code: string; message: string }> } };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nixery-resolved-policy-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('deny list on resolved attribute paths', () => {
  let r: TestRegistry;
  before(async () => {
    // The example set plus an alias, as nixpkgs has many: `greeter` is the derivation of `hello`.
    const withAlias = path.join(dir, 'alias-pkgs');
    await initRepo(withAlias);
    await writeFile(path.join(withAlias, 'default.nix'), `args: let p = import ${EXAMPLE_PKGS} args; in p // { greeter = p.hello; }\n`);
    r = await startRegistry({ NIXERY_PKGS_PATH: withAlias, NIXERY_DENY_PACKAGES: 'hello,_1password,python3Packages.requests', NIXERY_DENY_CLOSURE: 'perl-*' });
  });
  after(() => r.close());

  test('names that resolve to a denied package are refused with 403 naming what they resolved to', async () => {
    for (const [name, shown] of [
      ['hello.out', 'hello.out (hello)'],
      ['1password', '1password (_1password)'],
      ['python3packages.requests.out', 'python3packages.requests.out (python3Packages.requests)'],
      // Denied as written: refused before Nix runs.
      ['python3packages.requests', 'python3packages.requests'],
    ] as const) {
      const { status, body } = await pull(r, name);
      assert.equal(status, 403, `${name}: ${JSON.stringify(body)}`);
      assert.equal(body.errors![0]!.code, 'DENIED');
      assert.equal(body.errors![0]!.message, `package ${shown} is not allowed here: it is denied by NIXERY_DENY_PACKAGES`, name);
    }
  });

  test('an alias of a denied package is refused: it is the same derivation', async () => {
    const { status, body } = await pull(r, 'greeter');
    assert.equal(status, 403, JSON.stringify(body));
    assert.equal(body.errors![0]!.message, 'package greeter is not allowed here: it is hello, which NIXERY_DENY_PACKAGES denies');
  });

  test('NIXERY_DENY_CLOSURE refuses an image whose closure holds a match, naming the store path; others build', async () => {
    const { status, body } = await pull(r, 'git');
    assert.equal(status, 403, JSON.stringify(body));
    assert.equal(body.errors![0]!.code, 'DENIED');
    assert.match(body.errors![0]!.message, /^package perl-5\.38\.2 is not allowed here: the image's closure contains \/nix\/store\/[a-z0-9]{32}-perl-5\.38\.2, which NIXERY_DENY_CLOSURE denies$/);
    assert.equal((await pull(r, 'tree')).status, 200);
  });
});

describe('failures the request caused are 4xx', () => {
  let r: TestRegistry;
  before(async () => {
    r = await startRegistry({});
  });
  after(() => r.close());

  test('a package that fails to evaluate is 400 PACKAGE_INVALID with Nix\'s message', async () => {
    const { status, body } = await pull(r, 'hello/throws');
    assert.equal(status, 400, JSON.stringify(body));
    assert.equal(body.errors![0]!.code, 'PACKAGE_INVALID');
    assert.match(body.errors![0]!.message, /package throws cannot be evaluated: nixery-example: this attribute throws on purpose/);
  });

  test('a removed package is 404 NAME_UNKNOWN naming it and why', async () => {
    const { status, body } = await pull(r, 'python3packages.removed');
    assert.equal(status, 404, JSON.stringify(body));
    assert.equal(body.errors![0]!.code, 'NAME_UNKNOWN');
    assert.match(body.errors![0]!.message, /python3packages\.removed \(nixery-example: python3Packages\.removed was removed/);
  });
});

test('a commit the git source does not have is 404 MANIFEST_UNKNOWN naming the commit, not a ref Nix guessed', async () => {
  const repo = path.join(dir, 'repo');
  await initRepo(repo, EXAMPLE_PKGS);
  const r = await startRegistry({ NIXERY_PKGS_PATH: '', NIXERY_PKGS_REPO: `file://${repo}` });
  try {
    const commit = '1234567890abcdef1234567890abcdef12345678';
    const { status, body } = await pull(r, 'hello', commit);
    assert.equal(status, 404, JSON.stringify(body));
    assert.equal(body.errors![0]!.code, 'MANIFEST_UNKNOWN');
    assert.equal(body.errors![0]!.message, `manifest unknown: no commit ${commit} on any branch or tag of file://${repo}`);
    assert.doesNotMatch(body.errors![0]!.message, /master/);
  } finally {
    await r.close();
  }
});
