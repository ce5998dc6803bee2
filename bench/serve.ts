// `npm run bench:serve`: our registry against Debian's docker-registry (distribution 2.8), in
// one script, on the same blobs and the same manifest bytes, with wrk as the load generator.
// Prints blob GET throughput (4 MB blob, 8 and 64 connections), cached manifest GET requests/s
// and p99 latency (64 connections, alternating rounds), server CPU per request, and our/their
// ratios. Our server runs as deployed: default logging (info, a JSON line per request) into a
// pipe that a reader drains, and metrics on. Measurement notes: bench/README.md.
// BENCH_ONLY=compare,stream,verify,auth,storage runs some of the sections (default: all); `stream`
// (one client, one 100 MB layer, curl and skopeo) is in bench/serve-stream.ts.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../test/helpers/net.js';
import { FilesystemStorage } from '../src/storage/filesystem.js';
import { blobKey } from '../src/builder/layout.js';
import { MEDIA_TYPES } from '../src/manifest/manifest.js';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { streamReport, streamSection, type StreamResult } from './serve-stream.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const DURATION = process.env.BENCH_SECONDS ?? '10';
/** Alternating rounds for comparisons closer than the machine's drift (verification on/off). */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Every measurement follows a warm-up run of the same load (JIT, connection setup, page cache). */
const WARMUP = process.env.BENCH_WARMUP_SECONDS ?? '3';
const SECTIONS = ['compare', 'stream', 'verify', 'auth', 'storage'] as const;
const ONLY = (process.env.BENCH_ONLY ?? SECTIONS.join(',')).split(',').map((s) => s.trim());
for (const s of ONLY) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`BENCH_ONLY: unknown section ${s} (${SECTIONS.join(', ')})`);
const only = (section: (typeof SECTIONS)[number]): boolean => ONLY.includes(section);
/** Extra flags for our server's node, e.g. BENCH_NODE_FLAGS=--cpu-prof to profile it. */
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);

