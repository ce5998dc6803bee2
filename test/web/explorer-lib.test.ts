// The explorer's pure parts (web/explorer/lib), run in Node: the treemap's geometry, image names
// from package attributes, canonical names, pull commands (Kubernetes included), sizes, digests
// and times, the image config form, layer groups.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { squarify, type Rect } from '../../web/explorer/lib/treemap.js';
import { canonicalName, componentFor, composeName, podName, pullCommands } from '../../web/explorer/lib/names.js';
import { formatBytes, formatTime, percent, shortDigest, storePathName } from '../../web/explorer/lib/format.js';
import { EMPTY_FIELDS, imageConfig, parseCommand } from '../../web/explorer/lib/config.js';
import { groupLayers } from '../../web/explorer/lib/layers.js';
import { parseImageName } from '../../src/image/name.js';
import type { LayerDetails } from '../../src/service/explorer-types.js';

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
  // The pod runs the image's own command: nothing forces `sleep` (hello has no coreutils); a shell gets a terminal.
  assert.doesNotMatch(text.kubernetes!, /command:|sleep/);
  assert.match(text.kubernetes!, /^ {6}tty: true$/m);
  assert.match(text.kubernetes!, /^ {2}restartPolicy: Never$/m);
  assert.doesNotMatch(text.kubernetes!, /securityContext/);
  // Over TLS no flags; without a shell nothing to run.
  const tls = pullCommands('r.example', 'hello', 'latest', false);
  assert.equal(tls.find((c) => c.id === 'podman')!.text, 'podman pull r.example/hello:latest');
  assert.equal(tls.find((c) => c.id === 'containerd')!.text, 'ctr images pull r.example/hello:latest');
  const hello = tls.find((c) => c.id === 'kubernetes')!.text;
  assert.doesNotMatch(hello, /command:|sleep|tty/);
  // nonroot: the restricted Pod Security Standard's runAsNonRoot, with the meta-package's uid.
  const nonroot = pullCommands('r.example', 'nonroot/shell/hello', 'latest', false).find((c) => c.id === 'kubernetes')!.text;
  assert.match(nonroot, /^ {6}securityContext:\n {8}runAsNonRoot: true\n {8}runAsUser: 65532$/m);
  // By digest: every client pulls name@digest.
  const digest = `sha256:${'ab'.repeat(32)}`;
  for (const c of pullCommands('r.example', 'hello', 'latest', false, digest)) assert.ok(c.text.includes(`r.example/hello@${digest}`) && !c.text.includes(':latest'), c.id);
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

test('canonical names: as the registry shows and pulls them, whatever the typed order', () => {
  assert.equal(canonicalName('hello/slow2/big'), 'big/hello/slow2');
  assert.equal(canonicalName('hello/shell'), 'hello/shell'); // a package called shell, not the meta-package
  assert.equal(canonicalName('shell/hello'), 'shell/hello');
  // Meta-package names after a package are packages of those names: they stay behind one.
  assert.equal(canonicalName('git/arm64/shell'), 'git/arm64/shell');
  assert.equal(canonicalName('arm64/shell/git/curl'), 'arm64/shell/curl/git');
  assert.equal(canonicalName('Hello'), null);
  // nonroot is a meta-package: it leads, after arm64 and before shell.
  assert.equal(canonicalName('hello/shell/nonroot'), 'hello/nonroot/shell'); // packages of those names, after one
  assert.equal(canonicalName('shell/nonroot/hello'), 'nonroot/shell/hello');
  // The composer's meta-packages lead, so they are read as meta-packages.
  assert.equal(composeName({ packages: ['hello'], shell: true, arm64: false, nonroot: true, tag: 'latest' }), 'nonroot/shell/hello');
});

test('digests shortened (never mid-line), times with date and zone, percentages', () => {
  const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;
  assert.equal(shortDigest(digest), 'sha256:0123456789ab…');
  assert.equal(shortDigest('sha256:abc'), 'sha256:abc');
  assert.equal(formatTime('2026-12-07T03:04:05.678Z'), '2026-12-07 03:04:05 UTC');
  assert.equal(formatTime('2026-12-07T23:30:00+02:00'), '2026-12-07 21:30:00 UTC');
  assert.equal(formatTime('not a time'), 'not a time');
  assert.equal(percent(1, 3), '33 %');
  assert.equal(percent(5, 0), '0 %');
  assert.equal(percent(999, 1000), '99 %');
  assert.equal(percent(7, 7), '100 %');
});

