// Where things live in storage. Blobs (layers, configs, manifests) are content-addressed;
// build-cache and manifest-cache entries are small JSON records.

import { randomUUID } from 'node:crypto';
import { InvalidDigestError } from '../errors.js';

export const DIGEST_REGEXP = /^sha256:([a-f0-9]{64})$/;

/** The hex part of a sha256 digest; throws InvalidDigestError for anything else. */
export function digestHex(digest: string): string {
  const m = DIGEST_REGEXP.exec(digest);
  if (!m) throw new InvalidDigestError(`invalid digest ${JSON.stringify(digest.slice(0, 100))}: expected sha256:<64 lower-case hex>`);
  return m[1]!;
}

export const blobKey = (digest: string): string => `blobs/sha256/${digestHex(digest)}`;
/** A packed layer, keyed by the hash of its store-path set (and packing format version). */
export const buildKey = (layerKey: string): string => `builds/${layerKey}.json`;
/** A built image, keyed by architecture, source revision, packages and layering settings. */
export const manifestKey = (cacheKey: string): string => `manifests/${cacheKey}.json`;
export const stagingKey = (): string => `staging/${randomUUID()}`;
