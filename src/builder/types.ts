// The types the builder's modules share (builder, layer store, progress, observer): declared
// here, in a leaf, so those modules import each other in one direction only.

import type { ImageRequest } from '../image/name.js';
import type { ImageManifests } from '../manifest/manifest.js';
import type { ImageLayer } from './manifest-cache.js';
import type { Pin } from './pins.js';
import type { ResolvedPackage } from '../nix/types.js';
import type { ArtifactRecord } from './attest.js';

import type { Logger as BaseLogger } from '../util/logger.js';

/** What the builder logs through (the one Logger type). */
export type Logger = Pick<BaseLogger, 'info' | 'warn' | 'debug'>;

/** `queued`: waiting for a build slot; the others are the pipeline's steps. */
export type BuildPhase = 'source' | 'queued' | 'resolve' | 'realise' | 'closure' | 'layers' | 'pack' | 'manifest';

export interface BuildProgress {
  phase: BuildPhase;
  message: string;
  /** Set by `buildAll` (the message is then prefixed with it): which platform's build reported. */
  platform?: string;
  /** During `pack`: the layer that reported, of how many, and its uncompressed bytes packed so far. */
  layer?: { index: number; count: number; bytes: number };
  /**
   * During `pack`, over all layers: the layer being packed ("layer 3 of 7"), how many are done,
   * and bytes done of the image's uncompressed size (Nix's NAR sizes; cached layers count as done).
   */
  pack?: { layer: number; layers: number; layersDone: number; bytesDone: number; bytesTotal: number };
}

/**
 * Runs a build that is about to start Nix (the registry's slots and admission); `progress`
 * reaches everyone waiting for the build (e.g. to say it waits for a slot).
 */
export type BuildLimit = <T>(fn: () => Promise<T>, progress: (p: BuildProgress) => void) => Promise<T>;

/** The time limits on Nix (see README, Configuration), in seconds. */
export interface NixTimeouts {
  /** NIX_TIMEOUT: each builder (Nix's `--timeout`); downloads and evaluation are not counted. */
  builderSeconds: number;
  /** NIXERY_EVAL_TIMEOUT: each evaluation (resolving packages, pinning the source). */
  evalSeconds: number;
  /** NIXERY_BUILD_TIMEOUT: one realisation in all, every build and download included. */
  realiseSeconds: number;
}

export interface BuiltImage {
  /** What was built; its `config` (a build request's, canonical) and `nonroot` are part of the image (provenance). */
  image: ImageRequest;
  /** Cache key of the manifest (null when the source could not be pinned). */
  cacheKey: string | null;
  revision: string | null;
  manifests: ImageManifests;
  layers: Array<ImageLayer & { cached: boolean }>;
  /** True when served from the manifest cache without running Nix. */
  fromCache: boolean;
  /** The source pin it was found or built under (the registry's hot path compares it). */
  pin?: Pin;
  /** Its SBOMs and provenance (absent for images recorded before they were made). */
  artifacts?: ArtifactRecord[];
  /** What its layers are compressed with, e.g. `gzip/libdeflate-1.14/level6/chunk4M/members` (for provenance). */
  compression: string;
}

/**
 * What a build asks of the package policy (NIXERY_ALLOW/DENY_PACKAGES, NIXERY_DENY_CLOSURE;
 * implemented by auth/policy.ts): each throws the 403 that names what is refused.
 */
export interface BuildPolicy {
  /** Denied attribute paths whose derivations resolved packages are compared with. */
  readonly exactDenied: readonly string[];
  checkResolved(packages: readonly ResolvedPackage[]): void;
  checkClosure(storePaths: readonly string[]): void;
}
