// bench:serve's `stream` section: one client, one big layer. Our registry builds an image whose
// only package is 100 MB of random bytes (real Nix, a package made for this run), skopeo copies
// it into docker-registry with its digests, and then, alternating the two servers:
// - `curl` of the 100 MB layer (median of BENCH_STREAM_ROUNDS, default 5, after a warm-up each:
//   our first read of a digest is hashed with SHA-256, later ones are checked against its tag);
// - a whole pull of the image with `skopeo copy` to a local directory (skopeo checks digests too).
// Also: our server's CPU per layer GET, and the first (hashed) read of the layer.

import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { MEDIA_TYPES } from '../src/manifest/manifest.js';
import { makeUniquePackageSet } from '../test/helpers/unique-pkgs.js';

const ROUNDS = Number(process.env.BENCH_STREAM_ROUNDS ?? 5);
const LAYER_MB = 100;

export interface StreamServer {
  url: string;
  child: ChildProcess;
}

export interface StreamResult {
  layerBytes: number;
  /** Seconds per round, ours and theirs, in the order run. */
  curl: Array<[number, number]>;
  skopeo: Array<[number, number]>;
  /** Our first read of the layer (hashed with SHA-256), and theirs, seconds. */
  firstRead: [number, number];
  /** CPU of each server per layer GET over the curl rounds, ms. */
  cpuMs: [number, number];
  imageBytes: number;
}

/** User+system CPU of a process so far, ms. */
function cpuMs(pid: number): number {
  const fields = execFileSync('cat', [`/proc/${pid}/stat`]).toString();
  const f = fields.slice(fields.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
  return ((Number(f[11]) + Number(f[12])) * 1000) / ticks;
}

/** One `curl` of a URL to /dev/null: seconds, after checking the status and size. */
function curl(url: string, size: number): number {
  const out = execFileSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}', url]).toString().trim().split(' ');
  if (out[0] !== '200' || Number(out[1]) !== size) throw new Error(`curl ${url}: ${out.join(' ')}`);
  return Number(out[2]);
}

