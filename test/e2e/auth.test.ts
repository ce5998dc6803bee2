// Authentication, TLS and admission with real clients against a real `nixery serve`: skopeo,
// podman, containerd's ctr and the docker engine log in with htpasswd users and with bearer
// tokens from a token service, over plain HTTP and over HTTPS with a test CA; cold builds are
// limited per client while cached pulls go on; package policies and the image-size limit refuse
// before anything is packed.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { startDockerd, type DockerEngine } from '../helpers/docker.js';
import { makeTestPki } from '../helpers/tls.js';
import { startTokenService, type TestTokenService } from '../helpers/token-service.js';

const execFileP = promisify(execFile);

/** Runs a client; resolves with its output, or rejects with what it printed. */
async function run(cmd: string, args: string[], timeoutMs = 180_000): Promise<string> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return stdout + stderr;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr || e.stdout || e.message}`);
  }
}

/** The registry's log lines are flushed within a second: wait for one to appear. */
async function logged(r: ServeProcess, pattern: RegExp): Promise<void> {
  for (let i = 0; i < 40 && !pattern.test(r.output()); i++) await new Promise((res) => setTimeout(res, 100));
  assert.match(r.output(), pattern);
}

async function fails(cmd: string, args: string[], expected: RegExp): Promise<void> {
  await assert.rejects(run(cmd, args), (err: Error) => {
    assert.match(err.message, expected);
    return true;
  });
}

let dir: string;
let htpasswdFile: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nixery-auth-e2e-'));
  htpasswdFile = path.join(dir, 'htpasswd');
  execFileSync('htpasswd', ['-B', '-b', '-c', htpasswdFile, 'alice', 'wonderland']);
});
after(() => rm(dir, { recursive: true, force: true }));

async function serve(env: Record<string, string>, scheme: 'http' | 'https' = 'http'): Promise<ServeProcess & { host: string }> {
  const storagePath = await mkdtemp(path.join(dir, 'storage-'));
  const s = await startServe({ pkgsPath: EXAMPLE_PKGS, storagePath, env, scheme });
  return Object.assign(s, { host: `127.0.0.1:${s.port}` });
}

describe('basic authentication (htpasswd -B) with real clients', () => {
  let r: ServeProcess & { host: string };
  let containerd: Containerd;
  let docker: DockerEngine;
  before(async () => {
    r = await serve({ NIXERY_HTPASSWD: htpasswdFile });
    [containerd, docker] = await Promise.all([startContainerd(), startDockerd()]);
  });
  after(async () => {
    await r.stop();
    await containerd.stop();
    await docker.stop();
  });

  test('every API route asks for credentials; health, readiness and metrics stay open', async () => {
    for (const p of ['/v2/', '/v2/hello/manifests/latest', `/v2/hello/blobs/sha256:${'0'.repeat(64)}`, '/v2/hello/tags/list', '/']) {
      const res = await fetch(`${r.url}${p}`);
      assert.equal(res.status, 401, p);
      assert.equal(res.headers.get('www-authenticate'), 'Basic realm="nixery-ts", charset="UTF-8"');
      assert.equal(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'UNAUTHORIZED');
    }
    for (const p of ['/healthz', '/readyz', '/metrics']) assert.equal((await fetch(`${r.url}${p}`)).status, 200, p);
  });

  test('skopeo: --creds and --src-creds; a bad password is refused', async () => {
    const out = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', 'alice:wonderland', `docker://${r.host}/shell/hello`]);
    assert.match(out, /"Digest": "sha256:/);
    await run('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', 'alice:wonderland', `docker://${r.host}/shell/hello`, `oci:${dir}/skopeo-oci:latest`]);
    await fails('skopeo', ['inspect', '--tls-verify=false', '--creds', 'alice:looking-glass', `docker://${r.host}/shell/hello`], /unauthorized|401/i);
    await fails('skopeo', ['inspect', '--tls-verify=false', '--no-creds', `docker://${r.host}/shell/hello`], /unauthorized|401|authentication required/i);
  });

  test('podman login + podman pull', async () => {
    const authfile = path.join(dir, 'podman-auth.json');
    const podman = ['--root', path.join(dir, 'podman-root'), '--runroot', path.join(dir, 'podman-run')];
    await fails('podman', [...podman, 'login', '--tls-verify=false', '--authfile', authfile, '-u', 'alice', '-p', 'nope', r.host], /unauthorized|401|invalid username\/password/i);
    await run('podman', [...podman, 'login', '--tls-verify=false', '--authfile', authfile, '-u', 'alice', '-p', 'wonderland', r.host]);
    const out = await run('podman', [...podman, 'pull', '--tls-verify=false', '--authfile', authfile, `${r.host}/hello`]);
    assert.match(out, /[0-9a-f]{64}/);
  });

  test('ctr images pull --user', async () => {
    await containerd.ctr(['images', 'pull', '--plain-http', '--user', 'alice:wonderland', `${r.host}/hello:latest`]);
    await assert.rejects(containerd.ctr(['images', 'pull', '--plain-http', '--user', 'alice:nope', `${r.host}/jq:latest`]), /unauthorized|401/i);
  });

  test('docker login + docker pull; after logout the pull is refused', async () => {
    await assert.rejects(docker.docker(['login', '-u', 'alice', '--password-stdin', r.host], { input: 'nope\n' }), /unauthorized|401|incorrect/i);
    await docker.docker(['login', '-u', 'alice', '--password-stdin', r.host], { input: 'wonderland\n' });
    await docker.docker(['pull', `${r.host}/shell/hello`]);
    await docker.docker(['logout', r.host]);
    await assert.rejects(docker.docker(['pull', `${r.host}/hello`]), /unauthorized|authentication required|no basic auth/i);
  });

  test('credentials never reach the log', async () => {
    await logged(r, /"user":"alice"/);
    assert.doesNotMatch(r.output(), /wonderland|looking-glass|YWxpY2U6/);
  });
});

