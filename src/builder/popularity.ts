// Loading popularity data (NIX_POPULARITY_URL) from an http(s) URL or a file, and turning a Nix
// closure into the graph layering cuts. Layering works without popularity, so every failure is
// a warning and the result an empty map (or, on reload, the last good data): never fatal.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parsePopularityJson } from '../layers/popularity.js';
import type { LayerGraph, Popularity } from '../layers/types.js';
import type { ClosureGraph } from '../nix/types.js';
import { DEFAULT_STORE_DIR, storePathName } from '../util/store-path.js';

export interface PopularityLoadOptions {
  /** Whole-request limit for a URL, ms. */
  timeoutMs?: number;
  /** Largest accepted document, bytes (the nixpkgs data is a few MB). */
  maxBytes?: number;
}

export const POPULARITY_TIMEOUT_MS = 30_000;
export const POPULARITY_MAX_BYTES = 64 * 1024 * 1024;
const EMPTY: Popularity = new Map();

/** The layering graph of a Nix closure: each path named (the popularity key) under `storeDir`. */
export function toLayerGraph(closure: ClosureGraph, storeDir = DEFAULT_STORE_DIR): LayerGraph {
  return {
    roots: closure.roots,
    paths: closure.paths.map((p) => ({ path: p.path, name: storePathName(p.path, storeDir), references: p.references, narSize: p.narSize, closureSize: p.closureSize })),
  };
}

function isUrl(source: string): boolean {
  return /^(?:https?|file):\/\//i.test(source);
}

async function readSource(source: string, timeoutMs: number, maxBytes: number): Promise<string> {
  if (/^file:\/\//i.test(source)) return readLimited(fileURLToPath(source), maxBytes);
  if (!isUrl(source)) return readLimited(source, maxBytes);
  const { url, headers } = credentialsAsHeader(source);
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' });
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(`HTTP ${response.status} ${response.statusText}`.trim());
  }
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(`document is ${declared} bytes, over the limit of ${maxBytes}`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body ?? []) {
    total += chunk.byteLength;
    if (total > maxBytes) throw new Error(`document is over the limit of ${maxBytes} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** fetch refuses URLs with credentials (`https://user:token@host/…`): they go as Basic auth instead. */
function credentialsAsHeader(source: string): { url: string; headers: Record<string, string> } {
  const url = new URL(source);
  if (url.username === '' && url.password === '') return { url: source, headers: {} };
  const userPass = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  url.username = '';
  url.password = '';
  return { url: url.href, headers: { Authorization: `Basic ${Buffer.from(userPass).toString('base64')}` } };
}

async function readLimited(file: string, maxBytes: number): Promise<string> {
  const data = await readFile(file);
  if (data.byteLength > maxBytes) throw new Error(`file is ${data.byteLength} bytes, over the limit of ${maxBytes}`);
  return data.toString('utf8');
}

/** Loads and validates the document; throws with a short reason. */
async function fetchPopularity(source: string, options: PopularityLoadOptions): Promise<Map<string, number>> {
  const text = await readSource(source, options.timeoutMs ?? POPULARITY_TIMEOUT_MS, options.maxBytes ?? POPULARITY_MAX_BYTES);
  return parsePopularityJson(text);
}

function reason(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { message?: string; code?: string } };
  if (e?.name === 'TimeoutError') return 'timed out';
  const cause = e?.cause?.code ?? e?.cause?.message;
  return `${e?.message ?? String(err)}${cause ? ` (${cause})` : ''}`;
}

/**
 * Popularity from `source` (NIX_POPULARITY_URL): an http(s) or file URL, or a file path.
 * Undefined or empty → an empty map, silently. Any failure → a warning through `log` and an
 * empty map.
 */
export async function loadPopularity(source: string | undefined, log: (message: string) => void, options: PopularityLoadOptions = {}): Promise<Popularity> {
  if (source === undefined || source.trim() === '') return EMPTY;
  try {
    return await fetchPopularity(source, options);
  } catch (err) {
    log(`popularity data from ${source} is unusable, layering without it: ${reason(err)}`);
    return EMPTY;
  }
}

/**
 * Reloadable popularity: `current` is what layering uses now; `reload` fetches again and keeps
 * the last good data when the new fetch fails (a transient outage must not reshuffle layers).
 */
export class PopularitySource {
  private data: Popularity = EMPTY;
  private loadedOnce = false;
  private inFlight: Promise<Popularity> | undefined;

  constructor(
    readonly source: string | undefined,
    private readonly log: (message: string) => void,
    private readonly options: PopularityLoadOptions = {},
  ) {}

  get current(): Popularity {
    return this.data;
  }

  /** Fetches the data again; concurrent calls share one fetch. */
  reload(): Promise<Popularity> {
    this.inFlight ??= this.doReload().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async doReload(): Promise<Popularity> {
    if (this.source === undefined || this.source.trim() === '') return this.data;
    try {
      this.data = await fetchPopularity(this.source, this.options);
    } catch (err) {
      const kept = this.loadedOnce ? `keeping the previous data (${this.data.size} entries)` : 'layering without it';
      this.log(`popularity data from ${this.source} is unusable, ${kept}: ${reason(err)}`);
      return this.data;
    }
    this.loadedOnce = true;
    return this.data;
  }
}

