// Image config through the build API, the `nonroot` meta-package and `meta.mainProgram` as the
// default command, over HTTP on the stand-in Nix stage: every config field validated (a 400
// naming the field), an image with a config pulled by digest under its name while the tag keeps
// the plain image, the same digest from two registries on one storage and from a fresh one, kept
// by gc and rebuilt when a blob is lost; nonroot's passwd, group and home in the layer.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStandInRegistry, type StandInRegistry } from '../helpers/registry.js';
import { accepted, finalStatus, ociError, postBuild } from '../helpers/build-api.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';
import { blobKey } from '../../src/builder/layout.js';
import { collectGarbage } from '../../src/builder/gc.js';
import type { BuildStatus } from '../../src/service/build-tracker.js';

interface Manifest {
  config: { digest: string };
  layers: Array<{ digest: string }>;
}
interface ImageConfigBlob {
  config: { User?: string; Env: string[]; Entrypoint?: string[]; Cmd?: string[]; WorkingDir?: string; ExposedPorts?: Record<string, object>; Labels: Record<string, string>; StopSignal?: string };
}

const OCI_ACCEPT = { Accept: MEDIA_TYPES.ociManifest };

async function manifestOf(r: StandInRegistry, name: string, reference: string): Promise<{ digest: string; manifest: Manifest; config: ImageConfigBlob }> {
  const res = await fetch(`${r.url}/v2/${name}/manifests/${reference}`, { headers: OCI_ACCEPT });
  const text = await res.text();
  assert.equal(res.status, 200, `${name}@${reference}: ${text}`);
  const manifest = JSON.parse(text) as Manifest;
  const blob = await fetch(`${r.url}/v2/${name}/blobs/${manifest.config.digest}`);
  assert.equal(blob.status, 200);
  return { digest: res.headers.get('docker-content-digest')!, manifest, config: (await blob.json()) as ImageConfigBlob };
}

async function built(r: StandInRegistry, body: unknown): Promise<BuildStatus> {
  const status = await accepted(await postBuild(r, body));
  const done = status.state === 'succeeded' || status.state === 'failed' ? status : await finalStatus(r, status.id);
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  return done;
}

