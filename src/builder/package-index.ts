// Package search over the pinned package set (the `latest` pin of the source). The list of
// packages is evaluated by Nix in the background, once per revision (src/nix/packages.ts),
// bounded by NIXERY_EVAL_TIMEOUT, and kept in storage so a restart or another replica does not
// evaluate it again:
//
//   packages/<source-id>/<system>/<sha256(revision), 32 hex>.jsonl
//
// one line per package (`[attr, name, pname, version, description]`, as Nix wrote it), then a
// trailer line `{"format","revision","system","count","sha256"}` whose sha256 covers every line
// before it: like the other records (records.ts) a damaged or truncated index is detected,
// removed and evaluated again, but it is written and read as a stream (a nixpkgs index is tens
// of MB). The last few indexes of a source are kept in storage; two in memory (the current
// revision's and the one before, served while the new one is built).

import type { Logger } from '../util/logger.js';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describeError, logDetail, ShuttingDownError, SourceUnavailableError } from '../errors.js';
import { compareStrings } from '../image/name.js';
import { listPackages, packageLine, parsePackageLine, type PackageInfo } from '../nix/packages.js';
import type { PinnedSource } from '../nix/source.js';
import type { NixRunObserver } from '../nix/observer.js';
import type { Storage } from '../storage/storage.js';
import { Semaphore } from '../util/semaphore.js';
import { SingleFlight } from '../util/singleflight.js';
import type { Quarantine } from './integrity.js';
import { sourceId, type Pinner } from './pins.js';

export type IndexState = 'ready' | 'indexing' | 'failed';

/** The answer of GET /api/v1/packages (see the API contract). */
export interface PackageSearchAnswer {
  /** The revision the packages come from (the current one unless it is still being indexed). */
  revision: string | null;
  /** The current revision's index: ready, being built, or failed (tried again later). */
  state: IndexState;
  /** How many packages match (`packages` holds at most the limit). */
  total: number;
  packages: PackageInfo[];
  /** Why the current revision's index failed (state `failed`). */
  error?: { code: string; message: string };
}

export interface PackageIndexOptions {
  storage: Storage;
  quarantine: Quarantine;
  pins: Pinner;
  /** The Nix system whose packages are listed (images default to x86_64-linux). */
  system: string;
  /** NIXERY_EVAL_TIMEOUT, in milliseconds. */
  evalTimeoutMs: number;
  log: Pick<Logger, 'info' | 'warn'>;
  /** Added to the environment of Nix (tests). */
  env?: NodeJS.ProcessEnv;
  /** Told of the Nix evaluations that list the packages (the registry's metrics). */
  nixObserver?: NixRunObserver;
  /** A revision whose index failed is tried again after this long. Default 5 minutes. */
  retryMs?: number;
  /** How long a search waits for an index being built before answering `indexing`. Default 1 s. */
  waitMs?: number;
}

export const PACKAGES_PREFIX = 'packages/';
const FORMAT = 'nixery-ts packages v1';
/** Indexes of one source and system kept in storage (older revisions are removed). */
const KEEP_STORED = 3;
/** Lines written to storage per write call. */
const WRITE_BATCH = 1000;

interface Trailer {
  format: string;
  revision: string;
  system: string;
  count: number;
  sha256: string;
}

/** One revision's packages, sorted by attribute path, with what searching them needs. */
export class SearchIndex {
  readonly packages: readonly PackageInfo[];
  /** Per package, lower case: `attr \n name \n pname \n version \n description` (newlines in fields made spaces). */
  private readonly hay: string[];

  constructor(
    readonly revision: string,
    packages: PackageInfo[],
  ) {
    packages.sort((a, b) => compareStrings(a.attr, b.attr));
    this.packages = packages;
    this.hay = packages.map((p) => [p.attr, p.name, p.pname, p.version, p.description].map((f) => f.replace(/\n/g, ' ')).join('\n').toLowerCase());
  }

  /**
   * Packages whose attribute path, name, pname, version or description contain every word of `q`
   * (case-insensitive), best first: the attribute or pname itself, then attributes starting
   * with the first word, then matches in the attribute, in the name, pname or version, and last in
   * the description only; in attribute order within each. An empty query lists all.
   */
  search(q: string, limit: number): { total: number; packages: PackageInfo[] } {
    const words = q.toLowerCase().split(/\s+/).filter(Boolean);
    if (words.length === 0) return { total: this.packages.length, packages: this.packages.slice(0, limit) };
    const whole = words.join(' ');
    const byRank: number[][] = [[], [], [], [], []];
    let total = 0;
    for (let i = 0; i < this.hay.length; i++) {
      const hay = this.hay[i]!;
      // Where the last word's first occurrence ends: in the attribute, in the name fields, or in the description.
      let end = 0;
      for (const w of words) {
        const at = hay.indexOf(w);
        if (at < 0) {
          end = -1;
          break;
        }
        end = Math.max(end, at + w.length);
      }
      if (end < 0) continue;
      total++;
      byRank[rank(hay, words[0]!, whole, end)]!.push(i);
    }
    const packages: PackageInfo[] = [];
    for (const list of byRank) {
      for (const i of list) {
        if (packages.length >= limit) return { total, packages };
        packages.push(this.packages[i]!);
      }
    }
    return { total, packages };
  }
}

