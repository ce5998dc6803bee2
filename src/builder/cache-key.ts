// The keys under which built images and indexes are recorded: a hash of everything that decides
// their bytes. A change to what goes into an image's bytes adds a field here (or bumps the format).

import { createHash } from 'node:crypto';
import type { ImageConfig } from '../image/config.js';

/** Bump when the bytes of layers or manifests change for the same input. */
export const FORMAT_VERSION = 'nixery-ts/1';

export interface ImageKeyInput {
  /** Nix system (e.g. x86_64-linux). */
  system: string;
  /** The source revision the tag is pinned to. */
  revision: string;
  /** The image's packages, canonical order. */
  packages: readonly string[];
  /** Layering strategy name and layer budget. */
  layering: string;
  budget: number;
  /** Digest of the popularity data the layering used. */
  popularity: string;
  /** The layer compression's description: compressor, version, parameters (LayerCompression). */
  compression: string;
  // Optional fields are hashed only when set: the keys of images without them do not change.
  /** The `nonroot` meta-package. */
  nonroot?: boolean;
  /** A build request's runtime config (canonical, image/config.ts). */
  config?: ImageConfig;
}

export function imageCacheKey(input: ImageKeyInput): string {
  const { system, revision, packages, layering, budget, popularity, compression, nonroot, config } = input;
  return sha256Json({
    format: FORMAT_VERSION,
    system,
    revision,
    packages,
    layering,
    budget,
    popularity,
    compression,
    ...(nonroot ? { nonroot: true } : {}),
    ...(config && Object.keys(config).length > 0 ? { config } : {}),
  });
}

/** Key of an index record: its platforms' image keys, in order. */
export function indexCacheKey(imageKeys: readonly string[]): string {
  return sha256Json({ format: FORMAT_VERSION, index: imageKeys });
}

function sha256Json(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex');
}
