// Makes the chosen storage backend from its settings (read in src/config.ts). The object-storage
// backends are imported only when chosen, so the filesystem path never loads an SDK.

import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { FilesystemStorage } from './filesystem.js';
import type { Storage, StorageBackendName } from './storage.js';
import type { S3StorageOptions } from './s3.js';
import type { GcsSettings } from './gcs-credentials.js';

export type { Storage, ObjectInfo, ObjectWriter, ByteRange, OpenedObject } from './storage.js';
export { STORAGE_KEY } from './storage.js';
export { FilesystemStorage } from './filesystem.js';
export { InvalidStorageKeyError, StorageUnavailableError, StorageObjectNotFoundError, StorageRangeError, validateKey } from './errors.js';

export { STORAGE_BACKENDS, type StorageBackendName } from './storage.js';
export type { S3StorageOptions } from './s3.js';
export type { GcsSettings } from './gcs-credentials.js';

/** Where blobs and caches live: what src/config.ts read (storageSettings) for the factory. */
export interface StorageSettings {
  backend: StorageBackendName;
  /** The filesystem backend's directory (STORAGE_PATH). */
  storagePath?: string;
  /** Object storage: answer blob GETs with signed URLs (NIXERY_BLOB_REDIRECT). */
  redirects: boolean;
  /** Signed URL lifetime, seconds (NIXERY_REDIRECT_TTL). */
  redirectTtlSeconds: number;
  s3?: S3StorageOptions;
  gcs?: GcsSettings;
}

/**
 * Builds the configured backend (the object-storage SDKs are loaded only when chosen). Lines the
 * server should log at startup (e.g. GCS falling back to public URLs) are in the returned
 * storage's `notices`; a credential that cannot work is a ConfigError.
 */
export async function createStorage(settings: StorageSettings): Promise<Storage> {
  const { redirects, redirectTtlSeconds } = settings;
  switch (settings.backend) {
    case 'filesystem': {
      const root = settings.storagePath;
      if (!root) throw new ConfigError('the filesystem storage backend needs STORAGE_PATH (the directory to keep blobs and caches in)');
      await ensureWritableDirectory(root);
      return new FilesystemStorage(root);
    }
    case 's3': {
      if (!settings.s3) throw new ConfigError('the s3 storage backend needs S3_BUCKET (the bucket to keep blobs and caches in)');
      const { S3Storage } = await import('./s3.js');
      return new S3Storage({ ...settings.s3, redirects, redirectTtlSeconds });
    }
    case 'gcs': {
      if (!settings.gcs) throw new ConfigError('the gcs storage backend needs GCS_BUCKET (the bucket to keep blobs and caches in)');
      const { GcsStorage, gcsOptions } = await import('./gcs.js');
      return new GcsStorage({ ...(await gcsOptions(settings.gcs)), redirects, redirectTtlSeconds });
    }
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
