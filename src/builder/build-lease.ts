// One build per image across replicas on one storage. Before building, a replica takes the
// image's build lease: a small object `leases/<cache key>` created with a conditional write
// (storage.ts, ConditionalWrites). The holder renews it (a conditional replace on the version it
// wrote) while it builds, and deletes it when the build ends. Every other replica waits for the
// image's record to land in storage, looking with backoff, and serves it.
//
// Expiry needs no clocks to agree: a waiter notes when it first saw the lease's current version
// (on its own monotonic clock); a version unchanged for a whole lease period belongs to a holder
// that stopped renewing (killed), and the waiter replaces that version, conditionally, so of
// several waiters one takes it over and builds. A pull thus waits at most for the build and one
// lease period (plus one look).
//
// A build that fails releases the lease: the waiters then take it in turn and build themselves
// (each gets its own answer, e.g. the same error; at most one such build runs at a time). Where
// the storage does not honour conditional writes (probed once), one warning line is logged and
// every replica builds for itself, as without leases. Where it honours create and replace but not
// delete (Ceph RGW 16 ignores If-Match on DELETE: an unconditional delete could remove a lease
// another replica just took), a lease is released by a conditional replace with a released
// marker, which the next build takes over like a free lease and gc removes when it is old.

import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Storage } from '../storage/storage.js';
import { conditionalWriteSupport } from '../storage/probe.js';
import { manifestKey } from './layout.js';
import type { BuildObserver } from './observer.js';
import type { BuildProgress, Logger } from './types.js';

export const leaseKey = (cacheKey: string): string => `leases/${cacheKey}`;

export interface BuildLeaseSettings {
  /** How long a lease lasts without renewal, ms (NIXERY_BUILD_LEASE_SECONDS); 0: no leases. */
  periodMs: number;
  /** How often the holder renews (default: a third of the period). */
  renewMs?: number;
  /** First wait between looks for the record; doubles up to `maxPollMs` (defaults 100 ms, 2 s or a quarter period). */
  firstPollMs?: number;
  maxPollMs?: number;
}

interface Held {
  version: string;
  /** The lease has been taken over (or removed) by someone else: no more renewals. */
  lost: boolean;
}

export class BuildLeases {
  private support: Promise<'all' | 'no-delete' | 'none'> | undefined;
  private readonly holder = `${hostname()}/${process.pid}/${randomUUID()}`;
  private writes = 0;

  constructor(
    private readonly storage: Storage,
    private readonly settings: BuildLeaseSettings,
    private readonly log: Logger,
    private readonly observer?: Pick<BuildObserver, 'buildLease'>,
  ) {}

  /**
   * Whether leases are in use: on, and the storage honours conditional writes (probed once; the
   * registry probes at startup). A probe that fails outright is tried again at the next build.
   */
  check(): Promise<boolean> {
    return this.probe().then((support) => support !== 'none');
  }

  private probe(): Promise<'all' | 'no-delete' | 'none'> {
    if (this.settings.periodMs <= 0) return Promise.resolve('none');
    this.support ??= conditionalWriteSupport(this.storage).then(
      (support) => {
        if (support === 'none') this.log.warn({ storage: this.storage.name }, 'the storage does not honour conditional writes: build leases are off, every replica builds the images it is asked for');
        if (support === 'no-delete') this.log.info({ storage: this.storage.name }, 'the storage ignores conditions on deletes: build leases are released by a conditional replace, and gc removes them');
        return support;
      },
      (err: unknown) => {
        this.support = undefined;
        this.log.warn({ storage: this.storage.name, err: String(err) }, 'could not probe the storage for conditional writes: building without a lease');
        return 'none' as const;
      },
    );
    return this.support;
  }

  /**
   * Starts the probe (see `check`) if nothing has yet, so it runs alongside what precedes a build
   * (pinning the source); the promise of a probe this call started, else undefined.
   */
  startCheck(): Promise<boolean> | undefined {
    return this.support === undefined && this.settings.periodMs > 0 ? this.check() : undefined;
  }

