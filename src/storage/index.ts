// Chooses and configures the storage backend (NIXERY_STORAGE_BACKEND). The object-storage
// backends are imported only when chosen, so the filesystem path never loads an SDK.

import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { FilesystemStorage } from './filesystem.js';
import type { Storage } from './storage.js';

export type { Storage, ObjectInfo, ObjectWriter, ByteRange, OpenedObject } from './storage.js';
export { STORAGE_KEY } from './storage.js';
export { FilesystemStorage } from './filesystem.js';
export { InvalidStorageKeyError, StorageUnavailableError, StorageObjectNotFoundError, StorageRangeError, validateKey } from './errors.js';

export const STORAGE_BACKENDS = ['filesystem', 's3', 'gcs'] as const;
export type StorageBackendName = (typeof STORAGE_BACKENDS)[number];

/** The settings the factory reads; structurally a subset of the application Config. */
export interface StorageConfig {
  /** NIXERY_STORAGE_BACKEND: filesystem (default), s3 or gcs. */
  storageBackend?: string;
  /** STORAGE_PATH, for the filesystem backend. */
  storagePath?: string;
  /** NIXERY_BLOB_REDIRECT: object storage answers redirectUrl (default true). */
  blobRedirect?: boolean;
  /** NIXERY_REDIRECT_TTL: signed URL lifetime in seconds (default 300). */
  redirectTtl?: number;
}

export const DEFAULT_REDIRECT_TTL_SECONDS = 300;

/**
 * Builds the configured backend. Backend-specific variables (S3_*, GCS_BUCKET,
 * GOOGLE_APPLICATION_CREDENTIALS) are read from `env`. Throws ConfigError with one clear line
 * when a required setting is missing or invalid. Lines the server should log at startup (e.g.
 * GCS falling back to public URLs) are in the returned storage's `notices`.
 */
export async function createStorage(config: StorageConfig, env: NodeJS.ProcessEnv = process.env): Promise<Storage> {
  const backend = config.storageBackend ?? (nonEmpty(env.NIXERY_STORAGE_BACKEND) || 'filesystem');
  const redirects = config.blobRedirect ?? true;
  const redirectTtlSeconds = config.redirectTtl ?? DEFAULT_REDIRECT_TTL_SECONDS;
  switch (backend) {
    case 'filesystem': {
      const root = config.storagePath ?? nonEmpty(env.STORAGE_PATH);
      if (!root) throw new ConfigError('the filesystem storage backend needs STORAGE_PATH (the directory to keep blobs and caches in)');
      await ensureWritableDirectory(root);
      return new FilesystemStorage(root);
    }
    case 's3': {
      const { S3Storage, s3OptionsFromEnv } = await import('./s3.js');
      return new S3Storage({ ...s3OptionsFromEnv(env), redirects, redirectTtlSeconds });
    }
    case 'gcs': {
      const { GcsStorage, gcsOptionsFromEnv } = await import('./gcs.js');
      return new GcsStorage({ ...(await gcsOptionsFromEnv(env)), redirects, redirectTtlSeconds });
    }
    default:
      throw new ConfigError(`invalid NIXERY_STORAGE_BACKEND: must be one of ${STORAGE_BACKENDS.join(', ')}, got ${JSON.stringify(backend)}`);
  }
}

/** Creates STORAGE_PATH if needed; a path that cannot hold our files stops startup. */
async function ensureWritableDirectory(root: string): Promise<void> {
  try {
    await mkdir(root, { recursive: true });
    await access(root, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`invalid STORAGE_PATH: ${root} is not a writable directory${code ? ` (${code})` : ''}`);
  }
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}