describe('bearer tokens from a token service, with real clients', () => {
  let tokens: TestTokenService;
  let r: ServeProcess & { host: string };
  const service = 'nixery.test';
  before(async () => {
    tokens = await startTokenService({ users: { carol: 'secret' }, issuer: 'test-issuer', service });
    const jwks = path.join(dir, 'jwks.json');
    await tokens.writeJwks(jwks);
    r = await serve({ NIXERY_AUTH_TOKEN_REALM: tokens.realm, NIXERY_AUTH_TOKEN_SERVICE: service, NIXERY_AUTH_TOKEN_ISSUER: 'test-issuer', NIXERY_AUTH_TOKEN_KEYS: jwks });
  });
  after(async () => {
    await r.stop();
    await tokens.stop();
  });

  test('the challenge sends clients to the token service; skopeo fetches a token and pulls', async () => {
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), `Bearer realm="${tokens.realm}",service="${service}",scope="repository:hello:pull"`);
    const before = tokens.issued;
    const out = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', 'carol:secret', `docker://${r.host}/hello`]);
    assert.match(out, /"Digest": "sha256:/);
    assert.ok(tokens.issued > before, 'the client fetched a token after the 401 challenge');
    await fails('skopeo', ['inspect', '--tls-verify=false', '--creds', 'carol:wrong', `docker://${r.host}/hello`], /unauthorized|401|wrong credentials/i);
  });

  test('containerd with --user follows the bearer flow', async () => {
    const containerd = await startContainerd();
    try {
      await containerd.ctr(['images', 'pull', '--plain-http', '--user', 'carol:secret', `${r.host}/hello:latest`]);
    } finally {
      await containerd.stop();
    }
  });

  test('an expired token and a token for another audience are refused', async () => {
    for (const how of [{ expired: true }, { audience: 'another-registry' }]) {
      tokens.misbehave(how);
      await fails('skopeo', ['inspect', '--tls-verify=false', '--creds', 'carol:secret', `docker://${r.host}/shell/hello`], /unauthorized|401/i);
    }
    tokens.misbehave({});
    await logged(r, /"refused":"the token has expired"/);
    await logged(r, /"refused":"the token's aud claim is not accepted here"/);
  });
});

