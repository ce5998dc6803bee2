// Builds started through the API (POST /api/v1/builds): each is a build through the registry
// service (the same single flight, slots, queue and admission as a pull), watched: its state
// (queued → running → succeeded | failed), phase, message and packing progress. A bounded
// table of recent builds, in memory only: finished builds are forgotten after a while, and the
// oldest finished ones first when the table is full. A build is of one image name and tag on
// one or more platforms (by default every platform a pull of the tag gets), made concurrently.

import type { Logger } from '../util/logger.js';
import { randomBytes } from 'node:crypto';
import { AMD64, pullName, type Architecture, type ImageRequest } from '../image/name.js';
import type { ImageConfig } from '../image/config.js';
import type { BuildPhase, BuildProgress, BuiltImage } from '../builder/builder.js';
import { describeError, isClientError, logDetail, TooManyRequestsError } from '../errors.js';
import { MEDIA_TYPES } from '../manifest/manifest.js';
import { redact } from '../secrets.js';
import type { RegistryService, TaggedImage } from './registry-service.js';
import type { ImageIndex } from '../manifest/image-index.js';
import type { Admission } from './admission.js';

export type BuildState = 'queued' | 'running' | 'succeeded' | 'failed';

/** The answer of GET /api/v1/builds/<id> (see the API contract). */
export interface BuildStatus {
  id: string;
  /** `name:tag` as asked for. */
  image: string;
  name: string;
  tag: string;
  /** The platforms built (`linux/amd64`…), in the registry's configured order. */
  platforms: string[];
  /** The request's image config (canonical), or null: an image with one is pulled by digest (`result.reference`). */
  config: ImageConfig | null;
  state: BuildState;
  /** `source` and `queued` before the build runs; `done` once it succeeded. */
  phase: BuildPhase | 'done' | null;
  message: string;
  /**
   * While packing (and after): "layer 3 of 7", bytes done of the image's uncompressed size;
   * with several platforms, summed over the platforms that have reported packing.
   */
  progress: { layer: number; layers: number; layersDone: number; bytesDone: number; bytesTotal: number } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  result: BuildResult | null;
  error: { code: string; message: string } | null;
}

/** A layer of a built image; `paths`: how many store paths it holds. */
export interface BuildLayer {
  digest: string;
  size: number;
  diffId: string;
  paths: number;
  cached: boolean;
}

/** The fields before `index` are the first platform's (the default one, what a plain pull gets). */
export interface BuildResult {
  /**
   * What to pull by digest: the index's digest when several platforms were built, else the
   * manifest's; and `<name>@<digest>`, with the name as clients pull it. The only way to pull
   * an image built with a config (a pull by tag gets the plain image).
   */
  digest: string;
  reference: string;
  manifestDigest: string;
  mediaType: string;
  configDigest: string;
  revision: string | null;
  /** True when the image was already built (found in the cache, no Nix ran). */
  fromCache: boolean;
  layers: BuildLayer[];
  /** The OCI index over the platforms (what a pull of the tag that accepts an index gets); null for one platform. */
  index: { mediaType: string; digest: string } | null;
  /** Each platform's image, in order (the first is the one above). */
  platforms: Array<{ platform: string; manifestDigest: string; configDigest: string; layers: BuildLayer[] }>;
}

export interface BuildTrackerOptions {
  /** Builds kept (running ones are never dropped). Default 200. */
  capacity?: number;
  /** How long a finished build is kept, in milliseconds. Default 1 hour. */
  retainMs?: number;
  /** At most this often (ms) a watcher hears of progress; a finished build is told at once. Default 250. */
  watchIntervalMs?: number;
  log?: Pick<Logger, 'info' | 'warn'>;
}

interface Tracked {
  status: BuildStatus;
  /** The image as parsed: builds of the same one (name, tag, platforms) share a record. */
  key: string;
  /** The latest packing progress of each platform (keyed '' when only one is built). */
  packing: Map<string, NonNullable<BuildProgress['pack']>>;
  /** Bumped on every change, so watchers send only what is new. */
  version: number;
  watchers: Set<() => void>;
  /** Settles once the build is under way (queued for a slot, running, done) or failed before it started. */
  underWay: Promise<void>;
}

