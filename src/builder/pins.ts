// Pins: which revision of the package source each image tag names, kept fresh off the request
// path and kept through outages. One Pinner serves the registry and the command line.
//
// - A request waits only for a tag never pinned before (concurrent first requests share one
//   look at the source). Afterwards it gets the current pin at once: moving targets (branches,
//   channels, `latest`, a directory's content) are looked at again in the background, all due
//   tags in one look, early enough that a pin is never older than NIXERY_RESOLVE_TTL.
// - Stale-if-error: when a look fails, every tag keeps its last good pin, so images built
//   before are still served by tag; new builds get 503 naming the source and the cause
//   (forBuild). Pins are persisted (`pins/<source-id>/<key>.json`, checksummed records without
//   credentials), so a registry restarted during an outage serves too. A persisted pin is used
//   when the source cannot be reached, or when it has not answered within `staleWaitMs`; a new
//   build waits for the source's answer rather than build from an unconfirmed pin.
// - A tag the source no longer has (a deleted branch) is forgotten: 404 from then on.

import type { Logger } from '../util/logger.js';
import { createHash } from 'node:crypto';
import { SourceUnavailableError, logDetail } from '../errors.js';
import { compareStrings } from '../image/name.js';
import { SourceResolver, type Look, type ResolverObserver } from '../nix/resolver.js';
import { describeSource, type PackageSource, type PinnedSource, type Resolution } from '../nix/source.js';
import { displayUrl } from '../secrets.js';
import type { Storage } from '../storage/storage.js';
import { SingleFlight } from '../util/singleflight.js';
import { PIN_PREFIX, decodePin, encodePin, type StoredPin } from './pin-record.js';

/** A tag's revision. A new object only when the revision (or what it was resolved through) changes. */
export interface Pin {
  /** What the tag names; tags naming the same thing share a pin. */
  readonly key: string;
  readonly resolution: Resolution;
  readonly pinned: PinnedSource;
}

export type PinLogger = Pick<Logger, 'info' | 'warn'>;

export interface PinnerOptions {
  source: PackageSource;
  /** Where pins are persisted; without it they live in memory only (the command line). */
  storage?: Storage;
  /** NIXERY_RESOLVE_TTL: a moving target's pin is never older than this, in milliseconds. */
  ttlMs: number;
  /** Limit for each look at the source (`git ls-remote`, `git status`), in milliseconds. */
  resolveTimeoutMs: number;
  log?: PinLogger;
  env?: NodeJS.ProcessEnv;
  /** Tags kept (least recently asked for go first). Default 1000. */
  maxEntries?: number;
  /** How long a request with only an unconfirmed persisted pin waits for the source. Default 2 s. */
  staleWaitMs?: number;
  now?: () => number;
  /** Told of each look at the source (the registry's metrics). */
  observer?: PinObserver;
}

/** What pinning reports about the package source. */
export interface PinObserver extends ResolverObserver {
  /** A look at the source succeeded, in this many seconds (the source is reachable). */
  looked(seconds: number): void;
  /** A look at the source failed; `unavailable`: the source counts as failing now (see SourceStatus). */
  lookFailed(unavailable: boolean): void;
}

/** The package source's health, for /readyz and the index page. */
export interface SourceStatus {
  /** Set while the last look at the source failed. */
  failure?: { error: SourceUnavailableError; since: number };
  /** When a look last succeeded. */
  lastSuccess?: number;
}

interface Entry {
  key: string;
  pin: Pin;
  moving: boolean;
  /** When the look that last gave this pin started; 0 for a persisted pin not confirmed yet. */
  confirmedAt: number;
  refreshAt: number;
  /** The source's error since the last look failed (the pin is the last good one). */
  failure?: SourceUnavailableError;
  refreshing?: Promise<void>;
}

/** Never look at a source more often than this, whatever the TTL. */
const MIN_PERIOD_MS = 500;
/** A failed look is retried this soon (or at the TTL, if shorter). */
const FAILURE_RETRY_MS = 10_000;

