// The authentication and admission layer's decisions, in-process: who a request is, what it may
// pull, which packages it may ask for, and when it may start a build.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { Gate, type AccessOptions } from '../../src/registry/access.js';
import { TrustedProxies } from '../../src/registry/client-address.js';
import { Htpasswd } from '../../src/auth/htpasswd.js';
import { TokenVerifier } from '../../src/auth/tokens.js';
import { PackagePolicy } from '../../src/auth/policy.js';
import { RateLimiter } from '../../src/util/token-bucket.js';
import { ConfigError, NixeryError } from '../../src/errors.js';

function request(headers: Record<string, string> = {}, remoteAddress = '192.0.2.10'): IncomingMessage {
  return { headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])), socket: { remoteAddress } } as unknown as IncomingMessage;
}

const basic = (user: string, password: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
const manifest = (name: string) => ({ name, reference: 'latest' });

/** Asserts `fn` throws a NixeryError of `kind` (and the status that goes with it). */
async function refuses(fn: () => unknown, kind: string, status: number, message?: RegExp): Promise<NixeryError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof NixeryError, String(err));
    assert.equal(err.kind, kind, err.message);
    assert.equal(err.status, status);
    if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected ${kind}`);
}

function gate(options: Partial<AccessOptions> = {}): Gate {
  return new Gate({ anonymousPull: false, proxies: new TrustedProxies(undefined), ...options });
}

describe('access: basic authentication', () => {
  let htpasswd: Htpasswd;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-access-'));
    const file = path.join(dir, 'htpasswd');
    // As operators make it: htpasswd -B (bcrypt).
    execFileSync('htpasswd', ['-B', '-b', '-c', file, 'alice', 'wonderland']);
    execFileSync('htpasswd', ['-B', '-b', file, 'bob', 'builder']);
    htpasswd = await Htpasswd.load(file);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('no credential is 401 with a Basic challenge; a wrong one is 401; a right one names the user', async () => {
    const g = gate({ htpasswd });
    assert.equal(g.authentication, 'basic');
    const err = await refuses(() => g.admit(request(), 'login', {}), 'UNAUTHORIZED', 401);
    assert.match(err.headers!['WWW-Authenticate']!, /^Basic realm="nixery-ts"/);
    await refuses(() => g.admit(request(basic('alice', 'looking-glass')), 'pull-build', manifest('hello')), 'UNAUTHORIZED', 401, /user name or password is wrong/);
    await refuses(() => g.admit(request(basic('mallory', 'wonderland')), 'pull-build', manifest('hello')), 'UNAUTHORIZED', 401);
    const admitted = await g.admit(request(basic('alice', 'wonderland')), 'pull-build', manifest('hello'));
    assert.equal(admitted.user, 'alice');
    assert.equal(admitted.client, 'user:alice');
    admitted.beforeBuild();
    assert.equal(g.stats.unauthorized, 3);
  });

  test('a verified credential is remembered: bcrypt runs once, not per request', async () => {
    let checks = 0;
    const counting = { verify: async (u: string, p: string) => (checks++, htpasswd.verify(u, p)) } as unknown as Htpasswd;
    const g = gate({ htpasswd: counting });
    for (let i = 0; i < 50; i++) await g.admit(request(basic('bob', 'builder')), 'pull', { name: 'hello', digest: 'sha256:x' });
    assert.equal(checks, 1);
  });

  test('health, readiness and metrics stay open', async () => {
    const g = gate({ htpasswd });
    assert.equal((await g.admit(request(), 'open', {})).user, null);
  });

  test('anonymous pull: anonymous clients pull, only authenticated ones build', async () => {
    const g = gate({ htpasswd, anonymousPull: true });
    // /v2/ still asks, so clients that have credentials send them.
    await refuses(() => g.admit(request(), 'login', {}), 'UNAUTHORIZED', 401);
    assert.equal((await g.admit(request(basic('', '')), 'pull', { name: 'hello', digest: 'sha256:x' })).user, null, 'empty credentials are anonymous');
    const anonymous = await g.admit(request(), 'pull-build', manifest('hello'));
    assert.equal(anonymous.user, null);
    const err = await refuses(() => anonymous.beforeBuild(), 'UNAUTHORIZED', 401, /only authenticated clients may build/);
    assert.match(err.headers!['WWW-Authenticate']!, /^Basic /);
    (await g.admit(request(basic('alice', 'wonderland')), 'pull-build', manifest('hello'))).beforeBuild();
    // A wrong password is still refused, not treated as anonymous.
    await refuses(() => g.admit(request(basic('alice', 'nope')), 'pull-build', manifest('hello')), 'UNAUTHORIZED', 401);
  });

  test('the htpasswd file must hold bcrypt entries', () => {
    assert.throws(() => Htpasswd.parse('alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n'), (e: Error) => e instanceof ConfigError && /line 1 .* htpasswd -B/.test(e.message));
    assert.throws(() => Htpasswd.parse('# nobody\n'), ConfigError);
    assert.doesNotMatch(String((() => { try { Htpasswd.parse('alice:$apr1$secret$x'); } catch (e) { return (e as Error).message; } })()), /secret/);
  });
});

describe('access: bearer tokens', () => {
  let dir: string;
  let keys: Awaited<ReturnType<typeof generateKeyPair>>;
  let other: Awaited<ReturnType<typeof generateKeyPair>>;
  let pemFile: string;
  let jwksFile: string;
  let jwksServer: http.Server;
  let jwksUrl: string;
  const settings = { realm: 'https://auth.example.test/token', service: 'nixery.example.test', issuer: 'test-token-service' };

  const sign = (claims: Record<string, unknown>, options: { key?: CryptoKey; exp?: string | number; aud?: string; iss?: string; kid?: string } = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? 'k1' })
      .setIssuer(options.iss ?? settings.issuer)
      .setAudience(options.aud ?? settings.service)
      .setSubject('carol')
      .setIssuedAt()
      .setExpirationTime(options.exp ?? '5m')
      .sign(options.key ?? keys.privateKey);
  const pull = (name: string) => ({ access: [{ type: 'repository', name, actions: ['pull'] }] });
  const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-tokens-'));
    keys = await generateKeyPair('ES256', { extractable: true });
    other = await generateKeyPair('ES256', { extractable: true });
    pemFile = path.join(dir, 'keys.pem');
    await writeFile(pemFile, `${await exportSPKI(other.publicKey)}\n${await exportSPKI(keys.publicKey)}`);
    const jwks = { keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] };
    jwksFile = path.join(dir, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify(jwks));
    jwksServer = http.createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(jwks)));
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  });
  after(async () => {
    jwksServer.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const source of ['PEM file', 'JWKS file', 'JWKS URL'] as const) {
    test(`tokens are checked for signature, issuer, audience, expiry and scope (keys from a ${source})`, async () => {
      const tokens = await TokenVerifier.create({ ...settings, ...(source === 'PEM file' ? { keysFile: pemFile } : source === 'JWKS file' ? { keysFile: jwksFile } : { jwksUrl }) });
      const g = gate({ tokens });
      assert.equal(g.authentication, 'bearer');
      const missing = await refuses(() => g.admit(request(), 'pull-build', manifest('shell/hello')), 'UNAUTHORIZED', 401);
      assert.equal(missing.headers!['WWW-Authenticate'], `Bearer realm="${settings.realm}",service="${settings.service}",scope="repository:shell/hello:pull"`);
      const ping = await refuses(() => g.admit(request(), 'login', {}), 'UNAUTHORIZED', 401);
      assert.equal(ping.headers!['WWW-Authenticate'], `Bearer realm="${settings.realm}",service="${settings.service}"`);

      const admitted = await g.admit(request(bearer(await sign(pull('shell/hello')))), 'pull-build', manifest('shell/hello'));
      assert.equal(admitted.user, 'carol');
      await g.admit(request(bearer(await sign(pull('shell/hello')))), 'login', {});

      const expired = await refuses(async () => g.admit(request(bearer(await sign(pull('hello'), { exp: Math.floor(Date.now() / 1000) - 120 }))), 'pull-build', manifest('hello')), 'UNAUTHORIZED', 401, /expired/);
      assert.match(expired.headers!['WWW-Authenticate']!, /error="invalid_token"/);
      await refuses(async () => g.admit(request(bearer(await sign(pull('hello'), { aud: 'another-registry' }))), 'pull-build', manifest('hello')), 'UNAUTHORIZED', 401, /aud claim/);
      await refuses(async () => g.admit(request(bearer(await sign(pull('hello'), { iss: 'someone-else' }))), 'pull-build', manifest('hello')), 'UNAUTHORIZED', 401, /iss claim/);
      const forged = await sign(pull('hello'), { key: (await generateKeyPair('ES256')).privateKey });
      await refuses(() => g.admit(request(bearer(forged)), 'pull-build', manifest('hello')), 'UNAUTHORIZED', 401, /signature|unknown key/);
      await refuses(() => g.admit(request(bearer('not.a.token')), 'pull-build', manifest('hello')), 'UNAUTHORIZED', 401, /malformed/);
      await refuses(() => g.admit(request(basic('carol', 'x')), 'pull-build', manifest('hello')), 'UNAUTHORIZED', 401, /bearer token is required/);
      // A valid token without the repository's pull grant: 403.
      await refuses(async () => g.admit(request(bearer(await sign(pull('other/image')))), 'pull-build', manifest('hello')), 'DENIED', 403, /does not grant pull access to hello/);
      await refuses(async () => g.admit(request(bearer(await sign({ access: [{ type: 'repository', name: 'hello', actions: ['push'] }] }))), 'pull', { name: 'hello', digest: 'sha256:x' }), 'DENIED', 403);
    });
  }

  test('bad key settings stop startup with one line', async () => {
    await assert.rejects(TokenVerifier.create({ ...settings }), (e: Error) => e instanceof ConfigError && /NIXERY_AUTH_TOKEN_KEYS/.test(e.message));
    await assert.rejects(TokenVerifier.create({ ...settings, keysFile: path.join(dir, 'missing.pem') }), (e: Error) => e instanceof ConfigError && /cannot read/.test(e.message));
    const junk = path.join(dir, 'junk.pem');
    await writeFile(junk, 'not a key');
    await assert.rejects(TokenVerifier.create({ ...settings, keysFile: junk }), (e: Error) => e instanceof ConfigError && /no PEM public key/.test(e.message));
  });
});

describe('access: admission of builds and packages', () => {
  test('a per-client build rate with a burst; beyond it 429 with Retry-After; pulls are not counted', async () => {
    let now = 1_000_000;
    const g = gate({ builds: new RateLimiter(2, 2, () => now) });
    const first = await g.admit(request({}, '198.51.100.1'), 'pull-build', manifest('hello'));
    assert.equal(first.client, 'ip:198.51.100.1');
    first.beforeBuild();
    first.beforeBuild();
    const err = await refuses(() => first.beforeBuild(), 'TOOMANYREQUESTS', 429, /NIXERY_CLIENT_BUILDS_PER_MINUTE is 2/);
    assert.equal((err as unknown as { retryAfterSeconds: number }).retryAfterSeconds, 30);
    // Another client has its own budget, and admitting (a cached pull) costs nothing.
    for (let i = 0; i < 100; i++) await g.admit(request({}, '198.51.100.1'), 'pull-build', manifest('hello'));
    (await g.admit(request({}, '198.51.100.2'), 'pull-build', manifest('hello'))).beforeBuild();
    now += 30_000;
    first.beforeBuild();
    assert.equal(g.stats.buildsRateLimited, 1);
  });

  test('X-Forwarded-For counts only from trusted proxies', async () => {
    const g = gate({ proxies: new TrustedProxies('10.0.0.0/8, 2001:db8::1') });
    const viaProxy = await g.admit(request({ 'X-Forwarded-For': '203.0.113.7, 10.1.2.3' }, '::ffff:10.0.0.2'), 'pull-build', manifest('hello'));
    assert.equal(viaProxy.client, 'ip:203.0.113.7', 'the nearest address that is not a trusted proxy');
    const spoofed = await g.admit(request({ 'X-Forwarded-For': '203.0.113.7' }, '198.51.100.9'), 'pull-build', manifest('hello'));
    assert.equal(spoofed.client, 'ip:198.51.100.9', 'an untrusted peer cannot pick its address');
    assert.throws(() => new TrustedProxies('10.0.0.0/33'), ConfigError);
    assert.throws(() => new TrustedProxies('example.org'), ConfigError);
  });

  test('package policy: deny wins, allow lists and globs, case-insensitive, decided from the name', async () => {
    const g = gate({ policy: PackagePolicy.fromSettings('hello, shell*, bash*, coreutils,moreutils nano python3Packages.*', 'python3Packages.insecure*') });
    await g.admit(request(), 'pull-build', manifest('shell/hello'));
    await g.admit(request(), 'pull-build', manifest('python3packages.requests'));
    const denied = await refuses(() => g.admit(request(), 'pull-build', manifest('python3packages.insecure-thing/hello')), 'PACKAGE_DENIED', 403, /python3packages.insecure-thing .*NIXERY_DENY_PACKAGES/);
    assert.deepEqual(denied.detail, { package: 'python3packages.insecure-thing' });
    await refuses(() => g.admit(request(), 'pull-build', manifest('hello/git')), 'PACKAGE_DENIED', 403, /package git is not allowed here: it is not in NIXERY_ALLOW_PACKAGES/);
    // Blobs and manifests by digest name no packages.
    await g.admit(request(), 'pull', { name: 'git', digest: 'sha256:x' });
    await g.admit(request(), 'pull', { name: 'git', reference: `sha256:${'0'.repeat(64)}` });
  });

  test('lists can be files, and the package count is limited', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nixery-policy-'));
    try {
      const file = path.join(dir, 'deny.txt');
      await writeFile(file, '# no editors\nnano\nvim*\n');
      const g = gate({ policy: PackagePolicy.fromSettings(undefined, file), maxPackages: 3 });
      await refuses(() => g.admit(request(), 'pull-build', manifest('vim-full')), 'PACKAGE_DENIED', 403);
      await refuses(() => g.admit(request(), 'pull-build', manifest('shell')), 'PACKAGE_DENIED', 403, /nano/);
      await g.admit(request(), 'pull-build', manifest('git/hello/jq'));
      await refuses(() => g.admit(request(), 'pull-build', manifest('git/hello/jq/tree')), 'TOO_MANY_PACKAGES', 403, /4 packages; .* at most 3 \(NIXERY_MAX_PACKAGES\)/);
      assert.throws(() => PackagePolicy.fromSettings(undefined, path.join(dir, 'missing')), ConfigError);
      assert.throws(() => PackagePolicy.fromSettings('he{llo', undefined), ConfigError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