const RUNNING_PHASES: ReadonlySet<BuildPhase> = new Set(['resolve', 'realise', 'closure', 'layers', 'pack', 'manifest']);

export class BuildTracker {
  private readonly builds = new Map<string, Tracked>();
  /** Builds not finished, by image: asking again for one joins it. */
  private readonly active = new Map<string, Tracked>();
  private readonly capacity: number;
  private readonly retainMs: number;
  private readonly watchIntervalMs: number;

  constructor(
    private readonly service: RegistryService,
    private readonly options: BuildTrackerOptions = {},
  ) {
    this.capacity = options.capacity ?? 200;
    this.retainMs = options.retainMs ?? 3600_000;
    this.watchIntervalMs = options.watchIntervalMs ?? 250;
  }

  /** The platforms this registry builds (NIXERY_PLATFORMS), the default first. */
  get platforms(): readonly Architecture[] {
    return this.service.platforms;
  }

  /**
   * Starts a build of `images` (one image name and tag, one request per platform, as
   * `forPlatforms` gives them), or joins the one of the same images still going, admitted by
   * `admission`. Resolves with the build once it is under way (waiting for a slot, running,
   * or already finished: an image built before succeeds at once). A build refused before it
   * started (admission, a full queue, an unknown tag, the source unreachable) rejects with that
   * error, and is not kept.
   */
  async start(images: readonly ImageRequest[], requested: { name: string; tag: string }, admission: Admission): Promise<BuildStatus> {
    const first = images[0];
    if (!first) throw new Error('a build needs at least one platform');
    // Builds with another config (or none) are other images: they do not join each other.
    const key = `${first.name}:${first.tag}:${images.map((i) => i.arch.nixSystem).join(',')}${first.config ? `:${JSON.stringify(first.config)}` : ''}`;
    const running = this.active.get(key);
    if (running) {
      await running.underWay;
      return this.snapshot(running);
    }
    this.makeRoom();
    const now = new Date().toISOString();
    let markUnderWay!: () => void;
    let failEarly!: (err: unknown) => void;
    const tracked: Tracked = {
      key,
      packing: new Map(),
      version: 0,
      watchers: new Set(),
      underWay: new Promise<void>((resolve, reject) => {
        markUnderWay = resolve;
        failEarly = reject;
      }),
      status: {
        id: randomBytes(12).toString('base64url'),
        image: `${requested.name}:${requested.tag}`,
        name: requested.name,
        tag: requested.tag,
        platforms: images.map((i) => i.arch.platform),
        config: first.config ?? null,
        state: 'queued',
        phase: null,
        message: 'accepted',
        progress: null,
        createdAt: now,
        startedAt: null,
        finishedAt: null,
        result: null,
        error: null,
      },
    };
    // Joiners of this record learn of an early failure through `underWay` too.
    tracked.underWay.catch(() => {});
    this.builds.set(tracked.status.id, tracked);
    this.active.set(key, tracked);

    let started = false;
    const onProgress = (p: BuildProgress): void => {
      if (this.finished(tracked)) return;
      if (p.phase !== 'source' && !started) {
        started = true;
        markUnderWay();
      }
      this.progress(tracked, p);
    };
    this.buildAndIndex(images, admission, onProgress).then(
      ({ tagged, index }) => {
        this.succeed(tracked, tagged, index);
        markUnderWay();
      },
      (err: unknown) => {
        if (started) {
          this.fail(tracked, err);
          return;
        }
        // Refused before it started: the request that asked answers with the error itself.
        this.builds.delete(tracked.status.id);
        if (this.active.get(key) === tracked) this.active.delete(key);
        failEarly(err);
      },
    );
    await tracked.underWay;
    return this.snapshot(tracked);
  }