export class Pinner {
  readonly resolver: SourceResolver;
  readonly source: PackageSource;
  private readonly entries = new Map<string, Entry>();
  private readonly firsts = new SingleFlight<string, Entry>();
  private readonly now: () => number;
  private readonly ttlMs: number;
  private readonly tickMs: number;
  private readonly sourceId: string;
  /** How long the last look took: refreshes start that much (and a margin) before the TTL ends. */
  private lastLookMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly health: SourceStatus = {};
  /** For /metrics. */
  readonly stats = { looks: 0, lookFailures: 0, lastLookMs: 0 };

  constructor(private readonly options: PinnerOptions) {
    this.source = options.source;
    this.now = options.now ?? Date.now;
    this.ttlMs = options.ttlMs;
    this.tickMs = Math.min(5000, Math.max(100, Math.floor(options.ttlMs / 8)));
    this.resolver = new SourceResolver(options.source, { timeoutMs: options.resolveTimeoutMs, env: options.env, now: this.now, observer: options.observer });
    this.sourceId = sourceId(options.source);
  }

  /** Starts refreshing in the background, and pins `latest` now so the first pull finds it. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.refreshDue(), this.tickMs);
    this.timer.unref();
    this.track(this.pin('latest')).catch(() => {
      /* recorded in the status and logged */
    });
  }

  /** Stops refreshing; resolves once looks and writes in flight are done (storage can go then). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** Tracks background work so stop() can wait for it. */
  private track<T>(work: Promise<T>): Promise<T> {
    this.inflight.add(work);
    void work.then(
      () => this.inflight.delete(work),
      () => this.inflight.delete(work),
    );
    return work;
  }

  /** The hot path: the current pin for `tag`, without waiting and without looking at the source. */
  peek(tag: string): Pin | undefined {
    const key = this.resolver.target(tag);
    return key === null ? undefined : this.entries.get(key)?.pin;
  }

  /**
   * The pin for `tag`. Waits only when the tag was never pinned. Throws ManifestNotFoundError
   * for a tag the source does not have, SourceUnavailableError when it was never pinned and the
   * source cannot be reached.
   */
  async pin(tag: string): Promise<Pin> {
    return (await this.entry(tag)).pin;
  }

  /**
   * A pin a new build may use: an unconfirmed persisted pin is first confirmed by the source,
   * and while the source cannot be reached this throws SourceUnavailableError (503) naming it
   * and the cause. Images built before are served with `pin` meanwhile.
   */
  async forBuild(tag: string): Promise<Pin> {
    for (let looked = false; ; looked = true) {
      const entry = await this.entry(tag);
      // The source answered since this tag's last look failed: look again before refusing.
      if (entry.failure && (looked || this.health.failure)) throw unavailableForBuilds(entry.failure);
      if (!entry.failure && entry.confirmedAt > 0) return entry.pin;
      await (entry.refreshing ?? this.refresh([entry]));
    }
  }

  /** Tags that can be served, sorted: from the source, or what was pinned when it cannot be reached. */
  async tags(): Promise<string[]> {
    try {
      return await this.resolver.tags(this.ttlMs);
    } catch (err) {
      if (!(err instanceof SourceUnavailableError)) throw err;
      this.failed(err);
      const known = new Set(['latest']);
      for (const e of this.entries.values()) if (e.moving) known.add(e.key);
      for (const key of await this.storedKeys()) known.add(key);
      return [...known].filter((t) => this.resolver.target(t) !== null).sort(compareStrings);
    }
  }

  status(): SourceStatus {
    return { ...this.health };
  }

  private async entry(tag: string): Promise<Entry> {
    const key = this.resolver.target(tag);
    if (key === null) throw this.resolver.notFound(tag);
    const entry = this.entries.get(key);
    if (entry) {
      // Most recently used last: the oldest go first when there are too many.
      this.entries.delete(key);
      this.entries.set(key, entry);
      if (entry.moving && !entry.refreshing && this.now() >= entry.refreshAt) void this.refresh([entry]);
      return entry;
    }
    return this.firsts.run(key, () => this.first(tag, key)).promise;
  }

  /**
   * A tag never pinned in this process. The source's answer is what counts; the persisted pin
   * (read meanwhile) is used when the source cannot be reached, or has not answered within
   * `staleWaitMs` (then the answer replaces it when it comes).
   */
  private async first(tag: string, key: string): Promise<Entry> {
    const look = this.look([key]);
    const storedRead = this.readStored(key);
    const early = await within(look, this.options.staleWaitMs ?? 2000);
    if (early.kind === 'waited') {
      const stored = await storedRead;
      if (stored) {
        const entry = this.install(key, stored, { confirmedAt: 0 });
        const settled: Promise<void> = look.then(
          (answer) => this.apply(entry, answer.resolutions.get(key) ?? null, answer.observedAt),
          (err: unknown) => this.fail(entry, err),
        );
        const done = settled.finally(() => {
          if (entry.refreshing === done) entry.refreshing = undefined;
        });
        entry.refreshing = done;
        return entry;
      }
    }
    const outcome = early.kind === 'waited' ? await within(look, Number.POSITIVE_INFINITY) : early;
    if (outcome.kind === 'answer') {
      const res = outcome.value.resolutions.get(key);
      if (!res) {
        // The source no longer has it: neither has this registry.
        void storedRead.then((stored) => stored && this.deleteStored(key));
        throw this.resolver.notFound(tag);
      }
      return this.installConfirmed(key, res, outcome.value.observedAt);
    }
    const err = (outcome as { error: unknown }).error;
    if (!(err instanceof SourceUnavailableError)) throw err;
    const fallback = (await storedRead) ?? this.resolver.offline(key);
    if (!fallback) throw err;
    return this.install(key, fallback, { confirmedAt: 0, failure: err });
  }

  /** One look at the source for `keys`; records the source's health and how long looks take. */
  private look(keys: string[]): Promise<Look> {
    return this.track(this.lookUntracked(keys));
  }

  private async lookUntracked(keys: string[]): Promise<Look> {
    const started = this.now();
    try {
      // A listing less than half a TTL old may answer a first pin; refreshes ask for a new one.
      const answer = await this.resolver.resolve(keys, { maxAgeMs: keys.every((k) => !this.entries.has(k)) ? this.ttlMs / 2 : 0 });
      this.lastLookMs = this.now() - started;
      this.stats.looks++;
      this.stats.lastLookMs = this.lastLookMs;
      this.options.observer?.looked(this.lastLookMs / 1000);
      if (this.health.failure) this.options.log?.info({ source: describeSource(this.source) }, 'the package source can be reached again');
      this.health.failure = undefined;
      this.health.lastSuccess = started;
      return answer;
    } catch (err) {
      this.failed(err);
      throw err;
    }
  }

  private failed(err: unknown): void {
    this.stats.lookFailures++;
    if (!(err instanceof SourceUnavailableError)) {
      this.options.observer?.lookFailed(this.health.failure !== undefined);
      return;
    }
    this.options.observer?.lookFailed(true);
    if (!this.health.failure) this.options.log?.warn({ source: describeSource(this.source), err: logDetail(err) }, 'the package source cannot be reached: serving the images built before, new builds get 503');
    this.health.failure = { error: err, since: this.health.failure?.since ?? this.now() };
  }

  /** Looks again at every moving tag whose refresh is due, in one look. */
  private refreshDue(): void {
    const now = this.now();
    const due = [...this.entries.values()].filter((e) => (e.moving || e.confirmedAt === 0) && !e.refreshing && now >= e.refreshAt);
    if (due.length > 0) void this.refresh(due);
  }

  private refresh(entries: Entry[]): Promise<void> {
    const settled: Promise<void> = this.look(entries.map((e) => e.key)).then(
      (answer) => {
        for (const e of entries) this.apply(e, answer.resolutions.get(e.key) ?? null, answer.observedAt);
      },
      (err: unknown) => {
        for (const e of entries) this.fail(e, err);
      },
    );
    const done = settled.finally(() => {
      for (const e of entries) if (e.refreshing === done) e.refreshing = undefined;
    });
    for (const e of entries) e.refreshing = done;
    return done;
  }

  /** A look's answer for an entry: confirmed, moved, or gone. */
  private apply(entry: Entry, res: Resolution | null, observedAt: number): void {
    if (this.entries.get(entry.key) !== entry) return;
    if (!res) {
      this.entries.delete(entry.key);
      void this.deleteStored(entry.key);
      this.options.log?.warn({ source: describeSource(this.source), tag: entry.key }, 'the package source no longer has this tag: forgotten');
      return;
    }
    entry.confirmedAt = observedAt;
    entry.failure = undefined;
    entry.moving = this.resolver.moving(res);
    entry.refreshAt = this.nextRefresh(observedAt);
    if (!sameResolution(entry.pin.resolution, res)) {
      const before = entry.pin.resolution.revision;
      entry.pin = this.makePin(entry.key, res);
      if (entry.moving) void this.writeStored(entry.key, res, observedAt);
      this.options.log?.info({ tag: entry.key, from: before, to: res.revision }, 'the package source moved');
    }
  }

  private fail(entry: Entry, err: unknown): void {
    if (this.entries.get(entry.key) !== entry) return;
    entry.failure = err instanceof SourceUnavailableError ? err : new SourceUnavailableError(`${describeSource(this.source)} could not be resolved`, logDetail(err));
    entry.refreshAt = this.now() + Math.min(FAILURE_RETRY_MS, Math.max(this.ttlMs, MIN_PERIOD_MS));
  }

  /** A pin the source just gave: kept, and persisted before the request that waited for it goes on. */
  private async installConfirmed(key: string, res: Resolution, observedAt: number): Promise<Entry> {
    const entry = this.install(key, res, { confirmedAt: observedAt });
    if (entry.moving) await this.writeStored(key, res, observedAt);
    return entry;
  }

  private install(key: string, res: Resolution, state: { confirmedAt: number; failure?: SourceUnavailableError }): Entry {
    const moving = this.resolver.moving(res);
    const now = this.now();
    const entry: Entry = {
      key,
      pin: this.makePin(key, res),
      moving,
      confirmedAt: state.confirmedAt,
      failure: state.failure,
      refreshAt: state.confirmedAt > 0 ? this.nextRefresh(state.confirmedAt) : now + (state.failure ? Math.min(FAILURE_RETRY_MS, Math.max(this.ttlMs, MIN_PERIOD_MS)) : 0),
    };
    this.entries.set(key, entry);
    const max = this.options.maxEntries ?? 1000;
    for (const [k, e] of this.entries) {
      if (this.entries.size <= max) break;
      if (e !== entry && !e.refreshing) this.entries.delete(k);
    }
    return entry;
  }

  private makePin(key: string, resolution: Resolution): Pin {
    return { key, resolution, pinned: this.resolver.pinned(resolution) };
  }

  /**
   * When to look again: the TTL after what was observed, less what a look takes and a tick, so
   * the answer is in before the TTL runs out.
   */
  private nextRefresh(observedAt: number): number {
    const lead = Math.min(this.ttlMs * 0.75, this.lastLookMs * 1.5 + this.tickMs);
    return observedAt + Math.max(this.ttlMs - lead, MIN_PERIOD_MS);
  }

  private storedKey(key: string): string {
    return `${PIN_PREFIX}${this.sourceId}/${key}.json`;
  }

  private async readStored(key: string): Promise<(Resolution & { resolvedAt: number }) | null> {
    const storage = this.options.storage;
    if (!storage) return null;
    try {
      const raw = await storage.read(this.storedKey(key));
      if (!raw) return null;
      const decoded = decodePin(raw);
      if (!decoded.ok || decoded.pin.key !== key) {
        this.options.log?.warn({ key: this.storedKey(key), why: decoded.ok ? 'it is for another tag' : decoded.why }, 'ignoring a persisted pin that cannot be read');
        return null;
      }
      const r = decoded.pin;
      return { revision: r.revision, ref: r.ref, ...(r.headBranch ? { headBranch: r.headBranch } : {}), ...(r.how ? { how: r.how } : {}), resolvedAt: r.resolvedAt };
    } catch (err) {
      // Storage failing: pins still come from the source.
      this.options.log?.warn({ key: this.storedKey(key), err: logDetail(err) }, 'cannot read a persisted pin');
      return null;
    }
  }

  private writeStored(key: string, res: Resolution, resolvedAt: number): Promise<void> {
    return this.track(this.writeStoredUntracked(key, res, resolvedAt));
  }

  private async writeStoredUntracked(key: string, res: Resolution, resolvedAt: number): Promise<void> {
    const storage = this.options.storage;
    if (!storage) return;
    const record: StoredPin = { key, revision: res.revision, ref: res.ref, ...(res.headBranch ? { headBranch: res.headBranch } : {}), ...(res.how ? { how: res.how } : {}), resolvedAt };
    try {
      await storage.put(this.storedKey(key), encodePin(record), { contentType: 'application/json' });
    } catch (err) {
      this.options.log?.warn({ key: this.storedKey(key), err: logDetail(err) }, 'cannot persist a pin');
    }
  }

  private deleteStored(key: string): Promise<void> {
    return this.track(this.deleteStoredUntracked(key));
  }

  private async deleteStoredUntracked(key: string): Promise<void> {
    try {
      await this.options.storage?.delete(this.storedKey(key));
    } catch (err) {
      this.options.log?.warn({ key: this.storedKey(key), err: logDetail(err) }, 'cannot remove a persisted pin');
    }
  }

  private async storedKeys(): Promise<string[]> {
    const storage = this.options.storage;
    if (!storage) return [];
    const prefix = `${PIN_PREFIX}${this.sourceId}/`;
    const keys: string[] = [];
    try {
      for await (const o of storage.list(prefix)) {
        if (o.key.startsWith(prefix) && o.key.endsWith('.json')) keys.push(o.key.slice(prefix.length, -'.json'.length));
      }
    } catch (err) {
      this.options.log?.warn({ err: logDetail(err) }, 'cannot list the persisted pins');
    }
    return keys;
  }
}

