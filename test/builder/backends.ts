// The three storage backends for storage-maintenance tests (scrub, gc): the filesystem in a temp
// directory, S3 on s3rver and GCS on the GCS test server, each as an environment that selects it
// (for a registry, the CLI or createStorage) plus ways to damage stored objects for real.

import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createStorage } from '../../src/storage/index.js';
import { storageSettings } from '../../src/config.js';
import type { Storage } from '../../src/storage/storage.js';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { flipByteInFile } from '../helpers/damage.js';
import { S3RVER_CREDENTIALS, startS3Server, type S3TestServer } from '../storage/s3-server.js';
import { startFakeGcs, type FakeGcs } from '../storage/gcs-server.js';

export const BACKENDS = ['filesystem', 's3', 'gcs'] as const;
export type BackendName = (typeof BACKENDS)[number];

// Never let the AWS SDK look for an instance metadata service.
process.env.AWS_EC2_METADATA_DISABLED = 'true';

const account = JSON.parse(readFileSync(new URL('../../../test/storage/fixtures/gcs-conformance-service-account.json', import.meta.url), 'utf8')) as Record<string, string>;

export interface TestBackend {
  name: BackendName;
  /** Variables selecting this storage (NIXERY_STORAGE_BACKEND, STORAGE_PATH, S3_*, GCS_*). */
  env: Record<string, string>;
  storage: Storage;
  /** Flips the low bit of one byte of a stored object (in place on disk for the filesystem). */
  flipByte(key: string, offset: number): Promise<void>;
  /** Cuts a stored object down to its first `length` bytes. */
  truncate(key: string, length: number): Promise<void>;
  /** A registry on this storage (real Nix, example package set), with more settings if given. */
  startRegistry(settings?: Record<string, string>): Promise<TestRegistry>;
  close(): Promise<void>;
}

let s3: S3TestServer | undefined;
let gcs: FakeGcs | undefined;
let tmp: string | undefined;

/** Stops the servers started for the tests of this file. */
export async function stopBackendServers(): Promise<void> {
  await s3?.stop();
  await gcs?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  s3 = gcs = tmp = undefined;
}

export async function openBackend(name: BackendName): Promise<TestBackend> {
  tmp ??= await fs.mkdtemp(path.join(os.tmpdir(), 'nixery-backends-'));
  let env: Record<string, string>;
  let cleanup = async () => {};
  if (name === 'filesystem') {
    const dir = await fs.mkdtemp(path.join(tmp, 'fs-'));
    env = { NIXERY_STORAGE_BACKEND: 'filesystem', STORAGE_PATH: dir };
    cleanup = () => fs.rm(dir, { recursive: true, force: true });
  } else if (name === 's3') {
    s3 ??= await startS3Server();
    env = {
      NIXERY_STORAGE_BACKEND: 's3',
      S3_BUCKET: await s3.createBucket(),
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    };
  } else {
    gcs ??= await startFakeGcs({ serviceAccount: { client_email: account.client_email!, private_key: account.private_key! } });
    const keyFile = path.join(tmp, 'gcs-key.json');
    await fs.writeFile(keyFile, JSON.stringify({ ...account, token_uri: gcs.tokenUri }));
    env = { NIXERY_STORAGE_BACKEND: 'gcs', GCS_BUCKET: gcs.createBucket(), GCS_ENDPOINT: gcs.endpoint, GOOGLE_APPLICATION_CREDENTIALS: keyFile };
  }
  const storage = await createStorage(storageSettings({ storageBackend: name, storagePath: env.STORAGE_PATH }, env));

  /** Rewrites an object through the storage API, keeping its content type (object stores). */
  const rewrite = async (key: string, change: (bytes: Buffer) => Buffer) => {
    const info = await storage.stat(key);
    const bytes = await storage.read(key);
    if (!info || !bytes) throw new Error(`no object ${key} to damage`);
    await storage.put(key, change(bytes), { contentType: info.contentType });
  };
  const file = (key: string) => path.join((storage as FilesystemStorage).root, key);

  return {
    name,
    env,
    storage,
    async flipByte(key, offset) {
      if (name !== 'filesystem') {
        await rewrite(key, (b) => {
          const copy = Buffer.from(b);
          copy[offset] = copy[offset]! ^ 1;
          return copy;
        });
        return;
      }
      await flipByteInFile(file(key), offset);
    },
    async truncate(key, length) {
      if (name === 'filesystem') await fs.truncate(file(key), length);
      else await rewrite(key, (b) => b.subarray(0, length));
    },
    async startRegistry(settings = {}) {
      // The object-store backends read their variables from process.env, the AWS SDK its
      // credentials lazily: they stay set while the registry runs.
      const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
      const restore = () => {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      };
      Object.assign(process.env, env);
      try {
        const r = await startRegistry({ ...env, ...settings }, name === 'filesystem' ? { storagePath: env.STORAGE_PATH } : {});
        return {
          ...r,
          async close() {
            await r.close();
            destroyClient(r.app.storage);
            restore();
          },
        };
      } catch (err) {
        restore();
        throw err;
      }
    },
    async close() {
      destroyClient(storage);
      await cleanup();
    },
  };
}

/** The S3 backend keeps an SDK client (with sockets) to close; other backends have nothing to close. */
function destroyClient(storage: unknown): void {
  const client = (storage as { client?: { destroy?: unknown } }).client;
  if (typeof client?.destroy === 'function') (client.destroy as () => void).call(client);
}