/**
 * 0: the attribute, its last component or the pname is the query; 1: the last component starts
 * with the first word; 2: every word is in the attribute; 3: in the name fields; 4: otherwise
 * (the description). `end` is where the words' first occurrences end. No substrings are made:
 * this runs for every match (a one-letter query matches most of nixpkgs).
 */
function rank(hay: string, first: string, whole: string, end: number): number {
  const attrEnd = hay.indexOf('\n');
  const leaf = hay.lastIndexOf('.', attrEnd - 1) + 1;
  const nameEnd = hay.indexOf('\n', attrEnd + 1);
  const pnameEnd = hay.indexOf('\n', nameEnd + 1);
  const is = (from: number, to: number): boolean => to - from === whole.length && hay.startsWith(whole, from);
  if (is(0, attrEnd) || is(leaf, attrEnd) || is(nameEnd + 1, pnameEnd)) return 0;
  if (leaf + first.length <= attrEnd && hay.startsWith(first, leaf)) return 1;
  if (end <= attrEnd) return 2;
  if (end <= hay.lastIndexOf('\n')) return 3;
  return 4;
}

export class PackageIndex {
  /** For logs and tests: evaluations run, indexes read from storage, the last evaluation's time. */
  readonly stats = { evaluations: 0, loads: 0, lastEvaluationMs: 0 };
  private readonly ready = new Map<string, SearchIndex>();
  private newest: SearchIndex | undefined;
  private readonly building = new SingleFlight<string, SearchIndex>();
  private readonly failures = new Map<string, { error: unknown; at: number }>();
  /** One evaluation at a time: a nixpkgs listing takes minutes and GBs. */
  private readonly evaluations = new Semaphore(1);
  private readonly stopping = new AbortController();
  private readonly inflight = new Set<Promise<unknown>>();

  constructor(private readonly options: PackageIndexOptions) {}

  /** Searches the current revision's packages; starts indexing it when needed (see PackageSearchAnswer). */
  async search(q: string, limit: number): Promise<PackageSearchAnswer> {
    const { pinned } = await this.options.pins.pin('latest');
    const revision = pinned.revision;
    if (revision === null) {
      return { revision, state: 'failed', total: 0, packages: [], error: { code: 'UNAVAILABLE', message: 'the package source has no revision to index' } };
    }
    let index = this.ready.get(revision);
    let failure = this.failures.get(revision);
    if (!index && (!failure || Date.now() - failure.at >= (this.options.retryMs ?? 300_000))) {
      const building = this.ensure(revision, pinned);
      index = await within(building, this.options.waitMs ?? 1000);
      failure = this.failures.get(revision);
    }
    if (index) return { revision, state: 'ready', ...index.search(q, limit) };
    // Meanwhile, the revision before (if any) answers.
    const previous = this.newest;
    const found = previous ? previous.search(q, limit) : { total: 0, packages: [] };
    const answer: PackageSearchAnswer = { revision: previous?.revision ?? revision, state: failure ? 'failed' : 'indexing', ...found };
    if (failure) {
      const { entry, message } = describeError(failure.error);
      answer.error = { code: entry.code, message };
    }
    return answer;
  }

  /** The current revision's index, built (or read from storage) if it is not yet: for tools and benchmarks. */
  async current(): Promise<SearchIndex> {
    const { pinned } = await this.options.pins.pin('latest');
    if (pinned.revision === null) throw new SourceUnavailableError('the package source has no revision to index');
    return this.ready.get(pinned.revision) ?? this.ensure(pinned.revision, pinned);
  }