/** One whole pull with skopeo into a fresh directory: seconds. */
function skopeoPull(host: string, image: string, dir: string): number {
  const dest = path.join(dir, `pull-${host.replace(/[^0-9a-z]/gi, '-')}`);
  execFileSync('rm', ['-rf', dest]);
  const started = performance.now();
  execFileSync('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${host}/${image}:latest`, `dir:${dest}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  const seconds = (performance.now() - started) / 1000;
  execFileSync('rm', ['-rf', dest]);
  return seconds;
}

/** ROUNDS of [ours, theirs]; which one goes first alternates, so a drift within a round favours neither. */
function alternate(ours: () => number, theirs: () => number): Array<[number, number]> {
  const rounds: Array<[number, number]> = [];
  for (let round = 0; round < ROUNDS; round++) {
    if (round % 2 === 0) {
      const a = ours();
      rounds.push([a, theirs()]);
    } else {
      const b = theirs();
      rounds.push([ours(), b]);
    }
  }
  return rounds;
}

export function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/**
 * `startOurs(env)` starts our server with these settings; `theirs` is docker-registry, running.
 * The package set is made here and removed at the end.
 */
export async function streamSection(dir: string, startOurs: (env: Record<string, string>) => Promise<StreamServer>, theirs: StreamServer): Promise<StreamResult> {
  const set = await makeUniquePackageSet([{ name: 'bigblob', script: `head -c ${LAYER_MB * 1024 * 1024} /dev/urandom > $out/data` }]);
  const work = await mkdtemp(path.join(dir, 'stream-'));
  try {
    const ours = await startOurs({ NIXERY_PKGS_PATH: set.dir });
    const res = await fetch(`${ours.url}/v2/bigblob/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
    if (res.status !== 200) throw new Error(`building bigblob: ${res.status} ${await res.text()}`);
    const manifest = (await res.json()) as { layers: Array<{ digest: string; size: number }>; config: { size: number } };
    const layer = manifest.layers.reduce((a, b) => (b.size > a.size ? b : a));
    if (layer.size < LAYER_MB * 1_000_000) throw new Error(`the largest layer has ${layer.size} bytes`);
    const ourHost = new URL(ours.url).host;
    const theirHost = new URL(theirs.url).host;
    execFileSync('skopeo', ['copy', '--quiet', '--preserve-digests', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${ourHost}/bigblob:latest`, `docker://${theirHost}/bigblob:latest`], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const layerUrl = (base: string) => `${base}/v2/bigblob/blobs/${layer.digest}`;
    // skopeo read the layer once: later reads here are checked by tag. A fresh server shows the
    // first read, hashed with SHA-256.
    const fresh = await startOurs({ NIXERY_PKGS_PATH: set.dir });
    const firstRead: [number, number] = [curl(layerUrl(fresh.url), layer.size), curl(layerUrl(theirs.url), layer.size)];
    fresh.child.kill('SIGTERM');
    const cpu0 = [cpuMs(ours.child.pid!), cpuMs(theirs.child.pid!)];
    const rounds = alternate(() => curl(layerUrl(ours.url), layer.size), () => curl(layerUrl(theirs.url), layer.size));
    const cpu1 = [cpuMs(ours.child.pid!), cpuMs(theirs.child.pid!)];
    skopeoPull(ourHost, 'bigblob', work);
    skopeoPull(theirHost, 'bigblob', work);
    const skopeo = alternate(() => skopeoPull(ourHost, 'bigblob', work), () => skopeoPull(theirHost, 'bigblob', work));
    ours.child.kill('SIGTERM');
    return {
      layerBytes: layer.size,
      curl: rounds,
      skopeo,
      firstRead,
      cpuMs: [(cpu1[0]! - cpu0[0]!) / ROUNDS, (cpu1[1]! - cpu0[1]!) / ROUNDS],
      imageBytes: manifest.layers.reduce((n, l) => n + l.size, 0) + manifest.config.size,
    };
  } finally {
    await set.remove();
    await rm(work, { recursive: true, force: true });
  }
}

/** The section's lines for the report. */
export function streamReport(r: StreamResult): string[] {
  const f = (n: number, d = 1) => n.toFixed(d);
  const ms = (s: number) => f(s * 1000, 0);
  const ratio = (pairs: Array<[number, number]>) => median(pairs.map(([ours, theirs]) => theirs / ours));
  const ours = (pairs: Array<[number, number]>) => median(pairs.map((p) => p[0]));
  const theirs = (pairs: Array<[number, number]>) => median(pairs.map((p) => p[1]));
  return [
    `\n| one client, one ${f(r.layerBytes / 1e6, 0)} MB layer (median of ${r.curl.length} alternating rounds) | nixery-ts | docker-registry | speed ratio (theirs/ours time, median of the rounds) |`,
    '|---|---|---|---|',
    `| curl of the layer, ms | ${ms(ours(r.curl))} | ${ms(theirs(r.curl))} | ${f(ratio(r.curl), 2)}× |`,
    `| server CPU per layer GET, ms | ${f(r.cpuMs[0], 0)} | ${f(r.cpuMs[1], 0)} | |`,
    `| first read after a start (ours hashed with SHA-256), ms | ${ms(r.firstRead[0])} | ${ms(r.firstRead[1])} | ${f(r.firstRead[1] / r.firstRead[0], 2)}× |`,
    `| skopeo copy of the whole image (${f(r.imageBytes / 1e6, 0)} MB) to a directory, ms | ${ms(ours(r.skopeo))} | ${ms(theirs(r.skopeo))} | ${f(ratio(r.skopeo), 2)}× |`,
    `curl rounds ours/theirs ms: ${r.curl.map(([a, b]) => `${ms(a)}/${ms(b)}`).join(', ')}; skopeo: ${r.skopeo.map(([a, b]) => `${ms(a)}/${ms(b)}`).join(', ')}`,
  ];
}