  /**
   * The startup probe (see `check`), waited for at most `boundMs`: a slow storage does not hold
   * up startup (builds wait for the probe anyway), and a registry closed right after it started
   * has no probe still writing to its storage.
   */
  async checkAtStartup(boundMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, boundMs);
      timer.unref();
    });
    await Promise.race([this.check(), bound]);
    clearTimeout(timer);
  }

  /**
   * Runs `build` holding the image's lease, or, while another replica holds it, waits for the
   * record and answers what `landed` makes of it. `landed` returns null for a record it cannot
   * use (a blob lost): the wait goes on, until the lease is free or expires and this replica builds.
   */
  async once<T>(cacheKey: string, build: () => Promise<T>, landed: () => Promise<T | null>, report: (p: BuildProgress) => void = () => {}): Promise<T> {
    const support = await this.probe();
    if (support === 'none') return build();
    const key = leaseKey(cacheKey);
    const record = manifestKey(cacheKey);
    const periodMs = this.settings.periodMs;
    const maxPollMs = this.settings.maxPollMs ?? Math.max(10, Math.min(2000, periodMs / 4));
    let pollMs = Math.min(this.settings.firstPollMs ?? 100, maxPollMs);
    let seen: { version: string; since: number } | undefined;
    let waited = false;
    for (;;) {
      const current = await this.storage.readVersioned(key);
      let held: Held | null = null;
      if (!current || isReleased(current.data)) {
        // Free after a wait: its holder released it, after writing the record (unless it failed).
        if (waited && (await this.storage.stat(record))) {
          const answer = await landed();
          if (answer !== null) return answer;
        }
        held = await this.write(key, current?.version ?? null);
      } else if (seen?.version === current.version && performance.now() - seen.since >= periodMs) {
        held = await this.write(key, current.version);
        if (held) {
          this.observer?.buildLease('expired');
          this.log.warn({ lease: key, holder: describeHolder(current.data) }, 'a build lease expired (its holder stopped renewing it): taking it over');
        }
      }
      if (held) {
        this.observer?.buildLease('taken');
        return this.holding(key, record, held, support, build, landed);
      }
      if (current && seen?.version !== current.version) seen = { version: current.version, since: performance.now() };
      if (!waited) {
        waited = true;
        this.observer?.buildLease('waited');
        report({ phase: 'queued', message: 'another replica is building this image: waiting for it' });
      }
      await sleep(pollMs);
      pollMs = Math.min(pollMs * 2, maxPollMs);
      // A record that cannot be used (a blob lost, being repaired) is waited past like none.
      if (await this.storage.stat(record)) {
        const answer = await landed();
        if (answer !== null) return answer;
      }
    }
  }

  /** Builds while renewing the lease; releases it however the build ends. */
  private async holding<T>(key: string, record: string, held: Held, support: 'all' | 'no-delete', build: () => Promise<T>, landed: () => Promise<T | null>): Promise<T> {
    let renewing: Promise<void> = Promise.resolve();
    const timer = setInterval(() => {
      renewing = renewing.then(() => this.renew(key, held));
    }, this.settings.renewMs ?? Math.max(1, Math.floor(this.settings.periodMs / 3)));
    try {
      // The record may have landed between our miss and taking the lease (its builder released it).
      if (await this.storage.stat(record)) {
        const answer = await landed();
        if (answer !== null) return answer;
      }
      return await build();
    } finally {
      clearInterval(timer);
      await renewing;
      if (!held.lost) await this.release(key, held, support).catch((err: unknown) => this.log.warn({ lease: key, err: String(err) }, 'could not release a build lease (it expires)'));
    }
  }

  /** Deletes the lease on the version this replica wrote, or (no conditional deletes) replaces it with a released marker. */
  private async release(key: string, held: Held, support: 'all' | 'no-delete'): Promise<void> {
    if (support === 'all') {
      await this.storage.deleteIfVersion(key, held.version);
      return;
    }
    await this.storage.replaceIfVersion(key, this.body({ released: true }), held.version);
  }

  private async renew(key: string, held: Held): Promise<void> {
    if (held.lost) return;
    try {
      const renewed = await this.write(key, held.version);
      if (renewed) held.version = renewed.version;
      else {
        held.lost = true;
        this.log.warn({ lease: key }, 'lost a build lease while building (renewals were late and another replica took it over)');
      }
    } catch (err) {
      // Storage trouble: the next renewal tries again; the lease expires if none gets through.
      this.log.warn({ lease: key, err: String(err) }, 'could not renew a build lease');
    }
  }

  /** A lease body, unique to each write. */
  private body(extra: { released?: true } = {}): string {
    return JSON.stringify({ holder: this.holder, write: ++this.writes, at: new Date().toISOString(), ...extra });
  }

  /**
   * Creates the lease (`over` null) or replaces version `over`; null when another write won. Each
   * body is unique, so a write whose answer was lost and that was retried (then refused, as the
   * object had changed) is recognised by reading the object back.
   */
  private async write(key: string, over: string | null): Promise<Held | null> {
    const body = this.body();
    const version = over === null ? await this.storage.createIfAbsent(key, body) : await this.storage.replaceIfVersion(key, body, over);
    if (version) return { version, lost: false };
    const back = await this.storage.readVersioned(key);
    return back?.data.toString() === body ? { version: back.version, lost: false } : null;
  }
}

/** A lease's body as written by `body` (an unreadable one: no fields). */
function parseLease(data: Buffer): { holder?: unknown; released?: unknown } {
  try {
    return (JSON.parse(data.toString()) as { holder?: unknown; released?: unknown } | null) ?? {};
  } catch {
    return {};
  }
}

/** A released lease (see `release`): free to take, like no lease. */
function isReleased(data: Buffer): boolean {
  return parseLease(data).released === true;
}

function describeHolder(data: Buffer): string {
  return String(parseLease(data).holder ?? 'unknown');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