test('image config fields: commands as words or JSON, env and labels by line, ports, nothing filled means no config', () => {
  assert.deepEqual(parseCommand('/bin/hello -g "hi there"'), ['/bin/hello', '-g', 'hi there']);
  assert.deepEqual(parseCommand(`sh -c 'echo "$HOME"'`), ['sh', '-c', 'echo "$HOME"']);
  assert.deepEqual(parseCommand('a\\ b ""'), ['a b', '']);
  assert.deepEqual(parseCommand('["sh", "-c", "echo hi"]'), ['sh', '-c', 'echo hi']);
  assert.throws(() => parseCommand('[1, 2]'), /JSON array of strings/);
  assert.throws(() => parseCommand('echo "open'), /unclosed/);
  assert.deepEqual(imageConfig(EMPTY_FIELDS), { config: undefined, errors: [] });
  assert.deepEqual(imageConfig({ ...EMPTY_FIELDS, user: '  ', env: '\n \n' }), { config: undefined, errors: [] });
  const full = imageConfig({
    user: '65532:65532',
    entrypoint: '/bin/hello',
    cmd: '["-g", "hi"]',
    env: 'GREETING=hi there\n\nEMPTY=\n',
    workingDir: '/tmp',
    exposedPorts: '8080, 53/udp',
    labels: 'org.example.team=infra\na=b=c',
    stopSignal: 'SIGINT',
  });
  assert.deepEqual(full, {
    config: {
      user: '65532:65532',
      entrypoint: ['/bin/hello'],
      cmd: ['-g', 'hi'],
      env: ['GREETING=hi there', 'EMPTY='],
      workingDir: '/tmp',
      exposedPorts: ['8080/tcp', '53/udp'],
      labels: { 'org.example.team': 'infra', a: 'b=c' },
      stopSignal: 'SIGINT',
    },
    errors: [],
  });
  const bad = imageConfig({ ...EMPTY_FIELDS, env: 'NOVALUE', exposedPorts: '80/http', cmd: '["x"', labels: '=x' });
  assert.equal(bad.config, undefined);
  assert.deepEqual(bad.errors.map((e) => e.field).sort(), ['cmd', 'env', 'exposedPorts', 'labels']);
});

test('layer groups: shared runtimes, packages, the customisation layer, with totals; manifest order inside', () => {
  const layer = (index: number, kind: LayerDetails['kind'], shared: boolean, size: number, unpacked: number | null, paths: number): LayerDetails => ({
    index, kind, shared, size, uncompressedSize: unpacked, paths, digest: `sha256:${String(index).padStart(64, '0')}`, diffId: '', storePaths: null, links: null, popularity: null, runtime: shared ? `rt${index}` : null,
  });
  const layers = [layer(1, 'store-paths', true, 100, 1000, 1), layer(2, 'store-paths', false, 10, 20, 3), layer(3, 'store-paths', true, 50, null, 2), layer(4, 'store-paths', false, 5, 7, 1), layer(5, 'customisation', false, 1, 2, 4)];
  const groups = groupLayers(layers);
  assert.deepEqual(groups.map((g) => [g.id, g.layers.map((l) => l.index)]), [['runtimes', [1, 3]], ['packages', [2, 4]], ['customisation', [5]]]);
  assert.deepEqual(groups[0]!.totals, { layers: 2, size: 150, uncompressedSize: null, storePaths: 3 });
  assert.deepEqual(groups[1]!.totals, { layers: 2, size: 15, uncompressedSize: 27, storePaths: 4 });
  assert.deepEqual(groups[2]!.totals, { layers: 1, size: 1, uncompressedSize: 2, storePaths: 0 });
  // Every layer in exactly one group; empty groups left out.
  assert.equal(groups.reduce((s, g) => s + g.layers.length, 0), layers.length);
  assert.deepEqual(groupLayers([layers[4]!]).map((g) => g.id), ['customisation']);
});
