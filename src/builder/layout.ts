// Where things live in storage. Blobs (layers, configs, manifests) are content-addressed;
// build-cache and manifest-cache entries are small JSON records.

import { randomUUID } from 'node:crypto';
import { digestHex } from '../image/digest.js';

// Parsed where image references are (image/digest.ts); named here too for the builder's modules.
export { DIGEST_REGEXP, digestHex } from '../image/digest.js';

/** Where every blob is kept (the readiness probe lists it). */
export const BLOBS_PREFIX = 'blobs/';
export const blobKey = (digest: string): string => `${BLOBS_PREFIX}sha256/${digestHex(digest)}`;
/** A packed layer, keyed by the hash of its store-path set (and packing format version). */
export const buildKey = (layerKey: string): string => `builds/${layerKey}.json`;
/** A built image, keyed by architecture, source revision, packages and layering settings. */
export const manifestKey = (cacheKey: string): string => `manifests/${cacheKey}.json`;
export const stagingKey = (): string => `staging/${randomUUID()}`;
