// Popularity data (NIX_POPULARITY_URL): `{"<name-version>": <how many derivations refer to it>}`.
// Pure: checking a document and its digest. Loading it (files, URLs) is the builder's
// (src/builder/popularity.ts).

import { createHash } from 'node:crypto';
import { compareStrings } from '../image/name.js';
import type { Popularity } from './types.js';
import { InvalidPopularityError } from '../errors.js';


/** Why a popularity document was rejected. */
export { InvalidPopularityError } from '../errors.js';

/** Checks a parsed document: an object whose values are all non-negative integers. */
export function parsePopularity(data: unknown): Map<string, number> {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new InvalidPopularityError('popularity data must be a JSON object of {"name": count}');
  }
  const map = new Map<string, number>();
  for (const [name, count] of Object.entries(data)) {
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
      throw new InvalidPopularityError(`popularity of ${JSON.stringify(name)} must be a non-negative integer, got ${JSON.stringify(count)}`);
    }
    map.set(name, count);
  }
  return map;
}

/** Parses and checks a document's text; throws InvalidPopularityError with a short reason. */
export function parsePopularityJson(text: string): Map<string, number> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new InvalidPopularityError(`not JSON (${(err as Error).message})`);
  }
  return parsePopularity(data);
}

const digests = new WeakMap<Popularity, string>();

/**
 * A digest of popularity data as layering uses it (entries sorted by name), for cache keys: two
 * replicas with different data must not build different bytes under one key. `none` when there
 * is no data. Computed once per data set.
 */
export function popularityDigest(popularity: Popularity): string {
  if (popularity.size === 0) return 'none';
  let digest = digests.get(popularity);
  if (digest === undefined) {
    const hash = createHash('sha256');
    for (const name of [...popularity.keys()].sort(compareStrings)) hash.update(`${name}\t${popularity.get(name)}\n`);
    digest = `sha256:${hash.digest('hex')}`;
    digests.set(popularity, digest);
  }
  return digest;
}