/**
 * Persisted pins are per source: the kind and where it is, without credentials (a rotated
 * token is the same source).
 */
export function sourceId(source: PackageSource): string {
  const where = source.kind === 'git' ? displayUrl(source.url) : source.kind === 'channel' ? displayUrl(source.repoUrl) : source.path;
  return `${source.kind}-${createHash('sha256').update(`${source.kind}\0${where}`).digest('hex').slice(0, 16)}`;
}

/** The 503 for a new build while the source cannot be reached: names the source and the cause. */
function unavailableForBuilds(cause: SourceUnavailableError): SourceUnavailableError {
  return new SourceUnavailableError(`the package source cannot be reached, so new images cannot be built (images built before are still served): ${cause.message}`, cause.internal);
}

function sameResolution(a: Resolution, b: Resolution): boolean {
  return a.revision === b.revision && a.ref === b.ref && a.headBranch === b.headBranch && a.how === b.how;
}

/** How `promise` ended within `ms`: its value, its error, or still running. */
async function within<T>(promise: Promise<T>, ms: number): Promise<{ kind: 'answer'; value: T } | { kind: 'error'; error: unknown } | { kind: 'waited' }> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<{ kind: 'waited' }>((resolve) => {
    if (Number.isFinite(ms)) timer = setTimeout(() => resolve({ kind: 'waited' }), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ kind: 'answer' as const, value }),
        (error: unknown) => ({ kind: 'error' as const, error }),
      ),
      waited,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
