// `nixery gc --grace 0 --manifest-max-age 0` in a loop, as separate processes, against two
// registries that serve and build on the same storage (filesystem, and S3 on s3rver), while
// clients pull. What must hold: no client ever gets a wrong byte; a registry whose image lost a
// blob rebuilds it instead of answering 404 forever (a pull from one replica succeeds, retried
// at most twice); every image pulls from every replica once gc stops; and storage is left
// consistent (scrub finds no record pointing at a missing or bad blob).

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';
import type { TestRegistry } from '../helpers/registry.js';
import { openBackend, stopBackendServers, type BackendName } from '../builder/backends.js';

const execFileP = promisify(execFile);
const CLI = path.resolve('dist/src/cli.js');
const IMAGES = ['hello', 'shell/hello', 'curl', 'python3', 'jq/tree', 'git'];
const CHAOS_MS = 20_000;
const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

class WrongBytes extends Error {}

interface PullStats {
  pulls: number;
  retried: number;
  blobMisses: number;
}

/** One pull from one replica: the manifest by tag, then every blob, each checked against its digest. */
async function pullOnce(r: TestRegistry, image: string, stats: PullStats): Promise<void> {
  const res = await fetch(`${r.url}/v2/${image}/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`manifest ${image}: ${res.status} ${Buffer.from(bytes).toString()}`);
  if (sha256(bytes) !== res.headers.get('docker-content-digest')) throw new WrongBytes(`manifest ${image} does not match its digest`);
  const manifest = JSON.parse(Buffer.from(bytes).toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const { digest } of [manifest.config, ...manifest.layers]) {
    const blob = await fetch(`${r.url}/v2/${image}/blobs/${digest}`);
    const body = new Uint8Array(await blob.arrayBuffer());
    if (blob.status === 404) stats.blobMisses++;
    if (blob.status !== 200) throw new Error(`blob ${digest} of ${image}: ${blob.status} ${Buffer.from(body).toString().slice(0, 300)}`);
    if (sha256(body) !== digest) throw new WrongBytes(`blob ${digest} of ${image}: the bytes served are not the digest's`);
  }
}

/**
 * A client's pull: retried (after a pause, as docker and containerd do) at most `retries` times;
 * wrong bytes fail at once. With object storage a blob comes from the bucket through a redirect,
 * which gc may empty between the redirect and the fetch: the retry reaches the registry again,
 * which finds the blob gone and rebuilds it.
 */
async function pull(r: TestRegistry, image: string, stats: PullStats, retries = 3): Promise<void> {
  stats.pulls++;
  for (let attempt = 0; ; attempt++) {
    try {
      await pullOnce(r, image, stats);
      return;
    } catch (err) {
      if (err instanceof WrongBytes || attempt >= retries) throw err;
      stats.retried++;
      await new Promise((res) => setTimeout(res, 1000));
    }
  }
}

describe('gc chaos', () => {
  after(() => stopBackendServers());

  for (const name of ['filesystem', 's3'] as BackendName[]) {
    test(`gc in a loop with --grace 0 --manifest-max-age 0 against two live registries on ${name} storage`, async () => {
      const backend = await openBackend(name);
      // Without the hot-blob cache every blob is read from storage (filesystem), or redirected
      // to the bucket (S3): nothing hides what gc removes.
      const settings = { NIXERY_BLOB_CACHE_MB: '0' };
      const replicas = [await backend.startRegistry(settings), await backend.startRegistry(settings)];
      const env = { ...process.env, ...backend.env, NIX_CONFIG: 'substituters =' };
      let stopping = false;
      let gcRuns = 0;
      const gcLoop = (async () => {
        while (!stopping) {
          const args = gcRuns % 3 === 2 ? ['gc', '--grace', '0'] : ['gc', '--grace', '0', '--manifest-max-age', '0'];
          await new Promise<void>((resolve, reject) => {
            const child = spawn('node', [CLI, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
            let stderr = '';
            child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
            child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nixery gc exited ${code}: ${stderr}`))));
          });
          gcRuns++;
        }
      })();
      const stats: PullStats = { pulls: 0, retried: 0, blobMisses: 0 };
      try {
        const until = Date.now() + CHAOS_MS;
        await Promise.all(
          Array.from({ length: 4 }, async (_, client) => {
            for (let i = 0; Date.now() < until; i++) {
              const r = replicas[(client + i) % replicas.length]!;
              await pull(r, IMAGES[(client * 7 + i) % IMAGES.length]!, stats);
            }
          }),
        );
      } finally {
        stopping = true;
        await gcLoop;
      }
      assert.ok(gcRuns >= 5, `gc ran ${gcRuns} times`);
      // Once gc stops, every image pulls from every replica.
      for (const r of replicas) for (const image of IMAGES) await pull(r, image, stats);
      const { stdout } = await execFileP('node', [CLI, 'scrub'], { env }).catch((err: { stdout: string; stderr: string }) => {
        throw new Error(`scrub found damage after the chaos:\n${err.stdout}\n${err.stderr}`);
      });
      const repairs = replicas.reduce((n, r) => n + (r.registry.metrics().nixery_blob_repairs_total ?? 0), 0);
      for (const r of replicas) await r.close();
      await backend.close();
      process.stdout.write(`# ${name}: ${stats.pulls} pulls, ${stats.retried} retried, ${stats.blobMisses} blob 404s, ${repairs} blobs rebuilt, ${gcRuns} gc runs; scrub: ${stdout.trim().split('\n').pop()}\n`);
    });
  }
});