/** The members of a gzip'd tar: name, mode, uid, gid and content. */
function tarMembers(gz: Buffer): Map<string, { mode: number; uid: number; gid: number; type: string; data: Buffer }> {
  const tar = gunzipSync(gz);
  const out = new Map<string, { mode: number; uid: number; gid: number; type: string; data: Buffer }>();
  const octal = (b: Buffer) => parseInt(b.toString('ascii').replace(/\0.*$/, '').trim() || '0', 8);
  for (let at = 0; at + 512 <= tar.length; ) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const prefix = h.subarray(345, 500).toString('utf8').replace(/\0.*$/s, '');
    const size = octal(h.subarray(124, 136));
    const type = String.fromCharCode(h[156]!);
    out.set(prefix ? `${prefix}/${name}` : name, { mode: octal(h.subarray(100, 108)), uid: octal(h.subarray(108, 116)), gid: octal(h.subarray(116, 124)), type, data: tar.subarray(at + 512, at + 512 + size) });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

describe('build API: image config', () => {
  let r: StandInRegistry;
  let storagePath: string;

  before(async () => {
    storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-api-config-'));
    r = await startStandInRegistry({}, { storagePath });
  });
  after(async () => {
    await r.close();
    await rm(storagePath, { recursive: true, force: true });
  });

  test('every field is validated: a bad one is a 400 BODY_INVALID naming the field, and nothing is built', async () => {
    const runs = r.app.builder.buildsRun;
    const cases: Array<[unknown, RegExp]> = [
      ['nope', /^config: must be an object/],
      [[], /^config: must be an object/],
      [{ usr: 'x' }, /^config\.usr: unknown field/],
      [{ user: 65532 }, /^config\.user: must be a string/],
      [{ user: '' }, /^config\.user: must not be empty/],
      [{ user: 'a b' }, /^config\.user: "a b" is not a user/],
      [{ user: '1:2:3' }, /^config\.user: /],
      [{ user: '4294967295' }, /^config\.user: 4294967295 is not a valid id/],
      [{ entrypoint: '/bin/sh' }, /^config\.entrypoint: must be a list of strings/],
      [{ entrypoint: [] }, /^config\.entrypoint: must not be an empty list/],
      [{ entrypoint: [''] }, /^config\.entrypoint\[0\]: must not be empty/],
      [{ cmd: ['a', 3] }, /^config\.cmd\[1\]: must be a string/],
      [{ cmd: ['a\u0000b'] }, /^config\.cmd\[0\]: must not contain a NUL/],
      [{ cmd: Array.from({ length: 65 }, () => 'x') }, /^config\.cmd: has 65 entries \(at most 64\)/],
      [{ cmd: ['x'.repeat(4097)] }, /^config\.cmd\[0\]: is 4097 characters long \(at most 4096\)/],
      [{ env: ['NOEQUALS'] }, /^config\.env\[0\]: "NOEQUALS" is not NAME=value/],
      [{ env: ['A=1', '1X=2'] }, /^config\.env\[1\]: "1X" is not a variable name/],
      [{ env: ['A-B=1'] }, /^config\.env\[0\]: "A-B" is not a variable name/],
      [{ env: ['A=1', 'A=2'] }, /^config\.env\[1\]: A is set twice/],
      [{ env: { A: '1' } }, /^config\.env: must be a list of strings/],
      [{ workingDir: 'srv' }, /^config\.workingDir: "srv" is not an absolute path/],
      [{ workingDir: '/srv/../etc' }, /^config\.workingDir: .* has a \. or \.\. component/],
      [{ workingDir: 7 }, /^config\.workingDir: must be a string/],
      [{ exposedPorts: ['http'] }, /^config\.exposedPorts\[0\]: "http" is not a port/],
      [{ exposedPorts: ['80/tcp', '0/udp'] }, /^config\.exposedPorts\[1\]: "0\/udp" is not a port/],
      [{ exposedPorts: ['70000/tcp'] }, /^config\.exposedPorts\[0\]: /],
      [{ exposedPorts: ['53/icmp'] }, /^config\.exposedPorts\[0\]: /],
      [{ labels: ['a'] }, /^config\.labels: must be an object of strings/],
      [{ labels: { team: 1 } }, /^config\.labels\["team"\]: must be a string/],
      [{ labels: { 'dev.nixery.packages': 'x' } }, /^config\.labels\["dev\.nixery\.packages"\]: the registry sets this label itself/],
      [{ labels: { '-x': 'y' } }, /^config\.labels\["-x"\]: the key must start/],
      [{ labels: { __proto__: 'y' } }, /^config\.labels\["__proto__"\]: the key must start/],
      [{ stopSignal: 'SIGFOO' }, /^config\.stopSignal: "SIGFOO" is not a signal/],
      [{ stopSignal: 0 }, /^config\.stopSignal: 0 is not a signal number/],
      [{ stopSignal: '99' }, /^config\.stopSignal: 99 is not a signal number/],
      [{ stopSignal: true }, /^config\.stopSignal: must be a string/],
    ];
    for (const [config, message] of cases) {
      // JSON.parse keeps "__proto__" as an own key, as a client's body would have it.
      const body = JSON.stringify({ image: 'hello', config }).replace('"labels":{}', '"labels":{"__proto__":"y"}');
      const res = await postBuild(r, body);
      const text = await res.text();
      assert.equal(res.status, 400, `${JSON.stringify(config)}: ${text}`);
      const error = (JSON.parse(text) as { errors: Array<{ code: string; message: string; detail: { field: string } }> }).errors[0]!;
      assert.equal(error.code, 'BODY_INVALID');
      assert.match(error.message, message, JSON.stringify(config));
      assert.equal(error.detail.field, error.message.slice(0, error.message.indexOf(':')));
    }
    await ociError(await postBuild(r, { image: 'hello', conf: {} }), 400, 'BODY_INVALID', /unknown field "conf": expected image \(and platforms, config\)/);
    assert.equal(r.app.builder.buildsRun, runs);
  });

  test('an image with a config is pulled by digest under its name; the tag keeps the plain image', async () => {
    const config = {
      entrypoint: ['/bin/sh', '-c'],
      cmd: ['echo "$GREETING"'],
      env: ['GREETING=hi there', 'PATH=/bin'],
      user: '1000:1000',
      workingDir: '/srv',
      exposedPorts: ['8080/tcp', '53/udp', '53/udp', '443'],
      labels: { team: 'web', 'org.example/tier': 'front' },
      stopSignal: 'term',
    };
    const status = await built(r, { image: 'hello:latest', config });
    assert.deepEqual(status.config, { ...config, exposedPorts: ['53/udp', '443/tcp', '8080/tcp'], labels: { 'org.example/tier': 'front', team: 'web' }, stopSignal: 'SIGTERM' });
    const result = status.result!;
    assert.equal(result.digest, result.manifestDigest, 'one platform: the manifest is what is pulled');
    assert.equal(result.reference, `hello@${result.digest}`);

    const byDigest = await manifestOf(r, 'hello', result.digest);
    assert.equal(byDigest.digest, result.digest);
    const c = byDigest.config.config;
    assert.deepEqual(c.Entrypoint, ['/bin/sh', '-c']);
    assert.deepEqual(c.Cmd, ['echo "$GREETING"']);
    assert.deepEqual(c.Env, ['PATH=/bin', 'SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt', 'GREETING=hi there']);
    assert.equal(c.User, '1000:1000');
    assert.equal(c.WorkingDir, '/srv');
    assert.deepEqual(c.ExposedPorts, { '53/udp': {}, '443/tcp': {}, '8080/tcp': {} });
    assert.equal(c.StopSignal, 'SIGTERM');
    assert.equal(c.Labels.team, 'web');
    assert.equal(c.Labels['dev.nixery.packages'], 'cacert hello iana-etc');

    // The tag: the plain image (hello declares meta.mainProgram: its command).
    const tagged = await manifestOf(r, 'hello', 'latest');
    assert.notEqual(tagged.digest, result.digest);
    assert.deepEqual(tagged.config.config.Cmd, ['/bin/hello']);
    assert.equal(tagged.config.config.Entrypoint, undefined);
    assert.equal(tagged.config.config.User, undefined);
    // Same layers: a config changes only the config blob and the manifests.
    assert.deepEqual(byDigest.manifest.layers, tagged.manifest.layers);

    // Asking again finds it; the same config written otherwise (key order, duplicates) is the same image.
    const again = await built(r, { image: 'hello', config: { stopSignal: 15, labels: { team: 'web', 'org.example/tier': 'front' }, exposedPorts: ['443/tcp', '8080', '53/udp'], workingDir: '/srv', user: '1000:1000', env: config.env, cmd: config.cmd, entrypoint: config.entrypoint } });
    assert.notEqual(again.result!.digest, result.digest, 'a numeric stop signal is another config');
    const same = await built(r, { image: 'hello', config: { ...config, exposedPorts: ['443/tcp', '8080', '53/udp'] } });
    assert.equal(same.result!.digest, result.digest);
    assert.equal(same.result!.fromCache, true);
    // The explorer's recent images list names and tags: hello:latest is the plain image there.
    const recent = r.app.service.recent.list().find((e) => e.image === 'hello:latest');
    assert.equal(recent?.manifestDigest, tagged.digest);
    // An empty config is the plain image.
    const empty = await built(r, { image: 'hello', config: {} });
    assert.equal(empty.result!.digest, tagged.digest);
    assert.equal(empty.config, null);
  });

  test('entrypoint without cmd drops the default command; cmd replaces it; env replaces defaults in place', async () => {
    const entry = (await manifestOf(r, 'hello', (await built(r, { image: 'hello', config: { entrypoint: ['/bin/hello'] } })).result!.digest)).config.config;
    assert.deepEqual(entry.Entrypoint, ['/bin/hello']);
    assert.equal(entry.Cmd, undefined);
    const cmd = (await manifestOf(r, 'shell/hello', (await built(r, { image: 'shell/hello', config: { cmd: ['hello'], env: ['SSL_CERT_FILE=/x'] } })).result!.digest)).config.config;
    assert.deepEqual(cmd.Cmd, ['hello']);
    assert.deepEqual(cmd.Env, ['PATH=/bin:/usr/bin', 'SSL_CERT_FILE=/x']);
  });

  test('the same digest from a second registry on the same storage, after a restart, and from a fresh storage', async () => {
    const body = { image: 'curl', config: { env: ['MODE=replica'], cmd: ['curl'] } };
    const first = (await built(r, body)).result!;
    const other = await startStandInRegistry({}, { storagePath });
    try {
      const second = (await built(other, body)).result!;
      assert.equal(second.digest, first.digest);
      assert.equal(second.fromCache, true, 'found in storage: no build');
      assert.equal(other.nix.stats.realises, 0);
      // Served by digest by a registry that did not build it.
      assert.equal((await manifestOf(other, 'curl', first.digest)).digest, first.digest);
    } finally {
      await other.close();
    }
    const fresh = await startStandInRegistry();
    try {
      const rebuilt = (await built(fresh, body)).result!;
      assert.equal(rebuilt.fromCache, false);
      assert.equal(rebuilt.digest, first.digest, 'another replica builds the same bytes');
    } finally {
      await fresh.close();
    }
  });

  test('kept by gc while recent, and rebuilt (same digest) when its config blob is lost', async () => {
    const body = { image: 'jq', config: { env: ['KEEP=1'] } };
    const { result } = await built(r, body);
    const { manifest } = await manifestOf(r, 'jq', result!.digest);
    const report = await collectGarbage(r.app.storage, { graceSeconds: 0, dryRun: false, now: Date.now() + 60_000, manifestMaxAgeSeconds: 3600 });
    assert.ok(report.manifestsKept > 0);
    for (const d of [result!.digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) assert.ok(await r.app.storage.stat(blobKey(d)), `gc kept ${d}`);

    await r.app.storage.delete(blobKey(manifest.config.digest));
    const blob = await fetch(`${r.url}/v2/jq/blobs/${manifest.config.digest}`);
    assert.equal(blob.status, 200, 'the lost config blob is rebuilt from its record');
    assert.deepEqual(((await blob.json()) as ImageConfigBlob).config.Env.at(-1), 'KEEP=1');
    assert.equal((await manifestOf(r, 'jq', result!.digest)).manifest.config.digest, manifest.config.digest);

    // A registry that did not build it (a replica, a restart) rebuilds its lost manifest from the record.
    await r.app.storage.delete(blobKey(result!.digest));
    const other = await startStandInRegistry({}, { storagePath });
    try {
      const repaired = await manifestOf(other, 'jq', result!.digest);
      assert.equal(repaired.digest, result!.digest);
      assert.equal(other.nix.stats.resolves, 1, 'rebuilt');
    } finally {
      await other.close();
    }
  });

  test('meta.mainProgram is the default command of an image of that package alone', async () => {
    assert.deepEqual((await manifestOf(r, 'hello', 'latest')).config.config.Cmd, ['/bin/hello']);
    // Two packages, a package without mainProgram, the shell: not it.
    assert.equal((await manifestOf(r, 'curl/hello', 'latest')).config.config.Cmd, undefined);
    assert.equal((await manifestOf(r, 'curl', 'latest')).config.config.Cmd, undefined);
    assert.deepEqual((await manifestOf(r, 'shell/hello', 'latest')).config.config.Cmd, ['bash']);
    // The always-added packages do not count.
    assert.deepEqual((await manifestOf(r, 'cacert/hello', 'latest')).config.config.Cmd, ['/bin/hello']);
  });

  test('nonroot: User 65532:65532, HOME, passwd and group, a home owned by the user; composes with shell', async () => {
    const { config, manifest } = await manifestOf(r, 'nonroot/shell/coreutils', 'latest');
    assert.equal(config.config.User, '65532:65532');
    assert.deepEqual(config.config.Env, ['PATH=/bin:/usr/bin', 'SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt', 'HOME=/home/nonroot']);
    assert.deepEqual(config.config.Cmd, ['bash']);
    const custom = tarMembers(Buffer.from(await (await fetch(`${r.url}/v2/nonroot/shell/coreutils/blobs/${manifest.layers.at(-1)!.digest}`)).arrayBuffer()));
    const passwd = custom.get('etc/passwd')!;
    assert.equal(passwd.type, '0');
    assert.equal(passwd.mode, 0o644);
    assert.match(passwd.data.toString(), /^root:x:0:0:root:\/root:\/sbin\/nologin\n.*^nonroot:x:65532:65532:nonroot:\/home\/nonroot:\/sbin\/nologin\n$/ms);
    assert.match(custom.get('etc/group')!.data.toString(), /^nonroot:x:65532:$/m);
    assert.deepEqual(custom.get('home/nonroot/'), { mode: 0o755, uid: 65532, gid: 65532, type: '5', data: Buffer.alloc(0) });
    assert.equal(custom.get('home/')!.uid, 0);
    assert.equal(custom.get('tmp/')!.mode, 0o1777);

    // Another image than the plain one, under its own name; the meta-packages in any order.
    const plain = await manifestOf(r, 'shell/coreutils', 'latest');
    assert.notEqual(plain.digest, (await manifestOf(r, 'nonroot/shell/coreutils', 'latest')).digest);
    assert.equal(plain.config.config.User, undefined);
    assert.equal(tarMembers(Buffer.from(await (await fetch(`${r.url}/v2/shell/coreutils/blobs/${plain.manifest.layers.at(-1)!.digest}`)).arrayBuffer())).has('etc/passwd'), false);
    assert.equal((await manifestOf(r, 'shell/nonroot/coreutils', 'latest')).config.config.User, '65532:65532');
    // A config's user replaces nonroot's.
    const asUser = await built(r, { image: 'nonroot/hello', config: { user: 'nonroot' } });
    assert.equal((await manifestOf(r, 'nonroot/hello', asUser.result!.digest)).config.config.User, 'nonroot');
  });

  test('several platforms: the index is what is pulled by digest, and its platforms carry the config', async () => {
    const multi = await startStandInRegistry({ NIXERY_PLATFORMS: 'linux/amd64,linux/arm64' });
    try {
      const status = await built(multi, { image: 'hello', config: { cmd: ['/bin/hello', '--multi'] } });
      const result = status.result!;
      assert.equal(result.digest, result.index!.digest);
      assert.equal(result.reference, `hello@${result.index!.digest}`);
      const res = await fetch(`${multi.url}/v2/hello/manifests/${result.digest}`, { headers: { Accept: MEDIA_TYPES.ociIndex } });
      assert.equal(res.status, 200);
      const index = (await res.json()) as { manifests: Array<{ digest: string; platform: { architecture: string } }> };
      assert.deepEqual(index.manifests.map((m) => m.platform.architecture), ['amd64', 'arm64']);
      for (const m of index.manifests) assert.deepEqual((await manifestOf(multi, 'hello', m.digest)).config.config.Cmd, ['/bin/hello', '--multi']);
      const tag = await fetch(`${multi.url}/v2/hello/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociIndex } });
      assert.notEqual(tag.headers.get('docker-content-digest'), result.digest);
      // An arm64/ name builds its one platform: the manifest is what is pulled, under arm64/hello.
      const arm = (await built(multi, { image: 'arm64/hello', config: { cmd: ['/bin/hello', '--multi'] } })).result!;
      assert.equal(arm.digest, arm.manifestDigest);
      assert.equal(arm.reference, `arm64/hello@${arm.digest}`);
      assert.equal(arm.digest, index.manifests[1]!.digest);
    } finally {
      await multi.close();
    }
  });
});
