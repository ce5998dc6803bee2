// Signatures with real clients (containers/image: skopeo, podman), ECDSA P-256 and Ed25519 keys,
// each on its own registry over one storage (the image is built once, by real Nix, on the
// example set), and a registry that does not sign.
// - skopeo, with `use-sigstore-attachments: true` in registries.d, finds the signature under the
//   `sha256-<hex>.sig` tag, fetches it and stores it with a copy (dir: transport); the stored
//   signature is checked here: its payload names the copied manifest's digest and the pulled
//   repository, and it verifies with the public key (node:crypto), not with another key. From
//   the registry that does not sign, none is found.
// - Policy enforcement: given a policy.json that requires a sigstore signature by the public
//   key (`sigstoreSigned`, keyPath, signedIdentity matchRepository), a signed image copies
//   (skopeo) and pulls (podman); with another key, or from the registry that does not sign, both
//   are refused. Debian 12's containers/image (skopeo 1.9.3, podman 4.3.1) is built with
//   sigstore verification disabled (it refuses every sigstoreSigned policy with "Debian-local
//   change: sigstore disabled"): there these tests are skipped, saying so.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { freePort } from '../helpers/net.js';
import { startServe } from '../helpers/serve.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';

const execFileP = promisify(execFile);
const IMAGE = 'shell/hello';

interface Signer {
  kind: string;
  registry: TestRegistry;
  publicKeyPath: string;
}

async function have(command: string): Promise<boolean> {
  return execFileP(command, ['--version']).then(
    () => true,
    () => false,
  );
}

