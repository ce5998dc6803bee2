// A private single-node Ceph with its S3 gateway (radosgw), for tests against a real S3 server
// that honours conditional writes (s3rver ignores them). Debian's `radosgw`, `ceph-mon` and
// `ceph-osd` (scripts/install-deps.sh). Everything lives in a temp dir and listens on loopback
// only: one monitor, one OSD on memstore (objects in memory, no disk), pools of size 1, no
// cephx (auth none: nothing but this test can reach the loopback ports), and radosgw's beast
// frontend. Daemons run in the foreground as our children and are stopped by PID.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { withParentDeathSignal } from '../../src/nix/processes.js';
import { freePort } from './net.js';

const execFileP = promisify(execFile);

const PROGRAMS = ['monmaptool', 'ceph-mon', 'ceph-osd', 'ceph', 'radosgw', 'radosgw-admin'];

export interface RgwServer {
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Milliseconds from the first command to the gateway answering S3 with a user. */
  startupMs: number;
  /** A new, empty bucket. */
  createBucket(): Promise<string>;
  /** PIDs of the monitor, the OSD and the gateway. */
  pids: number[];
  stop(): Promise<void>;
}

/** Why an RGW cannot start here (programs missing), or undefined when it can. */
export async function rgwUnavailable(): Promise<string | undefined> {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean);
  const missing: string[] = [];
  for (const program of PROGRAMS) {
    let found = false;
    for (const dir of dirs) {
      try {
        await access(path.join(dir, program), constants.X_OK);
        found = true;
        break;
      } catch {
        /* not here */
      }
    }
    if (!found) missing.push(program);
  }
  return missing.length ? `Ceph RGW is not installed (missing ${missing.join(', ')}; apt-get install --no-install-recommends radosgw ceph-mon ceph-osd, or run scripts/install-deps.sh)` : undefined;
}

export async function startRgw(): Promise<RgwServer> {
  const started = Date.now();
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-rgw-'));
  const children: ChildProcess[] = [];
  const conf = path.join(dir, 'ceph.conf');
  const stop = async () => {
    await Promise.all(children.map((child) => kill(child)));
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  };
  try {
    const [monPort, rgwPort] = await Promise.all([freePort(), freePort()]);
    const fsid = randomUUID();
    await Promise.all(['mon', 'osd', 'run', 'log'].map((d) => mkdir(path.join(dir, d))));
    await writeFile(conf, config(dir, fsid, monPort, rgwPort));
    const c = ['-c', conf];
    await run('monmaptool', ['--create', '--fsid', fsid, '--add', 'a', `v1:127.0.0.1:${monPort}`, path.join(dir, 'monmap')]);
    await run('ceph-mon', [...c, '--mkfs', '-i', 'a', '--monmap', path.join(dir, 'monmap')]);
    children.push(daemon('ceph-mon', [...c, '-i', 'a', '-f']));
    const id = (await run('ceph', [...c, '--connect-timeout', '30', 'osd', 'create'])).trim();
    // The OSD is placed in the CRUSH map here, not by itself at start: its own placement command
    // races its monitor session in Ceph 16 (refused as 'wrong fsid', and the OSD exits).
    await Promise.all([run('ceph-osd', [...c, '-i', id, '--mkfs']), run('ceph', [...c, 'osd', 'crush', 'add', `osd.${id}`, '1', 'root=default'])]);
    children.push(daemon('ceph-osd', [...c, '-i', id, '-f']));
    children.push(daemon('radosgw', [...c, '-n', 'client.rgw', '-f']));
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await untilAnswering(endpoint, children, dir);
    const credentials = { accessKeyId: randomBytes(10).toString('hex').toUpperCase(), secretAccessKey: randomBytes(20).toString('hex') };
    await run('radosgw-admin', [...c, '-n', 'client.admin', 'user', 'create', '--uid', 'nixery-test', '--display-name', 'nixery test', '--access-key', credentials.accessKeyId, '--secret', credentials.secretAccessKey]);
    const startupMs = Date.now() - started;
    const admin = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    let buckets = 0;
    return {
      endpoint,
      credentials,
      startupMs,
      pids: children.map((child) => child.pid!),
      async createBucket() {
        const name = `nixery-test-${process.pid}-${++buckets}`;
        await admin.send(new CreateBucketCommand({ Bucket: name }));
        return name;
      },
      async stop() {
        admin.destroy();
        await stop();
      },
    };
  } catch (err) {
    const logs = await tails(dir);
    await stop();
    throw new Error(`Ceph RGW did not start: ${(err as Error).message}${logs}`, { cause: err });
  }
}

function config(dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = v1:127.0.0.1:${monPort}
public addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/log/$name.log
crash dir = ${dir}/crash
# One OSD: pools of one copy, few placement groups, no autoscaler (there is no manager).
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
# Map changes (radosgw creates its pools at start) commit at once instead of after a second each.
paxos propose interval = 0.01
paxos min wait = 0.001
[mon]
mon data = ${dir}/mon
[osd]
osd data = ${dir}/osd
osd crush update on start = false
osd class update on start = false
osd objectstore = memstore
memstore device bytes = 2147483648
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
`;
}

async function run(program: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP(program, args, { timeout: 60_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${program} ${args.filter((a) => !a.startsWith('/')).join(' ')} failed: ${e.stderr || e.message}`, { cause: err });
  }
}

function daemon(program: string, args: string[]): ChildProcess {
  // Dies with the test process (setpriv's parent-death signal), so a killed run leaves no Ceph
  // behind. Logs go to files in the temp dir (log file above); stdio would only repeat them.
  const { command, args: argv } = withParentDeathSignal(program, args);
  const child = spawn(command, argv, { stdio: 'ignore' });
  child.on('error', () => {});
  return child;
}

async function untilAnswering(endpoint: string, children: ChildProcess[], dir: string): Promise<void> {
  const until = Date.now() + 60_000;
  for (;;) {
    const dead = children.find((child) => child.exitCode !== null || child.signalCode !== null);
    if (dead) throw new Error(`${dead.spawnfile} exited (${dead.exitCode ?? dead.signalCode})`);
    try {
      const res = await fetch(endpoint, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return;
    } catch {
      if (Date.now() > until) throw new Error(`radosgw did not answer on ${endpoint} within 60 s (logs in ${dir}/log)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Memstore keeps nothing worth a clean shutdown: SIGKILL by PID, then wait for the exit. */
async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

async function tails(dir: string): Promise<string> {
  let out = '';
  for (const name of ['mon.a', 'osd.0', 'client.rgw']) {
    const text = await readFile(path.join(dir, 'log', `${name}.log`), 'utf8').catch(() => '');
    if (text) out += `\n--- ${name}.log (end) ---\n${text.split('\n').slice(-15).join('\n')}`;
  }
  return out;
}
