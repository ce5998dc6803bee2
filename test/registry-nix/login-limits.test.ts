// Basic authentication under attack, with a real registry and htpasswd -B at cost 12 (what
// operators use): bcrypt runs in the thread pool, so a burst of wrong passwords leaves /healthz
// and a cached pull fast; an unknown user costs what a known one does; a client that keeps
// failing gets 429 with Retry-After before bcrypt runs. Also: an empty Basic pair (skopeo
// without credentials) is a client without credentials, every JSON answer says nosniff, and a
// name with characters a name cannot have is refused for those.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStandInRegistry as startRegistry, type StandInRegistry as TestRegistry } from '../helpers/registry.js';
import { Htpasswd } from '../../src/auth/htpasswd.js';

let dir: string;
let file: string;
let r: TestRegistry;

const basic = (user: string, password: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
const ALICE = basic('alice', 'wonderland');

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nixery-logins-'));
  file = path.join(dir, 'htpasswd');
  execFileSync('htpasswd', ['-B', '-C', '12', '-b', '-c', file, 'alice', 'wonderland']);
  r = await startRegistry({ NIXERY_HTPASSWD: file });
  // Built once: the pulls below are cached.
  assert.equal((await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: ALICE })).status, 200);
});

after(async () => {
  await r?.close();
  await rm(dir, { recursive: true, force: true });
});

test('an unknown user costs about what a known one does', async (t) => {
  const htpasswd = await Htpasswd.load(file);
  // The fastest of three each, interleaved: the machine is shared, bcrypt is CPU.
  let known = Infinity;
  let unknown = Infinity;
  for (let i = 0; i < 3; i++) {
    known = Math.min(known, await timed(() => htpasswd.verify('alice', 'not her password')));
    unknown = Math.min(unknown, await timed(() => htpasswd.verify('mallory', 'anything')));
  }
  t.diagnostic(`wrong password of a known user ${known.toFixed(1)} ms, unknown user ${unknown.toFixed(1)} ms`);
  assert.equal(await htpasswd.verify('alice', 'wonderland'), true);
  assert.equal(await htpasswd.verify('mallory', 'wonderland'), false);
  // Same order of magnitude (bcryptjs with a cost-5 dummy was 0.003 s against 0.247 s).
  assert.ok(unknown > known / 4 && unknown < known * 4, `known ${known.toFixed(1)} ms, unknown ${unknown.toFixed(1)} ms`);
});

test('a burst of wrong passwords leaves /healthz and cached pulls fast, then is refused with 429', async (t) => {
  // One wrong password alone, for scale.
  const one = await timed(async () => assert.equal((await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: basic('alice', 'guess-0') })).status, 401));

  const guesses = Array.from({ length: 12 }, (_, i) => fetch(`${r.url}/v2/hello/manifests/latest`, { headers: basic('alice', `guess-${i + 1}`) }).then((res) => res.status));
  const probes: number[] = [];
  const pulls: number[] = [];
  for (let i = 0; i < 10; i++) {
    probes.push(await timed(async () => assert.equal((await fetch(`${r.url}/healthz`)).status, 200)));
    pulls.push(await timed(async () => assert.equal((await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: ALICE })).status, 200)));
  }
  const statuses = await Promise.all(guesses);
  const worst = Math.max(...probes, ...pulls);
  t.diagnostic(`one failed login ${one.toFixed(1)} ms; during the burst: slowest /healthz ${Math.max(...probes).toFixed(1)} ms, slowest cached pull ${Math.max(...pulls).toFixed(1)} ms; statuses ${statuses.join(',')}`);
  assert.ok(worst < 200, `slowest probe or cached pull ${worst.toFixed(1)} ms during the burst (one failed login: ${one.toFixed(1)} ms)`);

  // The client's failures ran out during the burst: the rest were refused without bcrypt.
  assert.ok(statuses.includes(401) && statuses.includes(429), `statuses ${statuses.join(',')}`);
  // The budget refills slowly (a token every few seconds): on a loaded machine the burst may
  // have outlasted one, which one more guess uses up.
  let refused = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: basic('alice', 'one more guess') });
  for (let i = 0; i < 2 && refused.status === 401; i++) refused = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: basic('alice', `yet another guess ${i}`) });
  assert.equal(refused.status, 429);
  assert.ok(Number(refused.headers.get('retry-after')) >= 1);
  const body = (await refused.json()) as { errors: Array<{ code: string; message: string }> };
  assert.equal(body.errors[0]!.code, 'TOOMANYREQUESTS');
  assert.match(body.errors[0]!.message, /failed logins/);
  // Credentials verified before stay valid: the user is not locked out by someone else's guesses.
  assert.equal((await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: ALICE })).status, 200);
});

test('an empty Basic pair is a client without credentials: 401 asking for authentication', async () => {
  const res = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: basic('', '') });
  assert.equal(res.status, 401);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
  const { errors } = (await res.json()) as { errors: Array<{ code: string; message: string }> };
  assert.equal(errors[0]!.code, 'UNAUTHORIZED');
  assert.match(errors[0]!.message, /authentication required/);
  assert.doesNotMatch(errors[0]!.message, /password is wrong/);
});

test('JSON answers carry nosniff; invalid characters in a name are named as such', async () => {
  for (const p of ['/api/v1/packages?q=hello', '/api/v1/images', '/v2/', '/v2/_catalog', '/v2/hello/tags/list', '/v2/nope/nope/nope']) {
    const res = await fetch(`${r.url}${p}`, { headers: ALICE });
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', p);
    await res.arrayBuffer();
  }
  const res = await fetch(`${r.url}/v2/%3Cscript%3E/manifests/latest`, { headers: ALICE });
  assert.equal(res.status, 400);
  const { errors } = (await res.json()) as { errors: Array<{ code: string; message: string }> };
  assert.equal(errors[0]!.code, 'NAME_INVALID');
  assert.match(errors[0]!.message, /characters a name cannot have \("%"\)/);
  assert.doesNotMatch(errors[0]!.message, /upper-case/);
});