async function waitHttp(url: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status < 500) return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > until) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** User+system CPU seconds of a process so far. */
function cpuSeconds(pid: number): number {
  const stat = execFileSync('cat', [`/proc/${pid}/stat`]).toString();
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

interface WrkResult {
  requestsPerSec: number;
  mbPerSec: number;
  p99ms: number;
  requests: number;
  cpuMsPerRequest: number;
  /** Share of the machine's CPU time the hypervisor gave to others during the run, percent. */
  stealPercent: number;
}

/** The machine's CPU time so far (all CPUs, clock ticks): in total, and stolen by the hypervisor. */
function machineCpu(): { total: number; steal: number } {
  const fields = execFileSync('cat', ['/proc/stat']).toString().split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  return { total: fields.slice(0, 8).reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
}

function parseDuration(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60000;
}

function parseSize(s: string): number {
  const m = /^([\d.]+)(B|KB|MB|GB)$/.exec(s.trim());
  if (!m) return NaN;
  const mult = { B: 1 / 1e6, KB: 1024 / 1e6, MB: (1024 * 1024) / 1e6, GB: (1024 * 1024 * 1024) / 1e6 }[m[2] as 'B'];
  return Number(m[1]) * mult;
}

function wrk(url: string, connections: number, pid: number, headers: string[] = [], redirectsExpected = false): WrkResult {
  const headerArgs = headers.flatMap((h) => ['-H', h]);
  execFileSync('wrk', ['-t2', `-c${connections}`, `-d${WARMUP}s`, ...headerArgs, url], { maxBuffer: 16 * 1024 * 1024 });
  const cpu0 = cpuSeconds(pid);
  const machine0 = machineCpu();
  const out = execFileSync('wrk', ['-t2', `-c${connections}`, `-d${DURATION}s`, '--latency', ...headerArgs, url], {
    maxBuffer: 16 * 1024 * 1024,
  }).toString();
  const machine1 = machineCpu();
  const cpu1 = cpuSeconds(pid);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const transfer = parseSize(/Transfer\/sec:\s+(\S+)/.exec(out)?.[1] ?? '');
  const p99 = parseDuration(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (non2xx && !redirectsExpected) throw new Error(`${url}: ${non2xx[1]} failed responses\n${out}`);
  const stealPercent = (100 * (machine1.steal - machine0.steal)) / Math.max(1, machine1.total - machine0.total);
  return { requestsPerSec: rps, mbPerSec: transfer, p99ms: p99, requests, cpuMsPerRequest: ((cpu1 - cpu0) * 1000) / requests, stealPercent };
}

/**
 * Where our server's stdout goes: a pipe drained by `wc -l`, as a log collector would drain it
 * (not /dev/null, which would hide the cost of writing). Counts the lines for the check that
 * every request was logged.
 */
function logSink(): { stream: Writable; lines: Promise<number> } {
  const wc = spawn('wc', ['-l'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  wc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const lines = new Promise<number>((resolve, reject) => {
    wc.on('error', reject);
    wc.on('close', () => resolve(Number(out.trim())));
  });
  return { stream: wc.stdin, lines };
}

/** Stops a server and waits until it has exited. */
function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** The 1, 5 and 15-minute load averages (other work on a shared machine shows here). */
function loadAverage(): string {
  return execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' ');
}

/** The run with the median throughput. */
function median(results: WrkResult[]): WrkResult {
  return medianBy(results, 'mbPerSec');
}

function medianBy(results: WrkResult[], key: 'mbPerSec' | 'requestsPerSec'): WrkResult {
  return [...results].sort((a, b) => a[key] - b[key])[Math.floor(results.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-bench-serve-'));
  const children: ChildProcess[] = [];
  try {
    // The same bytes for both: a 4 MB random blob, and the hello image our registry builds.
    const blob = randomBytes(4 * 1024 * 1024);
    const blobDigest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const ours = new FilesystemStorage(path.join(dir, 'ours'));
    await ours.put(blobKey(blobDigest), blob, { contentType: 'application/octet-stream' });
    // Over 16 MB: never read whole, so it streams from disk, hashed on every read when checked.
    const large = randomBytes(32 * 1024 * 1024);
    const largeDigest = `sha256:${createHash('sha256').update(large).digest('hex')}`;
    await ours.put(blobKey(largeDigest), large, { contentType: 'application/octet-stream' });

    const startOurs = async (extraEnv: Record<string, string>) => {
      const port = await freePort();
      const env = {
        ...process.env,
        NIX_CONFIG: 'substituters =',
        NIXERY_PKGS_PATH: path.join(ROOT, 'examples/pkgs'),
        STORAGE_PATH: path.join(dir, 'ours'),
        PORT: String(port),
        NIXERY_HOST: '127.0.0.1',
        ...extraEnv,
      };
      const sink = logSink();
      const child = spawn('node', [...NODE_FLAGS, path.join(ROOT, 'dist/src/cli.js'), 'serve'], { env, stdio: ['ignore', sink.stream, 'inherit'] });
      // The server holds its own copy of the pipe: `wc` sees the end when the server exits.
      sink.stream.destroy();
      children.push(child);
      const url = `http://127.0.0.1:${port}`;
      await waitHttp(`${url}/v2/`);
      return { url, child, logLines: sink.lines };
    };
    const { url: ourUrl, child: ourServer, logLines: ourLogLines } = await startOurs({});
    const manifestRes = await fetch(`${ourUrl}/v2/hello/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
    if (manifestRes.status !== 200) throw new Error(`building hello failed: ${await manifestRes.text()}`);
    const manifestBytes = Buffer.from(await manifestRes.arrayBuffer());

    const accept = `Accept: ${MEDIA_TYPES.ociManifest}`;
    const rows: Array<[string, WrkResult, WrkResult]> = [];
    let manifestRounds: Array<[WrkResult, WrkResult]> = [];
    let logCheck: { lines: number; requests: number } | undefined;
    let streamResult: StreamResult | undefined;
    if (only('compare') || only('stream')) {
      // docker-registry with the same content: the image copied from our registry by skopeo
      // (same manifest bytes, checked by digest), the 4 MB blob (in no image) pushed by the API.
      const theirPort = await freePort();
      const config = path.join(dir, 'docker-registry.yml');
      await writeFile(
        config,
        `version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${path.join(dir, 'theirs')}
  delete:
    enabled: false
http:
  addr: 127.0.0.1:${theirPort}
`,
      );
      const theirServer = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'ignore'] });
      children.push(theirServer);
      const theirUrl = `http://127.0.0.1:${theirPort}`;
      await waitHttp(`${theirUrl}/v2/`);
      if (only('stream')) streamResult = await streamSection(dir, startOurs, { url: theirUrl, child: theirServer });
      if (only('compare')) {
        const ourHost = new URL(ourUrl).host;
        execFileSync(
          'skopeo',
          ['copy', '--quiet', '--preserve-digests', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${ourHost}/hello:latest`, `docker://127.0.0.1:${theirPort}/hello:latest`],
          { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NIX_CONFIG: 'substituters =' } },
        );
        const theirManifest = await fetch(`${theirUrl}/v2/hello/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
        const theirBytes = Buffer.from(await theirManifest.arrayBuffer());
        if (!theirBytes.equals(manifestBytes)) {
          throw new Error(`skopeo copy changed the manifest: ${manifestRes.headers.get('docker-content-digest')} here, ${theirManifest.headers.get('docker-content-digest')} there`);
        }
        // distribution 2.8: open an upload session, then PUT the whole blob with its digest.
        const start = await fetch(`${theirUrl}/v2/hello/blobs/uploads/`, { method: 'POST' });
        await start.arrayBuffer();
        const location = new URL(start.headers.get('location')!, theirUrl);
        location.searchParams.set('digest', blobDigest);
        const pushed = await fetch(location, {
          method: 'PUT',
          headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(blob.length) },
          body: new Uint8Array(blob),
        });
        if (pushed.status !== 201) throw new Error(`push ${blobDigest}: ${pushed.status} ${await pushed.text()}`);

        for (const c of [8, 64]) {
          rows.push([
            `blob GET 4 MB, ${c} connections`,
            wrk(`${ourUrl}/v2/hello/blobs/${blobDigest}`, c, ourServer.pid!),
            wrk(`${theirUrl}/v2/hello/blobs/${blobDigest}`, c, theirServer.pid!),
          ]);
        }
        // The machine drifts between runs: alternate the two servers, keep each one's median and
        // the median of each round's ratio.
        const rounds: Array<[WrkResult, WrkResult]> = [];
        for (let round = 0; round < ROUNDS; round++) {
          rounds.push([wrk(`${ourUrl}/v2/hello/manifests/latest`, 64, ourServer.pid!, [accept]), wrk(`${theirUrl}/v2/hello/manifests/latest`, 64, theirServer.pid!, [accept])]);
        }
        manifestRounds = rounds;
        rows.push(['cached manifest GET, 64 connections', medianBy(rounds.map((r) => r[0]), 'requestsPerSec'), medianBy(rounds.map((r) => r[1]), 'requestsPerSec')]);
        // Every request of the measured runs has its log line (the warm-ups add more).
        const serverRequests = rows.filter(([name]) => name.startsWith('blob')).reduce((n, [, ours]) => n + ours.requests, 0) + rounds.reduce((n, [ours]) => n + ours.requests, 0);
        await stop(ourServer);
        logCheck = { lines: await ourLogLines, requests: serverRequests };
        if (logCheck.lines < serverRequests) throw new Error(`our server logged ${logCheck.lines} lines for ${serverRequests} requests: request logging is off`);
      }
    }

    // Integrity checks: the same blob GETs with verification on (the default `once`: once per
    // version on S3/GCS, every read on a filesystem; and `always`) next to the same run with it
    // off. Fresh servers, same blob.
    const verifyRows: Array<[string, WrkResult, WrkResult]> = [];
    if (only('verify')) for (const [label, env, digest] of [
      ['4 MB, hot cache', {}, blobDigest],
      ['4 MB, read whole from disk', { NIXERY_BLOB_CACHE_MB: '0' }, blobDigest],
      ['32 MB, streamed from disk', { NIXERY_BLOB_CACHE_MB: '0' }, largeDigest],
    ] as Array<[string, Record<string, string>, string]>) {
      const blobUrl = (base: string) => `${base}/v2/hello/blobs/${digest}`;
      for (const mode of label.includes('hot cache') ? ['once'] : ['once', 'always']) {
        const on = await startOurs({ ...env, NIXERY_BLOB_VERIFY: mode });
        const off = await startOurs({ ...env, NIXERY_BLOB_VERIFY: 'off' });
        // This machine's throughput drifts by more than the difference measured: alternate the
        // two servers and keep the median of each.
        const runs: Array<[WrkResult, WrkResult]> = [];
        for (let round = 0; round < ROUNDS; round++) runs.push([wrk(blobUrl(on.url), 8, on.child.pid!), wrk(blobUrl(off.url), 8, off.child.pid!)]);
        verifyRows.push([`${label}, verification ${mode}`, median(runs.map((r) => r[0])), median(runs.map((r) => r[1]))]);
        on.child.kill('SIGTERM');
        off.child.kill('SIGTERM');
      }
    }

    // Authentication: cached manifest GETs with Basic credentials and with a bearer token, next
    // to the same run without authentication (a credential is verified once, then remembered).
    const authRows: Array<[string, WrkResult, WrkResult, number]> = [];
    if (only('auth')) {
      const htpasswd = path.join(dir, 'htpasswd');
      execFileSync('htpasswd', ['-B', '-b', '-c', htpasswd, 'bench', 'bench-password'], { stdio: 'ignore' });
      const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
      const jwks = path.join(dir, 'jwks.json');
      await writeFile(jwks, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES256' }] }));
      const token = await new SignJWT({ access: [{ type: 'repository', name: 'hello', actions: ['pull'] }] })
        .setProtectedHeader({ alg: 'ES256', kid: 'bench' })
        .setIssuer('bench')
        .setAudience('nixery-bench')
        .setSubject('bench')
        .setExpirationTime('2h')
        .sign(privateKey);
      const off = await startOurs({});
      const cases: Array<[string, Record<string, string>, string]> = [
        ['Basic (htpasswd, bcrypt)', { NIXERY_HTPASSWD: htpasswd }, `Authorization: Basic ${Buffer.from('bench:bench-password').toString('base64')}`],
        ['bearer token (ES256 JWT)', { NIXERY_AUTH_TOKEN_REALM: 'http://127.0.0.1:9/token', NIXERY_AUTH_TOKEN_SERVICE: 'nixery-bench', NIXERY_AUTH_TOKEN_ISSUER: 'bench', NIXERY_AUTH_TOKEN_KEYS: jwks }, `Authorization: Bearer ${token}`],
      ];
      const manifestUrl = (base: string) => `${base}/v2/hello/manifests/latest`;
      for (const [label, env, header] of cases) {
        const on = await startOurs(env);
        const warm = await fetch(manifestUrl(on.url), { headers: { Accept: MEDIA_TYPES.ociManifest, Authorization: header.slice('Authorization: '.length) } });
        if (warm.status !== 200) throw new Error(`${label}: ${warm.status} ${await warm.text()}`);
        const runs: Array<[WrkResult, WrkResult]> = [];
        for (let round = 0; round < ROUNDS; round++) {
          // Which server goes first alternates, so a drift within a round favours neither.
          const measureOn = () => wrk(manifestUrl(on.url), 64, on.child.pid!, [accept, header]);
          const measureOff = () => wrk(manifestUrl(off.url), 64, off.child.pid!, [accept]);
          if (round % 2 === 0) {
            const a = measureOn();
            runs.push([a, measureOff()]);
          } else {
            const b = measureOff();
            runs.push([measureOn(), b]);
          }
        }
        // The machine drifts between runs: the ratio is the median of each round's ratio.
        const ratios = runs.map(([a, b]) => a.requestsPerSec / b.requestsPerSec).sort((a, b) => a - b);
        authRows.push([label, medianBy(runs.map((r) => r[0]), 'requestsPerSec'), medianBy(runs.map((r) => r[1]), 'requestsPerSec'), ratios[Math.floor(ratios.length / 2)]!]);
        on.child.kill('SIGTERM');
      }
      off.child.kill('SIGTERM');
    }

    // Object storage (a real S3-compatible server on loopback): proxy and redirect modes.
    const { startS3Server, S3RVER_CREDENTIALS } = await import('../test/storage/s3-server.js');
    const s3Rows: Array<[string, WrkResult]> = [];
    const s3 = only('storage') ? await startS3Server() : null;
    if (s3) try {
      const bucket = await s3.createBucket();
      const s3Env = {
        NIXERY_STORAGE_BACKEND: 's3',
        S3_BUCKET: bucket,
        S3_ENDPOINT: s3.endpoint,
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      };
      const { S3Storage } = await import('../src/storage/s3.js');
      const s3Storage = new S3Storage({ bucket, endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: S3RVER_CREDENTIALS });
      await s3Storage.put(blobKey(blobDigest), blob, { contentType: 'application/octet-stream' });
      // The hot-blob cache would hide the backends: these runs stream every blob from storage.
      const fsUncached = await startOurs({ NIXERY_BLOB_CACHE_MB: '0' });
      const proxy = await startOurs({ ...s3Env, NIXERY_BLOB_REDIRECT: 'false', NIXERY_BLOB_CACHE_MB: '0' });
      const redirect = await startOurs({ ...s3Env, NIXERY_BLOB_REDIRECT: 'true' });
      const blobPath = `/v2/hello/blobs/${blobDigest}`;
      s3Rows.push(['filesystem, streamed: blob GET 4 MB, 8 connections', wrk(`${fsUncached.url}${blobPath}`, 8, fsUncached.child.pid!)]);
      s3Rows.push(['s3, proxy mode, streamed: blob GET 4 MB through the registry, 8 connections', wrk(`${proxy.url}${blobPath}`, 8, proxy.child.pid!)]);
      s3Rows.push(['s3, redirect mode: 307 answers, 8 connections', wrk(`${redirect.url}${blobPath}`, 8, redirect.child.pid!, [], true)]);
      const signed = (await fetch(`${redirect.url}${blobPath}`, { redirect: 'manual' })).headers.get('location')!;
      s3Rows.push(['s3, redirect mode: the signed URL from the S3 server, 8 connections', wrk(signed, 8, redirect.child.pid!)]);
    } finally {
      await s3.stop();
    }

    const f = (n: number, d = 1) => n.toFixed(d);
    console.log(`\nregistry benchmark (${DURATION} s per run after ${WARMUP} s of warm-up, wrk -t2, loopback, ${process.env.BENCH_LABEL ?? 'this machine'}; load average at the end ${loadAverage()})\n`);
    if (rows.length) console.log('| workload | nixery-ts | docker-registry | ratio |');
    if (rows.length) console.log('|---|---|---|---|');
    for (const [name, a, b] of rows) {
      if (name.startsWith('blob')) {
        console.log(`| ${name}: MB/s | ${f(a.mbPerSec)} | ${f(b.mbPerSec)} | ${f(a.mbPerSec / b.mbPerSec, 2)}× |`);
      } else {
        const mid = <T,>(xs: T[], key: (x: T) => number) => xs.map(key).sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
        const ratio = mid(manifestRounds, ([ours, theirs]) => ours.requestsPerSec / theirs.requestsPerSec);
        console.log(`| ${name} (median of ${manifestRounds.length} alternating rounds): requests/s | ${f(a.requestsPerSec, 0)} | ${f(b.requestsPerSec, 0)} | ${f(ratio, 2)}× (median of the rounds' ratios) |`);
        console.log(`| ${name}: p99 latency ms (median of the rounds) | ${f(mid(manifestRounds, ([ours]) => ours.p99ms), 2)} | ${f(mid(manifestRounds, ([, theirs]) => theirs.p99ms), 2)} | |`);
      }
      console.log(`| ${name}: server CPU ms/request | ${f(a.cpuMsPerRequest, 3)} | ${f(b.cpuMsPerRequest, 3)} | ${f(b.cpuMsPerRequest / a.cpuMsPerRequest, 2)}× less |`);
    }
    if (manifestRounds.length) {
      console.log('\ncached manifest GET rounds (ours/theirs, and CPU stolen by the hypervisor during each run):');
      for (const [o, t] of manifestRounds) {
        console.log(`- ${f(o.requestsPerSec, 0)}/${f(t.requestsPerSec, 0)} req/s = ${f(o.requestsPerSec / t.requestsPerSec, 2)}×, p99 ${f(o.p99ms, 2)}/${f(t.p99ms, 2)} ms, steal ${f(o.stealPercent)}%/${f(t.stealPercent)}%`);
      }
    }
    if (streamResult) for (const line of streamReport(streamResult)) console.log(line);
    if (logCheck) console.log(`our request log: ${logCheck.lines} JSON lines through a pipe for ${logCheck.requests} measured requests (plus warm-ups)`);
    if (verifyRows.length) console.log(`\n| blob GET, 8 connections (median of ${ROUNDS} alternating runs) | verification on: MB/s | off: MB/s | on/off | CPU ms/request on | off |`);
    if (verifyRows.length) console.log('|---|---|---|---|---|---|');
    for (const [name, on, off] of verifyRows) {
      console.log(`| ${name} | ${f(on.mbPerSec)} | ${f(off.mbPerSec)} | ${f(on.mbPerSec / off.mbPerSec, 2)}× | ${f(on.cpuMsPerRequest, 3)} | ${f(off.cpuMsPerRequest, 3)} |`);
    }
    if (authRows.length) console.log(`\n| cached manifest GET, 64 connections (median of ${ROUNDS} alternating runs) | authentication on: requests/s | off: requests/s | on/off (median of the rounds' ratios) | CPU ms/request on | off |`);
    if (authRows.length) console.log('|---|---|---|---|---|---|');
    for (const [name, on, off, ratio] of authRows) {
      console.log(`| ${name} | ${f(on.requestsPerSec, 0)} | ${f(off.requestsPerSec, 0)} | ${f(ratio, 2)}× | ${f(on.cpuMsPerRequest, 3)} | ${f(off.cpuMsPerRequest, 3)} |`);
    }
    const fsMb = s3Rows[0]?.[1].mbPerSec ?? 0;
    if (s3Rows.length) console.log('\n| blob serving by storage backend | MB/s | requests/s | vs filesystem | registry CPU ms/request |');
    if (s3Rows.length) console.log('|---|---|---|---|---|');
    for (const [name, r] of s3Rows) {
      const isRedirect = name.includes('307');
      console.log(`| ${name} | ${isRedirect ? '–' : f(r.mbPerSec)} | ${f(r.requestsPerSec, 0)} | ${isRedirect ? '–' : `${f(r.mbPerSec / fsMb, 2)}×`} | ${name.includes('signed URL') ? '0 (not involved)' : f(r.cpuMsPerRequest, 3)} |`);
    }
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(`bench:serve: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