describe('anonymous pull', () => {
  test('anonymous clients pull what is built; only authenticated ones build', async () => {
    const r = await serve({ NIXERY_HTPASSWD: htpasswdFile, NIXERY_ANONYMOUS_PULL: 'true' });
    try {
      await fails('skopeo', ['inspect', '--tls-verify=false', '--no-creds', `docker://${r.host}/tree`], /unauthorized|401|only authenticated clients may build/i);
      await run('skopeo', ['inspect', '--tls-verify=false', '--creds', 'alice:wonderland', `docker://${r.host}/tree`]);
      const out = await run('skopeo', ['copy', '--src-tls-verify=false', '--src-no-creds', `docker://${r.host}/tree`, `oci:${dir}/anonymous-oci:latest`]);
      assert.match(out, /Writing manifest/);
      // containerd asks the manifest first: anonymous pulls of built images, and credentials
      // sent after the 401 of a build.
      const containerd = await startContainerd();
      try {
        await containerd.ctr(['images', 'pull', '--plain-http', `${r.host}/tree:latest`]);
        await assert.rejects(containerd.ctr(['images', 'pull', '--plain-http', `${r.host}/hello:latest`]), /unauthorized|401/i);
        await containerd.ctr(['images', 'pull', '--plain-http', '--user', 'alice:wonderland', `${r.host}/hello:latest`]);
      } finally {
        await containerd.stop();
      }
      const cold = await fetch(`${r.url}/v2/jq/manifests/latest`);
      assert.equal(cold.status, 401);
      assert.match(((await cold.json()) as { errors: Array<{ message: string }> }).errors[0]!.message, /only authenticated clients may build/);
    } finally {
      await r.stop();
    }
  });
});

describe('TLS', () => {
  test('HTTPS with a test CA for skopeo and containerd; a renewed certificate is picked up on SIGHUP', async () => {
    const pkiDir = path.join(dir, 'pki');
    await mkdir(pkiDir);
    const pki = makeTestPki(pkiDir);
    const live = path.join(dir, 'live');
    await mkdir(live);
    await copyFile(pki.serverCert, path.join(live, 'tls.crt'));
    await copyFile(pki.serverKey, path.join(live, 'tls.key'));
    const r = await serve({ NIXERY_TLS_CERT: path.join(live, 'tls.crt'), NIXERY_TLS_KEY: path.join(live, 'tls.key'), NIXERY_HTPASSWD: htpasswdFile }, 'https');
    const containerd = await startContainerd();
    try {
      const certDir = path.join(dir, 'certs');
      await mkdir(certDir);
      await copyFile(pki.caCert, path.join(certDir, 'ca.crt'));
      await run('skopeo', ['copy', '--src-cert-dir', certDir, '--src-creds', 'alice:wonderland', `docker://${r.host}/hello`, `oci:${dir}/tls-oci:latest`]);
      // Without the CA the certificate is not trusted.
      await fails('skopeo', ['inspect', '--creds', 'alice:wonderland', `docker://${r.host}/hello`], /certificate|x509/i);
      const hostsDir = path.join(dir, 'hosts');
      await mkdir(path.join(hostsDir, r.host), { recursive: true });
      await writeFile(path.join(hostsDir, r.host, 'hosts.toml'), `server = "https://${r.host}"\n[host."https://${r.host}"]\n  capabilities = ["pull", "resolve"]\n  ca = "${pki.caCert}"\n`);
      await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, '--user', 'alice:wonderland', `${r.host}/hello:latest`]);

      // Renewal: a new CA and certificate in place of the old, then SIGHUP.
      const renewedDir = path.join(dir, 'pki2');
      await mkdir(renewedDir);
      const renewed = makeTestPki(renewedDir);
      await copyFile(renewed.serverCert, path.join(live, 'tls.crt'));
      await copyFile(renewed.serverKey, path.join(live, 'tls.key'));
      r.child.kill('SIGHUP');
      const trusts = (ca: string) =>
        new Promise<boolean>((resolve) => {
          https.get(`${r.url}/healthz`, { ca: execFileSync('cat', [ca]) }, (res) => resolve(res.statusCode === 200)).on('error', () => resolve(false));
        });
      for (let i = 0; i < 50 && !(await trusts(renewed.caCert)); i++) await new Promise((res) => setTimeout(res, 100));
      assert.equal(await trusts(renewed.caCert), true, 'the renewed certificate is served');
      assert.equal(await trusts(pki.caCert), false, 'the old one is not');
      await logged(r, /TLS certificate reloaded/);
    } finally {
      await containerd.stop();
      await r.stop();
    }
  });
});

