// A Nix binary cache for tests: a directory filled with `nix copy --to file://…` and signed with a
// key from `nix-store --generate-binary-cache-key`, served over HTTP on loopback by a small static
// server that can be made slow (a delay before each answer, a byte rate for each body).

import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { nixEnv } from './nix.js';

const execFileP = promisify(execFile);

export interface BinaryCache {
  /** The cache directory (nix-cache-info, *.narinfo, nar/). */
  dir: string;
  /** `name:base64` public key, for `trusted-public-keys`. */
  publicKey: string;
  /** Copies `paths` and their closures into the cache, signed. */
  add(paths: readonly string[]): Promise<void>;
  remove(): Promise<void>;
}

export async function makeBinaryCache(name: string): Promise<BinaryCache> {
  const root = await mkdtemp(path.join(tmpdir(), 'nixery-binary-cache-'));
  const dir = path.join(root, 'cache');
  const secretKey = path.join(root, 'secret.key');
  const publicKeyFile = path.join(root, 'public.key');
  await execFileP('nix-store', ['--generate-binary-cache-key', name, secretKey, publicKeyFile]);
  const publicKey = (await readFile(publicKeyFile, 'utf8')).trim();
  return {
    dir,
    publicKey,
    async add(paths) {
      // Uncompressed NARs: the test's data is random (xz would only cost time), and the body
      // sizes are then what the slow server's rate applies to.
      const to = `file://${dir}?secret-key=${secretKey}&compression=none`;
      await execFileP('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--to', to, ...paths], { env: nixEnv(), maxBuffer: 16 * 1024 * 1024 });
    },
    remove: () => rm(root, { recursive: true, force: true }),
  };
}

export interface CacheServerOptions {
  /** Wait this long before answering each request. */
  delayMs?: number;
  /** Send each body at about this many bytes per second (default: as fast as possible). */
  bytesPerSecond?: number;
}

export interface ServedRequest {
  path: string;
  status: number;
  bytes: number;
  /** From the request's arrival to the end of its response. */
  ms: number;
}

export interface CacheServer {
  url: string;
  requests: ServedRequest[];
  close(): Promise<void>;
}

/** Serves `dir` read-only over HTTP on 127.0.0.1 (GET and HEAD; anything outside `dir` is 404). */
export async function serveBinaryCache(dir: string, options: CacheServerOptions = {}): Promise<CacheServer> {
  const requests: ServedRequest[] = [];
  const server = http.createServer((req, res) => {
    const started = Date.now();
    const urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://cache').pathname);
    const file = path.join(dir, path.normalize(urlPath));
    let bytes = 0;
    res.on('close', () => requests.push({ path: urlPath, status: res.statusCode, bytes, ms: Date.now() - started }));
    const answer = async (): Promise<void> => {
      const info = file.startsWith(dir + path.sep) ? await stat(file).catch(() => null) : null;
      if (!info?.isFile() || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      res.writeHead(200, { 'content-length': info.size, 'content-type': 'application/octet-stream' });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      const body = createReadStream(file, { highWaterMark: 16 * 1024 });
      if (!options.bytesPerSecond) {
        body.on('data', (chunk: Buffer | string) => (bytes += chunk.length));
        body.pipe(res);
        return;
      }
      // Throttled: one small chunk, then a pause long enough to keep the rate.
      const rate = options.bytesPerSecond;
      body.on('data', (chunk: Buffer | string) => {
        body.pause();
        bytes += chunk.length;
        res.write(chunk);
        setTimeout(() => body.resume(), (chunk.length / rate) * 1000);
      });
      body.on('end', () => res.end());
      body.on('error', () => res.destroy());
      res.on('close', () => body.destroy());
    };
    setTimeout(() => void answer().catch(() => res.destroy()), options.delayMs ?? 0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** NIX_CONFIG for substituting only from `url`: no local builds, no remote builders. */
export function substituteOnlyConfig(url: string, publicKey: string): string {
  return [`substituters = ${url}`, `trusted-public-keys = ${publicKey}`, 'max-jobs = 0', 'builders ='].join('\n');
}

/** Deletes store paths (which nothing may still use) from the local Nix store. */
export async function deleteFromStore(paths: readonly string[]): Promise<void> {
  await execFileP('nix-store', ['--delete', ...paths], { env: nixEnv(), maxBuffer: 16 * 1024 * 1024 });
}