  /** The images, through the service (as a pull of them would), and their index when there are several. */
  private async buildAndIndex(images: readonly ImageRequest[], admission: Admission, onProgress: (p: BuildProgress) => void): Promise<{ tagged: TaggedImage; index: ImageIndex | null }> {
    let tagged = await this.service.imagesFor([...images], admission, onProgress);
    // An image with a config is pulled by digest only, so no pull by tag checks it is still
    // whole (gc may have expired it): when it is not, it is built again (the same digest).
    if (images[0]!.config && tagged.fromCache) {
      const whole = await Promise.all(tagged.images.map((b) => this.service.builder.stillWhole(b)));
      if (!whole.every(Boolean)) tagged = await this.service.imagesFor([...images], admission, onProgress);
    }
    return { tagged, index: tagged.images.length > 1 ? await this.service.index(tagged) : null };
  }

  /** A build's status, or undefined for an unknown (or forgotten) id. */
  get(id: string): BuildStatus | undefined {
    const tracked = this.lookup(id);
    return tracked && this.snapshot(tracked);
  }

  /**
   * Calls `send` with the build's status now, then on changes (at most every watchIntervalMs;
   * the final state at once). Returns the function that stops watching, or undefined for an
   * unknown id. `send` gets nothing after the final state.
   */
  watch(id: string, send: (status: BuildStatus) => void): (() => void) | undefined {
    const tracked = this.lookup(id);
    if (!tracked) return undefined;
    let sent = -1;
    let lastSentAt = 0;
    let timer: NodeJS.Timeout | undefined;
    const flush = (): void => {
      timer = undefined;
      if (tracked.version === sent) return;
      sent = tracked.version;
      lastSentAt = Date.now();
      send(this.snapshot(tracked));
    };
    const onChange = (): void => {
      if (this.finished(tracked)) {
        clearTimeout(timer);
        flush();
        return;
      }
      if (timer) return;
      const wait = lastSentAt + this.watchIntervalMs - Date.now();
      if (wait <= 0) flush();
      else timer = setTimeout(flush, wait);
    };
    tracked.watchers.add(onChange);
    flush();
    return () => {
      tracked.watchers.delete(onChange);
      clearTimeout(timer);
    };
  }

  /** How many builds are kept, and how many of them are not finished (for tests and metrics). */
  get size(): { kept: number; active: number } {
    this.dropExpired();
    return { kept: this.builds.size, active: this.active.size };
  }

  private dropExpired(): void {
    const now = Date.now();
    for (const [id, t] of this.builds) if (this.expired(t, now)) this.builds.delete(id);
  }

  private lookup(id: string): Tracked | undefined {
    const tracked = this.builds.get(id);
    if (tracked && this.expired(tracked, Date.now())) {
      this.builds.delete(id);
      return undefined;
    }
    return tracked;
  }

  /** Drops expired builds, then the oldest finished ones while the table is full; 429 if all run. */
  private makeRoom(): void {
    this.dropExpired();
    for (const [id, t] of this.builds) {
      if (this.builds.size < this.capacity) break;
      if (this.finished(t)) this.builds.delete(id);
    }
    if (this.builds.size >= this.capacity) {
      throw new TooManyRequestsError(`${this.builds.size} builds are under way; retry later`, 10);
    }
  }

  private expired(t: Tracked, now: number): boolean {
    return t.status.finishedAt !== null && now - Date.parse(t.status.finishedAt) > this.retainMs;
  }

  private finished(t: Tracked): boolean {
    return t.status.state === 'succeeded' || t.status.state === 'failed';
  }

  private progress(t: Tracked, p: BuildProgress): void {
    const s = t.status;
    s.phase = p.phase;
    s.message = p.message;
    if (RUNNING_PHASES.has(p.phase)) {
      s.state = 'running';
      s.startedAt ??= new Date().toISOString();
    }
    if (p.pack) {
      t.packing.set(p.platform ?? '', p.pack);
      s.progress = summed(t.packing.values());
    }
    this.changed(t);
  }