describe('admission control', () => {
  test('a per-client build rate: beyond it 429 with Retry-After, while cached pulls go on', async () => {
    const r = await serve({ NIXERY_CLIENT_BUILDS_PER_MINUTE: '1' });
    try {
      await run('skopeo', ['inspect', '--tls-verify=false', `docker://${r.host}/hello`]);
      const cold = await fetch(`${r.url}/v2/tree/manifests/latest`);
      assert.equal(cold.status, 429);
      assert.match(cold.headers.get('retry-after') ?? '', /^\d+$/);
      assert.match(((await cold.json()) as { errors: Array<{ message: string }> }).errors[0]!.message, /NIXERY_CLIENT_BUILDS_PER_MINUTE is 1/);
      for (let i = 0; i < 30; i++) {
        const res = await fetch(`${r.url}/v2/hello/manifests/latest`);
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
      await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${r.host}/hello`, `oci:${dir}/cached-oci:latest`]);
      assert.match(await (await fetch(`${r.url}/metrics`)).text(), /nixery_builds_rate_limited_total 1/);
    } finally {
      await r.stop();
    }
  });

  test('package policies refuse before Nix runs; the image-size limit before anything is packed', async () => {
    const r = await serve({ NIXERY_DENY_PACKAGES: 'git,python3*', NIXERY_MAX_PACKAGES: '3', NIXERY_MAX_IMAGE_SIZE: '3M' });
    try {
      const denied = await fetch(`${r.url}/v2/hello/git/manifests/latest`);
      assert.equal(denied.status, 403);
      const body = (await denied.json()) as { errors: Array<{ code: string; message: string }> };
      assert.equal(body.errors[0]!.code, 'DENIED');
      assert.match(body.errors[0]!.message, /package git is not allowed here/);
      await fails('skopeo', ['inspect', '--tls-verify=false', `docker://${r.host}/python3`], /python3 is not allowed here|denied/i);
      const many = await fetch(`${r.url}/v2/hello/jq/tree/curl/manifests/latest`);
      assert.equal(many.status, 403);
      assert.match(await many.text(), /4 packages.*at most 3/);
      const big = await fetch(`${r.url}/v2/big-data/manifests/latest`);
      assert.equal(big.status, 403);
      assert.match(await big.text(), /closure is [\d.]+ MiB; this registry builds images of at most 3\.0 MiB \(NIXERY_MAX_IMAGE_SIZE\)/);
      const metrics = await (await fetch(`${r.url}/metrics`)).text();
      assert.match(metrics, /nixery_packages_denied_total 3/);
      assert.match(metrics, /nixery_images_too_large_total 1/);
      assert.match(metrics, /nixery_layers_packed_total 0/);
      await logged(r, /image refused: over NIXERY_MAX_IMAGE_SIZE/);
      await logged(r, /"refused":"package git is not allowed here/);
      await run('skopeo', ['inspect', '--tls-verify=false', `docker://${r.host}/hello`]);
    } finally {
      await r.stop();
    }
    // An allow list: only what it names (globs, any case), besides what every image gets.
    const allowList = path.join(dir, 'allowed-packages');
    await writeFile(allowList, '# what this registry builds\nhello\nj?\n');
    const allowing = await serve({ NIXERY_ALLOW_PACKAGES: allowList });
    try {
      await run('skopeo', ['inspect', '--tls-verify=false', `docker://${allowing.host}/jq/hello`]);
      await fails('skopeo', ['inspect', '--tls-verify=false', `docker://${allowing.host}/hello/tree`], /package tree is not allowed here: it is not in NIXERY_ALLOW_PACKAGES/);
    } finally {
      await allowing.stop();
    }
  });
});