function pemPair(type: 'ec' | 'ed25519'): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  return { privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

describe('signatures verified by skopeo and podman', { timeout: 900_000 }, () => {
  let dir: string;
  let storagePath: string;
  const signers: Signer[] = [];
  let unsigned: TestRegistry;
  let otherPublicKey: string;
  let clients: { skopeo: boolean; podman: boolean };
  /** Why containers/image here cannot enforce a sigstoreSigned policy, when it cannot. */
  let noSigstorePolicy: string | undefined;

  /** A registry on the shared storage whose public host is its own loopback address. */
  async function registryOn(env: Record<string, string>): Promise<TestRegistry> {
    const port = await freePort();
    return startRegistry({ PORT: String(port), NIXERY_PUBLIC_HOST: `127.0.0.1:${port}`, ...env }, { storagePath });
  }

  let clientVersions = '';
  before(async () => {
    clients = { skopeo: await have('skopeo'), podman: await have('podman') };
    clientVersions = (await Promise.all(['skopeo', 'podman'].map((c) => execFileP(c, ['--version']).then((r) => r.stdout.trim(), () => `${c}: none`)))).join(', ');
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-e2e-signatures-'));
    storagePath = path.join(dir, 'storage');
    await mkdir(storagePath);
    for (const [kind, type] of [['ECDSA P-256', 'ec'], ['Ed25519', 'ed25519']] as const) {
      const keys = pemPair(type);
      const keyPath = path.join(dir, `${type}.key`);
      const publicKeyPath = path.join(dir, `${type}.pub`);
      await writeFile(keyPath, keys.privatePem, { mode: 0o600 });
      await writeFile(publicKeyPath, keys.publicPem);
      signers.push({ kind, registry: await registryOn({ NIXERY_SIGNING_KEY: keyPath }), publicKeyPath });
    }
    unsigned = await registryOn({});
    otherPublicKey = path.join(dir, 'other.pub');
    await writeFile(otherPublicKey, pemPair('ec').publicPem);
    // Built once (real Nix), served by every registry from the one storage.
    const res = await fetch(`${signers[0]!.registry.url}/v2/${IMAGE}/manifests/latest`, { headers: { Accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(res.status, 200, await res.text());
    if (clients.skopeo) {
      const s = signers[0]!;
      await skopeoCopy('probe', s.registry.host, s.publicKeyPath).catch((err: Error & { stderr?: string }) => {
        const why = /sigstore disabled/.exec(err.stderr ?? '');
        if (why) noSigstorePolicy = `containers/image here (${clientVersions}) refuses every sigstoreSigned policy: "${(err.stderr ?? '').match(/Debian-local change: sigstore disabled|sigstore disabled/)![0]}"`;
      });
    }
  });
  after(async () => {
    for (const s of signers) await s.registry.close();
    await unsigned?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** policy.json requiring a signature by `publicKeyPath` for `host`, and registries.d turning on sigstore attachments there. */
  async function clientConfig(name: string, host: string, publicKeyPath: string): Promise<{ policy: string; registriesD: string; home: string }> {
    const base = path.join(dir, name);
    const home = path.join(base, 'home');
    const registriesD = path.join(home, '.config', 'containers', 'registries.d');
    await mkdir(registriesD, { recursive: true });
    const policy = path.join(base, 'policy.json');
    await writeFile(
      policy,
      JSON.stringify({
        default: [{ type: 'reject' }],
        transports: { docker: { [host]: [{ type: 'sigstoreSigned', keyPath: publicKeyPath, signedIdentity: { type: 'matchRepository' } }] } },
      }),
    );
    await writeFile(path.join(registriesD, 'nixery.yaml'), `docker:\n  ${host}:\n    use-sigstore-attachments: true\n`);
    return { policy, registriesD, home };
  }

  async function skopeoCopy(name: string, host: string, publicKeyPath: string): Promise<void> {
    const { policy, registriesD } = await clientConfig(name, host, publicKeyPath);
    // An OCI layout cannot hold the signatures themselves: they are checked, then left behind.
    await execFileP('skopeo', ['--policy', policy, '--registries.d', registriesD, 'copy', '--remove-signatures', '--src-tls-verify=false', `docker://${host}/${IMAGE}:latest`, `oci:${path.join(dir, name, 'oci')}:latest`], { timeout: 300_000 });
  }

  /**
   * skopeo copy to a dir: layout, which keeps signatures: the manifest's digest and the
   * signatures it found (containers/image writes each as `\0sigstore-json\n` + JSON).
   */
  async function skopeoToDir(name: string, host: string): Promise<{ manifestDigest: string; signatures: Array<{ mimeType: string; payload: string; annotations: Record<string, string> }> }> {
    const base = path.join(dir, name);
    const registriesD = path.join(base, 'registries.d');
    await mkdir(registriesD, { recursive: true });
    await writeFile(path.join(registriesD, 'nixery.yaml'), `docker:\n  ${host}:\n    use-sigstore-attachments: true\n`);
    const policy = path.join(base, 'policy.json');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const out = path.join(base, 'copy');
    await execFileP('skopeo', ['--policy', policy, '--registries.d', registriesD, 'copy', '--src-tls-verify=false', `docker://${host}/${IMAGE}:latest`, `dir:${out}`], { timeout: 300_000 });
    const manifestDigest = `sha256:${createHash('sha256').update(await readFile(path.join(out, 'manifest.json'))).digest('hex')}`;
    const signatures = [];
    for (const file of (await readdir(out)).filter((f) => /^signature-\d+$/.test(f)).sort()) {
      const raw = await readFile(path.join(out, file));
      const prefix = Buffer.from('\0sigstore-json\n');
      assert.deepEqual(raw.subarray(0, prefix.length), prefix, `${file} is a sigstore signature`);
      signatures.push(JSON.parse(raw.subarray(prefix.length).toString()) as { mimeType: string; payload: string; annotations: Record<string, string> });
    }
    return { manifestDigest, signatures };
  }

  async function podmanPull(name: string, host: string, publicKeyPath: string): Promise<string> {
    const { policy, home } = await clientConfig(name, host, publicKeyPath);
    const base = path.join(dir, name);
    const containersConf = path.join(base, 'containers.conf');
    await writeFile(containersConf, '[containers]\ndefault_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]\n[engine]\nruntime = "runc"\n');
    // podman wants a short runroot (at most 50 characters).
    const run = await mkdtemp('/tmp/nx-podman-');
    const args = ['--root', path.join(base, 'root'), '--runroot', run, '--storage-driver', 'vfs'];
    // podman reads registries.d from $HOME/.config/containers/registries.d (it has no flag for it).
    const env = { ...process.env, HOME: home, CONTAINERS_CONF: containersConf, CONTAINERS_POLICY: policy };
    try {
      await execFileP('podman', [...args, 'pull', '--signature-policy', policy, '--tls-verify=false', `${host}/${IMAGE}:latest`], { timeout: 300_000, env });
      const { stdout } = await execFileP('podman', [...args, 'images', '--format', '{{.Repository}}:{{.Tag}}'], { env });
      return stdout;
    } finally {
      await execFileP('podman', [...args, 'system', 'reset', '--force'], { env }).catch(() => {});
      await rm(run, { recursive: true, force: true }).catch(() => {});
    }
  }

  // containers/image's words (signature/policy_eval_sigstore.go, signature/internal/sigstore_payload.go).
  const refused = /Source image rejected: (?:A signature was required, but no signature exists|.*cryptographic signature verification failed)/;

  test('skopeo finds each signature under the .sig tag and stores it with a copy; it verifies with the public key, not another', async (t) => {
    if (!clients.skopeo) return t.skip('skopeo is not installed (scripts/install-deps.sh installs it)');
    for (const s of signers) {
      const copied = await skopeoToDir(`dir-${s.kind}`, s.registry.host);
      assert.equal(copied.signatures.length, 1, `${s.kind}: one signature found`);
      const sig = copied.signatures[0]!;
      assert.equal(sig.mimeType, 'application/vnd.dev.cosign.simplesigning.v1+json');
      const payload = Buffer.from(sig.payload, 'base64');
      const critical = (JSON.parse(payload.toString()) as { critical: { identity: { 'docker-reference': string }; image: { 'docker-manifest-digest': string } } }).critical;
      assert.equal(critical.identity['docker-reference'], `${s.registry.host}/${IMAGE}`);
      assert.equal(critical.image['docker-manifest-digest'], copied.manifestDigest);
      const signature = Buffer.from(sig.annotations['dev.cosignproject.cosign/signature']!, 'base64');
      const key = createPublicKey(await readFile(s.publicKeyPath));
      const algorithm = key.asymmetricKeyType === 'ed25519' ? null : 'sha256';
      assert.ok(verify(algorithm, payload, key, signature), `${s.kind}: verifies with the registry's public key`);
      const other = createPublicKey(pemPair(algorithm ? 'ec' : 'ed25519').publicPem);
      assert.ok(!verify(algorithm, payload, other, signature), `${s.kind}: does not verify with another key of its kind`);
    }
    const fromUnsigned = await skopeoToDir('dir-unsigned', unsigned.host);
    assert.deepEqual(fromUnsigned.signatures, []);
  });

  for (const index of [0, 1]) {
    test(`skopeo copies the image signed with ${index === 0 ? 'ECDSA P-256' : 'Ed25519'}, and refuses it with another key`, async (t) => {
      if (!clients.skopeo) return t.skip('skopeo is not installed (scripts/install-deps.sh installs it)');
      if (noSigstorePolicy) return t.skip(noSigstorePolicy);
      const s = signers[index]!;
      await skopeoCopy(`skopeo-ok-${index}`, s.registry.host, s.publicKeyPath);
      await assert.rejects(skopeoCopy(`skopeo-other-${index}`, s.registry.host, otherPublicKey), (err: Error & { stderr?: string }) => {
        assert.match(err.stderr ?? err.message, refused);
        return true;
      });
    });

    test(`podman pulls the image signed with ${index === 0 ? 'ECDSA P-256' : 'Ed25519'}, and refuses it with another key`, async (t) => {
      if (!clients.podman) return t.skip('podman is not installed (scripts/install-deps.sh installs it)');
      if (noSigstorePolicy) return t.skip(noSigstorePolicy);
      const s = signers[index]!;
      const images = await podmanPull(`podman-ok-${index}`, s.registry.host, s.publicKeyPath);
      assert.ok(images.includes(`${s.registry.host}/${IMAGE}:latest`), images);
      await assert.rejects(podmanPull(`podman-other-${index}`, s.registry.host, otherPublicKey), (err: Error & { stderr?: string }) => {
        assert.match(err.stderr ?? err.message, refused);
        return true;
      });
    });
  }

  test('nixery serve with the key inline: signs, and the key is in no log line, response or argv', async () => {
    const keys = pemPair('ec');
    const port = await freePort();
    const serve = await startServe({ pkgsPath: EXAMPLE_PKGS, storagePath, port, env: { NIXERY_SIGNING_KEY: keys.privatePem, NIXERY_PUBLIC_HOST: `127.0.0.1:${port}` } });
    const seen: string[] = [];
    try {
      seen.push(await readFile(`/proc/${serve.pid}/cmdline`, 'utf8'));
      const accept = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
      const pulled = await fetch(`${serve.url}/v2/${IMAGE}/manifests/latest`, { headers: accept });
      assert.equal(pulled.status, 200);
      const digest = pulled.headers.get('docker-content-digest')!;
      for (const p of [`/v2/${IMAGE}/manifests/${digest.replace(':', '-')}.sig`, `/v2/${IMAGE}/referrers/${digest}`, `/v2/${IMAGE}/manifests/sha256-${'0'.repeat(64)}.sig`, '/', '/v2/nope!/manifests/latest', '/metrics']) {
        const res = await fetch(`${serve.url}${p}`, { headers: accept });
        seen.push(`${p} ${res.status} ${JSON.stringify([...res.headers])} ${await res.text()}`);
      }
      assert.match(seen[1]!, / 200 /);
    } finally {
      await serve.stop();
    }
    const output = serve.output();
    assert.match(output, /"NIXERY_SIGNING_KEY":"ecdsa-p256 key \(inline PEM, sha256:[0-9a-f]{16}…\)"/);
    for (const line of keys.privatePem.split('\n').filter((l) => /^[A-Za-z0-9+/=]{16,}$/.test(l))) {
      assert.ok(!output.includes(line), 'key material in the log');
      for (const text of seen) assert.ok(!text.includes(line), `key material in ${text.slice(0, 100)}`);
    }
  });

  test('from a registry that does not sign, skopeo and podman refuse the same image', async (t) => {
    if (!clients.skopeo || !clients.podman) return t.skip('skopeo or podman is not installed (scripts/install-deps.sh installs them)');
    if (noSigstorePolicy) return t.skip(noSigstorePolicy);
    const publicKey = signers[0]!.publicKeyPath;
    for (const attempt of [skopeoCopy('skopeo-unsigned', unsigned.host, publicKey), podmanPull('podman-unsigned', unsigned.host, publicKey)]) {
      await assert.rejects(attempt, (err: Error & { stderr?: string }) => {
        assert.match(err.stderr ?? err.message, refused);
        return true;
      });
    }
  });
});
