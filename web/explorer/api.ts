// The registry's JSON API as the explorer uses it (see /api/v1 in the README). Errors come back
// in the registry's OCI format, {"errors":[{"code","message"}]}, and become ApiError.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  let code = 'UNKNOWN';
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { errors?: Array<{ code?: string; message?: string }> };
    const first = body.errors?.[0];
    if (first?.code) code = first.code;
    if (first?.message) message = first.message;
  } catch {
    // Not the registry's JSON: the status says enough.
  }
  return new ApiError(res.status, code, message);
}

export async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(url, { headers: { Accept: 'application/json' }, signal });
  if (!res.ok) throw await errorOf(res);
  return (await res.json()) as T;
}

export async function postJson<T>(url: string, body: unknown): Promise<T> {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw await errorOf(res);
  return (await res.json()) as T;
}

export interface PackageHit {
  attr: string;
  name: string;
  pname?: string;
  version?: string;
  description?: string;
}

export interface PackageSearch {
  revision: string;
  state: 'ready' | 'indexing' | 'failed';
  total: number;
  packages: PackageHit[];
  error?: { code: string; message: string } | null;
}

export type BuildState = 'queued' | 'running' | 'succeeded' | 'failed';

/** A layer of a built image (src/service/build-tracker.ts BuildLayer). */
export interface BuildLayer {
  digest: string;
  size: number;
  diffId: string;
  paths: number;
  cached: boolean;
}

/** What a build made (src/service/build-tracker.ts BuildResult): the first platform's image, and the index over all. */
export interface BuildResult {
  /** What to pull by digest (the index's, else the manifest's), and `<name>@<digest>`. */
  digest?: string;
  reference?: string;
  manifestDigest: string;
  mediaType: string;
  configDigest: string;
  revision: string | null;
  fromCache: boolean;
  layers: BuildLayer[];
  index: { mediaType: string; digest: string } | null;
  platforms: Array<{ platform: string; manifestDigest: string; configDigest: string; layers: BuildLayer[] }>;
}

/** GET /api/v1/builds/<id> (src/service/build-tracker.ts BuildStatus). */
export interface BuildStatus {
  id: string;
  /** `name:tag` as asked for. */
  image: string;
  name: string;
  tag: string;
  platforms?: string[];
  state: BuildState;
  phase: string | null;
  message: string | null;
  progress: { layer?: number; layers?: number; layersDone?: number; bytesDone?: number; bytesTotal?: number } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  result: BuildResult | null;
  error: { code: string; message: string } | null;
}

/** The digest a pull by digest of a build's image names: the index over its platforms, else its manifest. */
export function pinnedDigest(result: BuildResult): string {
  return result.digest ?? result.index?.digest ?? result.manifestDigest;
}

export type { ImageDetails, ImageSharing, LayerDetails, RecentImage, RecentImagesResponse, SharedLayer } from '../../src/service/explorer-types.js';

/** `/explore/<name>:<tag>` for an image (names and tags need no escaping in a path). */
export function explorePath(name: string, tag: string): string {
  return `/explore/${name}:${tag}`;
}
