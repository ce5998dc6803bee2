// Signatures on the stand-in registry (NIXERY_SIGNING_KEY, NIXERY_PUBLIC_HOST): the cosign tag
// `sha256-<hex>.sig` resolves to an OCI manifest whose layer is the simple-signing payload with
// the signature annotation, checked here with node:crypto against the public key; the same
// manifest is the signature's referrer; two registries on one storage serve the same bytes
// (the stored signature, first writer wins), also when they sign at the same moment; a digest
// of another repository gets no signature; and the key is never in a response, a printed
// config or an error. Real clients (skopeo, podman) verify in test/e2e/signatures.test.ts.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect, promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { startStandInRegistry, type StandInRegistry } from '../helpers/registry.js';
import { StandInNix } from '../helpers/stand-in-nix.js';
import { describeConfig, loadConfig, signingSettings } from '../../src/config.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { collectGarbage } from '../../src/builder/gc.js';
import { scrubStorage } from '../../src/builder/scrub.js';
import { blobKey } from '../../src/builder/layout.js';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';

const OCI = MEDIA_TYPES.ociManifest;
const HOST = 'registry.example.test:5000';

function keyPair(type: 'ec' | 'ed25519'): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  return { privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** The base64 lines of a PEM: what a leak of the key would contain. */
const secretLines = (pem: string) => pem.split('\n').filter((l) => /^[A-Za-z0-9+/=]{16,}$/.test(l));

async function pullDigest(url: string, name: string, accept: string = OCI): Promise<string> {
  const res = await fetch(`${url}/v2/${name}/manifests/latest`, { headers: { Accept: accept } });
  assert.equal(res.status, 200, await res.clone().text());
  await res.arrayBuffer();
  return res.headers.get('docker-content-digest')!;
}

async function sigManifest(url: string, name: string, digest: string): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const res = await fetch(`${url}/v2/${name}/manifests/${digest.replace(':', '-')}.sig`, { headers: { Accept: OCI } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

interface Checked {
  manifest: { config: { digest: string; mediaType: string }; layers: Array<{ digest: string; mediaType: string; annotations: Record<string, string> }>; subject: { digest: string }; artifactType: string };
  payload: Buffer;
}

/** Fetches a signature and its blobs as a client does, and verifies it with `publicPem`. */
async function checkSignature(url: string, name: string, digest: string, publicPem: string): Promise<Checked> {
  const sig = await sigManifest(url, name, digest);
  assert.equal(sig.status, 200, sig.body.toString());
  assert.equal(sig.headers.get('content-type'), OCI);
  assert.equal(sig.headers.get('docker-content-digest'), `sha256:${createHash('sha256').update(sig.body).digest('hex')}`);
  const manifest = JSON.parse(sig.body.toString()) as Checked['manifest'];
  assert.equal(manifest.layers.length, 1);
  const layer = manifest.layers[0]!;
  assert.equal(layer.mediaType, 'application/vnd.dev.cosign.simplesigning.v1+json');
  assert.equal(manifest.config.mediaType, 'application/vnd.oci.image.config.v1+json');
  assert.equal(manifest.subject.digest, digest);
  const payload = Buffer.from(await (await fetch(`${url}/v2/${name}/blobs/${layer.digest}`)).arrayBuffer());
  assert.equal(`sha256:${createHash('sha256').update(payload).digest('hex')}`, layer.digest);
  assert.equal(
    payload.toString(),
    `{"critical":{"identity":{"docker-reference":"${HOST}/${name}"},"image":{"docker-manifest-digest":"${digest}"},"type":"cosign container image signature"},"optional":null}`,
  );
  const config = await fetch(`${url}/v2/${name}/blobs/${manifest.config.digest}`);
  assert.equal(config.status, 200);
  assert.deepEqual((JSON.parse(await config.text()) as { rootfs: unknown }).rootfs, { type: 'layers', diff_ids: [layer.digest] });
  const key = createPublicKey(publicPem);
  const ok = verify(key.asymmetricKeyType === 'ed25519' ? null : 'sha256', payload, key, Buffer.from(layer.annotations['dev.cosignproject.cosign/signature']!, 'base64'));
  assert.ok(ok, 'the signature verifies with the public key');
  return { manifest, payload };
}

describe('signatures (ECDSA P-256, key in a file)', () => {
  const keys = keyPair('ec');
  let dir: string;
  let nix: StandInNix;
  let r: StandInRegistry;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-signatures-'));
    await writeFile(path.join(dir, 'key.pem'), keys.privatePem, { mode: 0o600 });
    nix = new StandInNix();
    r = await startStandInRegistry({ NIXERY_SIGNING_KEY: path.join(dir, 'key.pem'), NIXERY_PUBLIC_HOST: HOST }, { storagePath: path.join(dir, 'storage'), nix });
  });
  after(async () => {
    await r?.close();
    await nix?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  test('the .sig tag of the OCI and the Docker manifest is a cosign signature that verifies', async () => {
    for (const accept of [OCI, MEDIA_TYPES.dockerManifest]) {
      const digest = await pullDigest(r.url, 'shell/hello', accept);
      await checkSignature(r.url, 'shell/hello', digest, keys.publicPem);
    }
  });

  test('the signature manifest is fetched by digest too, and listed as the referrer of what it signs', async () => {
    const digest = await pullDigest(r.url, 'shell/hello');
    const sig = await sigManifest(r.url, 'shell/hello', digest);
    const sigDigest = sig.headers.get('docker-content-digest')!;
    const byDigest = await fetch(`${r.url}/v2/shell/hello/manifests/${sigDigest}`, { headers: { Accept: OCI } });
    assert.equal(byDigest.status, 200);
    assert.deepEqual(Buffer.from(await byDigest.arrayBuffer()), sig.body);
    const referrers = await fetch(`${r.url}/v2/shell/hello/referrers/${digest}`);
    assert.equal(referrers.status, 200);
    const index = (await referrers.json()) as { manifests: Array<{ digest: string; mediaType: string; size: number; artifactType: string }> };
    // Next to the image's SBOMs and provenance (test/registry/referrers.test.ts).
    assert.deepEqual(
      index.manifests.filter((m) => m.artifactType === 'application/vnd.dev.cosign.artifact.sig.v1+json'),
      [{ mediaType: OCI, digest: sigDigest, size: sig.body.length, artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json' }],
    );
    assert.deepEqual(index.manifests.map((m) => m.artifactType).sort(), ['application/spdx+json', 'application/vnd.cyclonedx+json', 'application/vnd.dev.cosign.artifact.sig.v1+json', 'application/vnd.in-toto+json']);
  });

  test('a digest that is not a manifest of the name has no signature', async () => {
    const digest = await pullDigest(r.url, 'shell/hello');
    await pullDigest(r.url, 'hello');
    // Another repository's manifest: signing it as `hello` would vouch for the wrong image.
    const other = await sigManifest(r.url, 'hello', digest);
    assert.equal(other.status, 404);
    assert.equal((JSON.parse(other.body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'MANIFEST_UNKNOWN');
    const index = (await (await fetch(`${r.url}/v2/hello/referrers/${digest}`)).json()) as { manifests: unknown[] };
    assert.deepEqual(index.manifests, []);
    // A config is in the name's image, but it is no manifest.
    const manifest = (await (await fetch(`${r.url}/v2/shell/hello/manifests/${digest}`, { headers: { Accept: OCI } })).json()) as { config: { digest: string } };
    assert.equal((await sigManifest(r.url, 'shell/hello', manifest.config.digest)).status, 404);
    assert.equal((await sigManifest(r.url, 'shell/hello', `sha256:${'0'.repeat(64)}`)).status, 404);
  });

  test('a second registry on the same storage serves the same signature bytes (stored, not signed again)', async () => {
    const digest = await pullDigest(r.url, 'shell/hello');
    const first = await sigManifest(r.url, 'shell/hello', digest);
    const records = await readdir(path.join(r.storagePath, 'signatures', 'sha256', digest.slice(7)));
    const replica = await startStandInRegistry({ NIXERY_SIGNING_KEY: keys.privatePem, NIXERY_PUBLIC_HOST: HOST }, { storagePath: r.storagePath, nix });
    try {
      const again = await sigManifest(replica.url, 'shell/hello', digest);
      assert.equal(again.status, 200);
      assert.deepEqual(again.body, first.body);
      assert.deepEqual(await readdir(path.join(r.storagePath, 'signatures', 'sha256', digest.slice(7))), records);
    } finally {
      await replica.close();
    }
  });

  test('two registries signing the same manifest at once on fresh storage agree on one signature (first writer wins)', async () => {
    const storagePath = path.join(dir, 'race');
    const a = await startStandInRegistry({ NIXERY_SIGNING_KEY: keys.privatePem, NIXERY_PUBLIC_HOST: HOST }, { storagePath, nix });
    const b = await startStandInRegistry({ NIXERY_SIGNING_KEY: keys.privatePem, NIXERY_PUBLIC_HOST: HOST }, { storagePath, nix });
    try {
      const digest = await pullDigest(a.url, 'shell/hello');
      assert.equal(await pullDigest(b.url, 'shell/hello'), digest);
      const answers = await Promise.all([a, b, a, b].map((x) => sigManifest(x.url, 'shell/hello', digest)));
      for (const answer of answers) {
        assert.equal(answer.status, 200);
        assert.deepEqual(answer.body, answers[0]!.body);
      }
      await checkSignature(b.url, 'shell/hello', digest, keys.publicPem);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a multi-platform index is signed too', async () => {
    const storagePath = path.join(dir, 'platforms');
    const m = await startStandInRegistry({ NIXERY_SIGNING_KEY: keys.privatePem, NIXERY_PUBLIC_HOST: HOST, NIXERY_PLATFORMS: 'linux/amd64,linux/arm64' }, { storagePath, nix });
    try {
      const digest = await pullDigest(m.url, 'shell/hello', MEDIA_TYPES.ociIndex);
      const index = (await (await fetch(`${m.url}/v2/shell/hello/manifests/${digest}`, { headers: { Accept: MEDIA_TYPES.ociIndex } })).json()) as { mediaType: string; manifests: Array<{ digest: string }> };
      assert.equal(index.mediaType, MEDIA_TYPES.ociIndex);
      const { manifest } = await checkSignature(m.url, 'shell/hello', digest, keys.publicPem);
      assert.equal(manifest.subject.digest, digest);
      await checkSignature(m.url, 'shell/hello', index.manifests[1]!.digest, keys.publicPem);
    } finally {
      await m.close();
    }
  });

  test('gc keeps a signature while its manifest lives and removes it with it; scrub checks it, and a damaged one is signed again', async () => {
    const storagePath = path.join(dir, 'gc');
    const env = { NIXERY_SIGNING_KEY: keys.privatePem, NIXERY_PUBLIC_HOST: HOST };
    const a = await startStandInRegistry(env, { storagePath, nix });
    let digest: string;
    let first: Buffer;
    try {
      digest = await pullDigest(a.url, 'shell/hello');
      first = (await sigManifest(a.url, 'shell/hello', digest)).body;
    } finally {
      await a.close();
    }
    const storage = new FilesystemStorage(storagePath);
    const manifest = JSON.parse(first.toString()) as Checked['manifest'];
    const sigBlobs = [manifest.config.digest, manifest.layers[0]!.digest, `sha256:${createHash('sha256').update(first).digest('hex')}`];
    const records: string[] = [];
    for await (const o of storage.list('signatures')) records.push(o.key);
    assert.equal(records.length, 1);

    const kept = await collectGarbage(storage, { graceSeconds: 0, dryRun: false, now: Date.now() + 60_000 });
    assert.equal(kept.signaturesKept, 1);
    assert.deepEqual(kept.removed, []);
    const scrubbed = await scrubStorage(storage, { repair: false });
    assert.equal(scrubbed.checked.signatures, 1);
    assert.deepEqual(scrubbed.bad, []);

    // A lost blob of the signature is written again from the record: the same bytes are served.
    await storage.delete(blobKey(manifest.layers[0]!.digest));
    const b = await startStandInRegistry(env, { storagePath, nix });
    try {
      assert.deepEqual((await sigManifest(b.url, 'shell/hello', digest)).body, first);
      await checkSignature(b.url, 'shell/hello', digest, keys.publicPem);
    } finally {
      await b.close();
    }

    // A damaged record is found by scrub, removed by repair, and the registry signs again.
    const record = JSON.parse((await storage.read(records[0]!))!.toString()) as { signature: string };
    const sig = Buffer.from(record.signature, 'base64');
    sig[sig.length - 1] = sig.at(-1)! ^ 1;
    await storage.put(records[0]!, JSON.stringify({ ...record, signature: sig.toString('base64') }));
    const damaged = await scrubStorage(storage, { repair: true });
    assert.deepEqual(damaged.bad, [{ key: records[0]!, why: 'unusable signature: its signature does not verify' }]);
    assert.deepEqual(damaged.removed, [records[0]!]);
    const c = await startStandInRegistry(env, { storagePath, nix });
    try {
      await checkSignature(c.url, 'shell/hello', digest, keys.publicPem);
    } finally {
      await c.close();
    }

    // Once the image's records are gone (expired), its signature and the signature's blobs go too.
    const expired = await collectGarbage(storage, { graceSeconds: 0, dryRun: false, manifestMaxAgeSeconds: 0, now: Date.now() + 60_000 });
    const removed = expired.removed.map((x) => x.key);
    assert.ok(removed.includes(records[0]!), removed.join(', '));
    for (const d of sigBlobs.slice(0, 2)) assert.ok(removed.includes(blobKey(d)), `${d} removed`);
    assert.equal(await storage.stat(records[0]!), null);
  });

  test('the pages name NIXERY_PUBLIC_HOST in their pull commands, not the Host the request came in on', async () => {
    const index = await (await fetch(`${r.url}/`)).text();
    assert.match(index, new RegExp(`<body data-view="index" data-pull-host="${HOST}">`));
    assert.ok(index.includes(`podman pull --tls-verify=false ${HOST}/shell/hello`));
    assert.ok(!index.includes(`${r.host}/shell/hello`));
    const explore = await (await fetch(`${r.url}/explore/shell/hello:latest`)).text();
    assert.match(explore, new RegExp(`<body data-view="explore" data-pull-host="${HOST}">`));
  });

  test('the key is in no response, printed config or error', async () => {
    const digest = await pullDigest(r.url, 'shell/hello');
    const bodies: string[] = [];
    for (const p of ['/', '/v2/', '/api/v1/images', '/api/v1/images/shell/hello:latest', '/v2/shell/hello/manifests/nope', `/v2/shell/hello/manifests/${digest.replace(':', '-')}.sig`, `/v2/shell/hello/referrers/${digest}`, '/metrics', '/readyz']) {
      const res = await fetch(`${r.url}${p}`);
      bodies.push(JSON.stringify([...res.headers]), await res.text());
    }
    const config = loadConfig({ NIXERY_SIGNING_KEY: keys.privatePem, NIXERY_PUBLIC_HOST: HOST, STORAGE_PATH: dir });
    bodies.push(JSON.stringify(describeConfig(config)), inspect(config, { depth: 10 }), JSON.stringify(config), String(config.signingKey));
    assert.match(JSON.stringify(describeConfig(config)), /"NIXERY_SIGNING_KEY":"ecdsa-p256 key \(inline PEM, sha256:[0-9a-f]{16}…\)"/);
    for (const text of bodies) for (const line of secretLines(keys.privatePem)) assert.ok(!text.includes(line), `key material in: ${text.slice(0, 200)}`);
  });
});

describe('signatures (Ed25519, key inline)', () => {
  const keys = keyPair('ed25519');
  let r: StandInRegistry;
  before(async () => {
    r = await startStandInRegistry({ NIXERY_SIGNING_KEY: keys.privatePem, NIXERY_PUBLIC_HOST: HOST });
  });
  after(async () => r?.close());

  test('the .sig tag verifies with the Ed25519 public key', async () => {
    const digest = await pullDigest(r.url, 'shell/hello');
    await checkSignature(r.url, 'shell/hello', digest, keys.publicPem);
  });

  test('the explorer API says the image is signed, where, and with which key (its fingerprint, never the key)', async () => {
    const digest = await pullDigest(r.url, 'shell/hello');
    const details = (await (await fetch(`${r.url}/api/v1/images/shell/hello:latest`)).json()) as { signature: { signed: boolean; tag: string; algorithm: string; keyFingerprint: string } };
    const spki = createPublicKey(keys.publicPem).export({ type: 'spki', format: 'der' });
    assert.deepEqual(details.signature, { signed: true, tag: `shell/hello:${digest.replace(':', '-')}.sig`, algorithm: 'ed25519', keyFingerprint: `sha256:${createHash('sha256').update(spki).digest('hex')}` });
    assert.equal((await sigManifest(r.url, 'shell/hello', digest)).status, 200, 'the tag it names is served');
  });
});

test('with signing off there is no signature: the .sig tag is unknown and the referrers index is empty', async () => {
  const r = await startStandInRegistry();
  try {
    const digest = await pullDigest(r.url, 'shell/hello');
    const sig = await sigManifest(r.url, 'shell/hello', digest);
    assert.equal(sig.status, 404);
    const details = (await (await fetch(`${r.url}/api/v1/images/shell/hello:latest`)).json()) as { signature: unknown };
    assert.deepEqual(details.signature, { signed: false });
    assert.equal((JSON.parse(sig.body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'MANIFEST_UNKNOWN');
    // The SBOMs and provenance only (test/registry/referrers.test.ts), no signature.
    const index = (await (await fetch(`${r.url}/v2/shell/hello/referrers/${digest}`)).json()) as { mediaType: string; manifests: Array<{ artifactType: string }> };
    assert.equal(index.mediaType, MEDIA_TYPES.ociIndex);
    assert.deepEqual(index.manifests.map((m) => m.artifactType), ['application/spdx+json', 'application/vnd.cyclonedx+json', 'application/vnd.in-toto+json']);
  } finally {
    await r.close();
  }
});

test('the signing settings are checked at startup, with errors that never quote the key', async () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const ec = keyPair('ec').privatePem;
  const cases: Array<[Record<string, string>, RegExp, string?]> = [
    [{ NIXERY_SIGNING_KEY: rsa }, /^invalid NIXERY_SIGNING_KEY: must be an ECDSA P-256 or Ed25519 private key, got a rsa key$/, rsa],
    [{ NIXERY_SIGNING_KEY: p384 }, /^invalid NIXERY_SIGNING_KEY: must be an ECDSA P-256 or Ed25519 private key, got an EC key on secp384r1$/, p384],
    [{ NIXERY_SIGNING_KEY: '/nonexistent/key.pem' }, /^invalid NIXERY_SIGNING_KEY: cannot read the key file "\/nonexistent\/key.pem": ENOENT/],
    [{ NIXERY_SIGNING_KEY: ec.replace(/[A-Za-z0-9+/]{20}\n/, 'AAAA\n') }, /^invalid NIXERY_SIGNING_KEY: the inline value is not an unencrypted PEM private key$/],
    [{ NIXERY_PUBLIC_HOST: 'https://registry.example.test' }, /^invalid NIXERY_PUBLIC_HOST: must be host or host:port/],
    [{ NIXERY_PUBLIC_HOST: 'registry.example.test/path' }, /^invalid NIXERY_PUBLIC_HOST: must be host or host:port/],
    [{ NIXERY_PUBLIC_HOST: 'registry' }, /^invalid NIXERY_PUBLIC_HOST: "registry" would be read as a Docker Hub path/],
    [{ NIXERY_PUBLIC_HOST: 'registry:99999' }, /^invalid NIXERY_PUBLIC_HOST: port must be between 1 and 65535/],
  ];
  for (const [env, message, key] of cases) {
    assert.throws(() => loadConfig({ STORAGE_PATH: '/tmp', ...env }), (err: Error) => {
      assert.match(err.message, message);
      for (const line of key ? secretLines(key) : []) assert.ok(!err.message.includes(line));
      return true;
    });
  }
  for (const host of ['registry:5000', 'localhost', 'registry.example.test', '127.0.0.1:8080', '[::1]:5000']) assert.equal(loadConfig({ NIXERY_PUBLIC_HOST: host }).publicHost, host);
  assert.throws(() => signingSettings(loadConfig({ NIXERY_SIGNING_KEY: ec })), /^Error: NIXERY_SIGNING_KEY needs NIXERY_PUBLIC_HOST|NIXERY_SIGNING_KEY needs NIXERY_PUBLIC_HOST/);
  await assert.rejects(startStandInRegistry({ NIXERY_SIGNING_KEY: ec }), /NIXERY_SIGNING_KEY needs NIXERY_PUBLIC_HOST/);
});

test('nixery sign --public-key prints the public key (PEM) of NIXERY_SIGNING_KEY, inline or a file', async () => {
  const run = promisify(execFile);
  const cli = path.resolve('dist/src/cli.js');
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-sign-cli-'));
  try {
    for (const type of ['ec', 'ed25519'] as const) {
      const keys = keyPair(type);
      const file = path.join(dir, `${type}.pem`);
      await writeFile(file, keys.privatePem, { mode: 0o600 });
      for (const value of [file, keys.privatePem]) {
        const { stdout, stderr } = await run(process.execPath, [cli, 'sign', '--public-key'], { env: { ...process.env, NIXERY_SIGNING_KEY: value } });
        assert.equal(stdout, keys.publicPem);
        assert.equal(stderr, '');
      }
    }
    await assert.rejects(run(process.execPath, [cli, 'sign', '--public-key'], { env: { ...process.env, NIXERY_SIGNING_KEY: '' } }), (err: Error & { code?: number; stderr?: string }) => {
      assert.equal(err.code, 2);
      assert.equal(err.stderr, 'nixery: nixery sign --public-key needs NIXERY_SIGNING_KEY (a PEM private key, inline or a file path)\n');
      return true;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a bearer token for one repository reads its signatures (tag, blobs, by digest) and no other repository\'s', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-sig-tokens-'));
  const tokenKeys = await generateKeyPair('ES256', { extractable: true });
  await writeFile(path.join(dir, 'token-keys.pem'), await exportSPKI(tokenKeys.publicKey));
  const service = 'nixery.example.test';
  const token = (name: string) =>
    new SignJWT({ access: [{ type: 'repository', name, actions: ['pull'] }] })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer('test-token-service')
      .setAudience(service)
      .setSubject('carol')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(tokenKeys.privateKey);
  const keys = keyPair('ec');
  const r = await startStandInRegistry({
    NIXERY_SIGNING_KEY: keys.privatePem,
    NIXERY_PUBLIC_HOST: HOST,
    NIXERY_AUTH_TOKEN_REALM: 'https://auth.example.test/token',
    NIXERY_AUTH_TOKEN_SERVICE: service,
    NIXERY_AUTH_TOKEN_ISSUER: 'test-token-service',
    NIXERY_AUTH_TOKEN_KEYS: path.join(dir, 'token-keys.pem'),
  });
  try {
    const mine = { Authorization: `Bearer ${await token('shell/hello')}`, Accept: OCI };
    const theirs = { Authorization: `Bearer ${await token('hello')}`, Accept: OCI };
    const pulled = await fetch(`${r.url}/v2/shell/hello/manifests/latest`, { headers: mine });
    assert.equal(pulled.status, 200);
    const digest = pulled.headers.get('docker-content-digest')!;
    const sigPath = `${digest.replace(':', '-')}.sig`;
    const sig = await fetch(`${r.url}/v2/shell/hello/manifests/${sigPath}`, { headers: mine });
    assert.equal(sig.status, 200);
    const body = Buffer.from(await sig.arrayBuffer());
    const manifest = JSON.parse(body.toString()) as Checked['manifest'];
    for (const d of [manifest.config.digest, manifest.layers[0]!.digest]) assert.equal((await fetch(`${r.url}/v2/shell/hello/blobs/${d}`, { headers: mine })).status, 200, d);
    assert.equal((await fetch(`${r.url}/v2/shell/hello/manifests/${sig.headers.get('docker-content-digest')!}`, { headers: mine })).status, 200);
    // Another repository's token: refused under shell/hello, and nothing under its own name.
    assert.equal((await fetch(`${r.url}/v2/shell/hello/manifests/${sigPath}`, { headers: theirs })).status, 403);
    assert.equal((await fetch(`${r.url}/v2/hello/manifests/${sigPath}`, { headers: theirs })).status, 404);
    assert.equal((await fetch(`${r.url}/v2/hello/blobs/${manifest.layers[0]!.digest}`, { headers: theirs })).status, 404);
  } finally {
    await r.close();
    await rm(dir, { recursive: true, force: true });
  }
});