  /** Stops an evaluation in progress and waits for background work (storage may go then). */
  async stop(): Promise<void> {
    this.stopping.abort(new ShuttingDownError());
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** Where a revision's index is stored. */
  storedKey(revision: string): string {
    return `${this.storedPrefix()}${createHash('sha256').update(revision).digest('hex').slice(0, 32)}.jsonl`;
  }

  private storedPrefix(): string {
    return `${PACKAGES_PREFIX}${sourceId(this.options.pins.source)}/${this.options.system}/`;
  }

  private ensure(revision: string, pinned: PinnedSource): Promise<SearchIndex> {
    const { promise, shared } = this.building.run(revision, () => this.build(revision, pinned));
    if (!shared) {
      this.inflight.add(promise);
      promise.then(
        (index) => {
          this.inflight.delete(promise);
          this.failures.delete(revision);
          this.ready.set(revision, index);
          this.newest = index;
          // This revision and the one before it.
          for (const r of this.ready.keys()) if (this.ready.size > 2 && r !== revision) this.ready.delete(r);
        },
        (err: unknown) => {
          this.inflight.delete(promise);
          if (this.stopping.signal.aborted) return;
          this.failures.set(revision, { error: err, at: Date.now() });
          this.options.log.warn({ revision, err: logDetail(err) }, 'cannot index the packages of the source');
        },
      );
    }
    return promise;
  }

  private async build(revision: string, pinned: PinnedSource): Promise<SearchIndex> {
    const { log } = this.options;
    const key = this.storedKey(revision);
    const stored = await this.load(key, revision).catch((err: unknown) => {
      log.warn({ key, err: logDetail(err) }, 'cannot read the stored package index: evaluating it again');
      return null;
    });
    if (stored) {
      this.stats.loads++;
      return new SearchIndex(revision, stored);
    }
    const packages: PackageInfo[] = [];
    const started = Date.now();
    await this.evaluations.use(() =>
      listPackages(pinned, this.options.system, {
        timeoutMs: this.options.evalTimeoutMs,
        env: this.options.env,
        observer: this.options.nixObserver,
        signal: this.stopping.signal,
        onPackage: (p) => packages.push(p),
      }),
    );
    this.stats.evaluations++;
    this.stats.lastEvaluationMs = Date.now() - started;
    const index = new SearchIndex(revision, packages);
    log.info({ revision, packages: packages.length, ms: this.stats.lastEvaluationMs }, 'package index built');
    try {
      await this.store(key, revision, index.packages);
      await this.removeOld(key);
    } catch (err) {
      // Searching works from memory; the next start evaluates again.
      log.warn({ key, err: logDetail(err) }, 'cannot store the package index');
    }
    return index;
  }

  private async store(key: string, revision: string, packages: readonly PackageInfo[]): Promise<void> {
    const writer = await this.options.storage.writer(key, { contentType: 'application/x-ndjson' });
    const hash = createHash('sha256');
    try {
      for (let i = 0; i < packages.length; i += WRITE_BATCH) {
        let text = '';
        for (const p of packages.slice(i, i + WRITE_BATCH)) text += `${packageLine(p)}\n`;
        hash.update(text);
        if (!writer.stream.write(text)) await once(writer.stream, 'drain');
      }
      const trailer: Trailer = { format: FORMAT, revision, system: this.options.system, count: packages.length, sha256: hash.digest('hex') };
      writer.stream.write(`${JSON.stringify(trailer)}\n`);
      await writer.commit();
    } catch (err) {
      await writer.abort().catch(() => {});
      throw err;
    }
  }

  /** A stored index, read as a stream; null when there is none, or it is damaged (then removed). */
  private async load(key: string, revision: string): Promise<PackageInfo[] | null> {
    const opened = await this.options.storage.open(key);
    if (!opened) return null;
    const lines = createInterface({ input: opened.stream, crlfDelay: Infinity });
    const hash = createHash('sha256');
    const packages: PackageInfo[] = [];
    let previous: string | undefined;
    let damage: string | undefined;
    try {
      for await (const line of lines) {
        if (previous !== undefined) {
          const p = parsePackageLine(previous);
          if (!p) {
            damage = `line ${packages.length + 1} is not a package`;
            break;
          }
          hash.update(`${previous}\n`);
          packages.push(p);
        }
        previous = line;
      }
    } finally {
      lines.close();
      opened.stream.destroy();
    }
    if (!damage) damage = trailerProblem(previous, { revision, system: this.options.system, count: packages.length, sha256: hash.digest('hex') });
    if (damage) {
      await this.options.quarantine.remove(key, `package index: ${damage}`);
      return null;
    }
    return packages;
  }

  /** Keeps the newest KEEP_STORED indexes of this source and system in storage. */
  private async removeOld(current: string): Promise<void> {
    const stored = [];
    for await (const o of this.options.storage.list(this.storedPrefix())) stored.push(o);
    stored.sort((a, b) => b.modified - a.modified);
    const old = stored.filter((o) => o.key !== current).slice(KEEP_STORED - 1);
    for (const o of old) await this.options.storage.delete(o.key);
  }
}

/** What is wrong with a stored index's trailer line, or undefined when it matches. */
function trailerProblem(line: string | undefined, expected: Omit<Trailer, 'format'>): string | undefined {
  if (line === undefined) return 'it is empty';
  let t: Partial<Trailer>;
  try {
    t = JSON.parse(line) as Partial<Trailer>;
  } catch {
    return 'it has no trailer (truncated?)';
  }
  if (typeof t !== 'object' || t === null || t.format !== FORMAT) return 'its trailer is not one of this format';
  if (t.revision !== expected.revision || t.system !== expected.system) return 'it is the index of another revision or system';
  if (t.count !== expected.count) return `it has ${expected.count} packages, its trailer says ${String(t.count)}`;
  if (t.sha256 !== expected.sha256) return 'its checksum does not match its content';
  return undefined;
}

/** The value of `promise` if it settles within `ms`; undefined otherwise (and on failure). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const waited = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    });
    return await Promise.race([promise.catch(() => undefined), waited]);
  } finally {
    clearTimeout(timer);
  }
}
