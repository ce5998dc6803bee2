// The explorer's pure parts (web/explorer/lib), run in Node: the treemap's geometry, image names
// from package attributes, pull commands, sizes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { squarify, type Rect } from '../../web/explorer/lib/treemap.js';
import { componentFor, composeName, podName, pullCommands } from '../../web/explorer/lib/names.js';
import { formatBytes, storePathName } from '../../web/explorer/lib/format.js';
import { parseImageName } from '../../src/image/name.js';

test('squarify: areas proportional to the weights, inside the box, no overlaps, zero weights left out', () => {
  const box: Rect = { x: 10, y: 20, w: 960, h: 360 };
  const weights = [5_000_000, 40_000_000, 1, 220_000, 220_000, 9_000, 0, 123_456, 3, 77];
  const placed = squarify(weights, (w) => w, box);
  assert.equal(placed.length, weights.filter((w) => w > 0).length);
  const total = weights.reduce((s, w) => s + w, 0);
  const eps = 1e-6;
  for (const { item, rect } of placed) {
    assert.ok(Math.abs((rect.w * rect.h) / (box.w * box.h) - item / total) < 1e-9, `area of ${item}`);
    assert.ok(rect.x >= box.x - eps && rect.y >= box.y - eps && rect.x + rect.w <= box.x + box.w + eps && rect.y + rect.h <= box.y + box.h + eps, `${item} inside`);
  }
  for (let i = 0; i < placed.length; i++) {
    for (let j = i + 1; j < placed.length; j++) {
      const a = placed[i]!.rect;
      const b = placed[j]!.rect;
      const overlap = Math.max(0, Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x)) * Math.max(0, Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));
      assert.ok(overlap < 1e-6, `${placed[i]!.item} and ${placed[j]!.item} overlap by ${overlap}`);
    }
  }
  // Largest first, and squarish: equal weights in a square give squares.
  assert.equal(placed[0]!.item, 40_000_000);
  for (const { rect } of squarify([1, 1, 1, 1], (w) => w, { x: 0, y: 0, w: 100, h: 100 })) assert.deepEqual([rect.w, rect.h], [50, 50]);
  assert.deepEqual(squarify([], (w: number) => w, box), []);
  assert.deepEqual(squarify([0, 0], (w) => w, box), []);
});

test('image names from attributes: lower case, digit-leading names without _, invalid ones refused', () => {
  assert.equal(componentFor('hello'), 'hello');
  assert.equal(componentFor('python3Packages.requests'), 'python3packages.requests');
  assert.equal(componentFor('_1password'), '1password');
  assert.equal(componentFor('perlPackages.JSON'), 'perlpackages.json');
  assert.equal(componentFor("xorg.font'quote"), null);
  assert.equal(componentFor('a..b'), null);
  assert.equal(composeName({ packages: [], shell: false, arm64: false, tag: 'latest' }), null);
  const name = composeName({ packages: ['git', 'python3packages.requests'], shell: true, arm64: true, tag: 'latest' })!;
  assert.equal(name, 'arm64/shell/git/python3packages.requests');
  // The registry reads it as meant: aarch64, with the shell's packages.
  const image = parseImageName(name);
  assert.equal(image.arch.imageArch, 'arm64');
  assert.ok(image.packages.includes('bashInteractive') && image.packages.includes('git'));
});

test('pull commands: each client, plain HTTP flags, a valid pod name', () => {
  const cmds = pullCommands('registry.local:8080', 'shell/git', 'v1', true);
  assert.deepEqual(cmds.map((c) => c.id), ['docker', 'podman', 'containerd', 'kubernetes']);
  const text = Object.fromEntries(cmds.map((c) => [c.id, c.text]));
  assert.equal(text.docker, 'docker pull registry.local:8080/shell/git:v1\ndocker run --rm -it registry.local:8080/shell/git:v1');
  assert.match(text.podman!, /^podman pull --tls-verify=false registry\.local:8080\/shell\/git:v1$/m);
  assert.match(text.containerd!, /^ctr images pull --plain-http registry\.local:8080\/shell\/git:v1$/m);
  assert.match(text.kubernetes!, /^ {6}image: registry\.local:8080\/shell\/git:v1$/m);
  assert.match(text.kubernetes!, /^ {2}name: nixery-shell-git$/m);
  // Over TLS no flags; without a shell nothing to run.
  const tls = pullCommands('r.example', 'hello', 'latest', false);
  assert.equal(tls.find((c) => c.id === 'podman')!.text, 'podman pull r.example/hello:latest');
  assert.equal(tls.find((c) => c.id === 'containerd')!.text, 'ctr images pull r.example/hello:latest');
  for (const n of ['python3packages.requests/1password', 'a'.repeat(200), '---']) {
    assert.match(podName(n), /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, n);
  }
});

test('sizes and names as people read them', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(42 * 1024 * 1024), '42 MiB');
  assert.equal(formatBytes(null), '–');
  assert.equal(storePathName('/nix/store/0123456789abcdfghijklmnpqrsvwxyz-glibc-2.40-66'), 'glibc-2.40-66');
});