  private succeed(t: Tracked, tagged: TaggedImage, index: ImageIndex | null): void {
    const s = t.status;
    const built = tagged.images[0]!;
    const several = tagged.images.length > 1;
    s.state = 'succeeded';
    s.phase = 'done';
    s.message = tagged.fromCache ? `the image${several ? 's were' : ' was'} built before` : 'built';
    s.finishedAt = new Date().toISOString();
    const digest = index?.oci.digest ?? built.manifests.oci.digest;
    s.result = {
      digest,
      // The name every platform's image is served under (arm64/ only when the name picks it).
      reference: `${pullName(built.image.archRequested ? built.image : { ...built.image, arch: AMD64 })}@${digest}`,
      manifestDigest: built.manifests.oci.digest,
      mediaType: MEDIA_TYPES.ociManifest,
      configDigest: built.manifests.config.digest,
      revision: built.revision,
      fromCache: tagged.fromCache,
      layers: layersOf(built),
      index: index && { mediaType: MEDIA_TYPES.ociIndex, digest: index.oci.digest },
      platforms: tagged.images.map((b) => ({ platform: b.image.arch.platform, manifestDigest: b.manifests.oci.digest, configDigest: b.manifests.config.digest, layers: layersOf(b) })),
    };
    this.options.log?.info({ build: s.id, image: s.image, platforms: s.platforms, fromCache: tagged.fromCache, digest: s.result.index?.digest ?? s.result.manifestDigest }, 'API build succeeded');
    this.settle(t);
  }

  private fail(t: Tracked, err: unknown): void {
    const s = t.status;
    const { entry, message } = describeError(err);
    s.state = 'failed';
    s.message = 'failed';
    s.finishedAt = new Date().toISOString();
    // Messages are public already (NixeryError); configured secrets never get out regardless.
    s.error = { code: entry.code, message: redact(message) };
    const line = { build: s.id, image: s.image, phase: s.phase, err: logDetail(err) };
    if (isClientError(err)) this.options.log?.info(line, 'API build failed');
    else this.options.log?.warn(line, 'API build failed');
    this.settle(t);
  }

  private settle(t: Tracked): void {
    if (this.active.get(t.key) === t) this.active.delete(t.key);
    this.changed(t);
  }

  private changed(t: Tracked): void {
    t.version++;
    for (const watcher of [...t.watchers]) watcher();
  }

  private snapshot(t: Tracked): BuildStatus {
    const s = t.status;
    return {
      ...s,
      platforms: [...s.platforms],
      config: s.config && structuredClone(s.config),
      progress: s.progress && { ...s.progress },
      result: s.result && {
        ...s.result,
        layers: s.result.layers.map((l) => ({ ...l })),
        index: s.result.index && { ...s.result.index },
        platforms: s.result.platforms.map((p) => ({ ...p, layers: p.layers.map((l) => ({ ...l })) })),
      },
      error: s.error && { ...s.error },
    };
  }
}

function layersOf(built: BuiltImage): BuildLayer[] {
  return built.layers.map((l) => ({ digest: l.digest, size: l.size, diffId: l.diffId, paths: l.paths, cached: l.cached }));
}

/**
 * The packing progress of several platforms as one: layers and bytes summed over the platforms
 * that have reported packing (a platform found built never does), the layer being packed counted
 * as the layers done plus one. For one platform, its own progress.
 */
function summed(packing: Iterable<NonNullable<BuildProgress['pack']>>): NonNullable<BuildStatus['progress']> {
  const sum = { layer: 0, layers: 0, layersDone: 0, bytesDone: 0, bytesTotal: 0 };
  for (const p of packing) {
    sum.layers += p.layers;
    sum.layersDone += p.layersDone;
    sum.bytesDone += p.bytesDone;
    sum.bytesTotal += p.bytesTotal;
  }
  sum.layer = Math.min(sum.layersDone + 1, sum.layers);
  return sum;
}

/** True once a build has succeeded or failed. */
export function isFinal(status: BuildStatus): boolean {
  return status.state === 'succeeded' || status.state === 'failed';
}
