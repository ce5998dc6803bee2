// Starts a real S3-compatible server (the s3rver npm package) on loopback, in its own process.
//
// s3rver encrypts list continuation tokens with DES, which OpenSSL 3 only has in its legacy
// provider, hence `--openssl-legacy-provider` for that child process only. What s3rver does
// not do: verify SigV4 signatures (it does check presigned URL expiry), abort multipart
// uploads (DELETE ?uploadId answers 405), and honour conditional writes (If-None-Match and
// If-Match on PUT and DELETE are ignored; s3-conditional-proxy.ts enforces them in front of it).
//
// One s3rver bug is patched here: after a DELETE it removes the key's parent directories once
// they are empty, which races a concurrent PUT under the same prefix (its mkdir, then the
// rmdir, then its open fails with ENOENT, an unhandled error that kills the server). Replicas
// staging layers at once hit it. S3 has no directories, so the patched delete leaves them.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3TestServer {
  endpoint: string;
  /** A new, empty bucket on the server. */
  createBucket(): Promise<string>;
  /** Kills the server at once (SIGKILL), keeping its data: connections in progress break. */
  crash(): Promise<void>;
  /** Starts it again on the same port with the same data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const LAUNCHER = `
const S3rver = (await import(process.env.S3RVER_MODULE)).default;
const FilesystemStore = (await import(process.env.S3RVER_STORE)).default;
const { unlink } = await import('node:fs/promises');
FilesystemStore.prototype.deleteObject = async function (bucket, key) {
  await Promise.all(['object', 'object.md5', 'metadata.json'].map((resource) =>
    unlink(this.getResourcePath(bucket, key, resource)).catch((err) => { if (err.code !== 'ENOENT') throw err; })));
};
const server = new S3rver({ port: Number(process.env.S3RVER_PORT), address: '127.0.0.1', silent: true, directory: process.env.S3RVER_DIR });
const { port } = await server.run();
process.stdout.write(JSON.stringify({ port }) + '\\n');
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
`;

export async function startS3Server(): Promise<S3TestServer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'nixery-s3rver-'));
  let { child, port } = await launch(dir, 0);
  let stopping = false;
  const watch = (c: ChildProcess) => {
    // A server that dies under a test explains itself instead of leaving ECONNREFUSED behind.
    c.once('exit', (code, signal) => {
      if (!stopping && c === child) process.stderr.write(`s3rver on port ${port} exited unexpectedly (${code ?? signal})\n`);
    });
  };
  watch(child);
  const endpoint = `http://127.0.0.1:${port}`;
  const admin = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  let buckets = 0;
  return {
    endpoint,
    async createBucket() {
      const name = `nixery-test-${process.pid}-${++buckets}`;
      await admin.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    async crash() {
      stopping = true;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await exited;
    },
    async restart() {
      ({ child } = await launch(dir, port));
      stopping = false;
      watch(child);
    },
    async stop() {
      admin.destroy();
      stopping = true;
      await stopChild(child);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** Runs s3rver on `port` (0: any) over the data in `dir`; resolves once it listens. */
async function launch(dir: string, port: number): Promise<{ child: ChildProcess; port: number }> {
  const require = createRequire(import.meta.url);
  const modulePath = require.resolve('s3rver');
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '--input-type=module', '-e', LAUNCHER], {
    env: { ...process.env, S3RVER_MODULE: modulePath, S3RVER_STORE: require.resolve('s3rver/lib/stores/filesystem.js'), S3RVER_DIR: dir, S3RVER_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const listening = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within 20 s: ${stderr}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with ${code}: ${stderr}`));
    });
  });
  return { child, port: listening };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
