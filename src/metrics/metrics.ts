// The Prometheus metrics served at /metrics (prom-client, text exposition format), all defined
// here. One prom-client Registry per app, never the global one: tests run many apps in one
// process. Labels take values from bounded sets only (route names, methods, status codes,
// phases, storage operations, error kinds): never an image name, tag or digest.
//
// The parts of the registry report here through observers they declare themselves and know
// nothing of prom-client: the builder (builder/observer.ts), pinning (builder/pins.ts), Nix runs
// (nix/observer.ts), storage (storage/measured.ts), the blob policy (service/blob-observer.ts)
// and HTTP (registry/observer.ts). app.ts, the composition root, wires them to one Metrics; the
// few counts other parts keep themselves it hands over as readings. Nothing here walks the
// object graph. What the request path records costs a few map lookups and a bucket count
// (bench/README.md).

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from 'prom-client';
import type { BuildPhase } from '../builder/types.js';
import type { BuildObserver } from '../builder/observer.js';
import type { PinObserver } from '../builder/pins.js';
import type { StorageObserver } from '../storage/measured.js';
import type { BlobMemory, BlobObserver } from '../service/blob-observer.js';
import type { ConnectionRefusal, HttpObserver, MetricsExposition, ProtocolErrorReason } from '../registry/observer.js';
import { NIX_COMMANDS, NIX_FAILURES, NixRunCounts } from '../nix/observer.js';
import { NixeryError } from '../errors.js';
import { RequestDurations } from './request-durations.js';

/**
 * Counts that parts of the registry keep themselves (the registry service, the access gate, the
 * quarantine), read when scraped: app.ts hands them over (see `Metrics.watch`).
 */
export interface MetricReadings {
  /** Image requests answered from a cache without building. */
  cacheHits(): number;
  /** Image requests answered from the registry's memo of images by tag. */
  memoHits(): number;
  buildFailures(): number;
  tooLarge(): number;
  /** Builds refused because the build queue was full. */
  rejected(): number;
  building(): number;
  queued(): number;
  /** Stored objects removed because they failed a check. */
  integrityFailures(): number;
  unauthorized(): number;
  denied(): number;
  packagesDenied(): number;
  buildsRateLimited(): number;
}

/** What the observers below count (per Metrics, so per app). */
interface Counts {
  buildsRun: number;
  layersPacked: number;
  leasesTaken: number;
  leasesWaited: number;
  leasesExpired: number;
  manifestMemoryHits: number;
  manifestStorageHits: number;
  manifestMisses: number;
  hotHits: number;
  hotMisses: number;
  sendStalled: number;
  repairs: number;
  looks: number;
  lookFailures: number;
  lastLookSeconds: number;
  bytesHashed: number;
  sourceFailing: boolean;
}

/** Where a scalar comes from: what an observer counted, what a reading says, or the blob policy's memory. */
interface ScalarInputs {
  counts: Counts;
  readings: MetricReadings | undefined;
  memory: BlobMemory;
}

interface Scalar {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  read(s: ScalarInputs): number;
}

const counter = (name: string, help: string, read: Scalar['read']): Scalar => ({ name, help, type: 'counter', read });
const gauge = (name: string, help: string, read: Scalar['read']): Scalar => ({ name, help, type: 'gauge', read });

/** Unlabelled counts (0 for a reading until `watch`), read at scrape time. */
const SCALARS: readonly Scalar[] = [
  counter('nixery_image_builds_total', 'Image builds that ran Nix.', (s) => s.counts.buildsRun),
  counter('nixery_image_cache_hits_total', 'Image requests answered from a cache without building.', (s) => s.readings?.cacheHits() ?? 0),
  counter('nixery_image_build_failures_total', 'Image builds that failed (not counting refusals of bad requests).', (s) => s.readings?.buildFailures() ?? 0),
  counter('nixery_images_too_large_total', 'Builds refused because the closure was over NIXERY_MAX_IMAGE_SIZE.', (s) => s.readings?.tooLarge() ?? 0),
  counter('nixery_builds_rejected_total', 'Builds refused because the build queue was full.', (s) => s.readings?.rejected() ?? 0),
  gauge('nixery_builds_running', 'Builds running now.', (s) => s.readings?.building() ?? 0),
  gauge('nixery_builds_queued', 'Builds waiting for a build slot (queue depth).', (s) => s.readings?.queued() ?? 0),
  counter('nixery_build_leases_taken_total', 'Build leases taken to build an image (of them, taken over after expiry: nixery_build_leases_expired_total).', (s) => s.counts.leasesTaken),
  counter('nixery_build_leases_waited_total', 'Builds that waited for the image another replica held the build lease of.', (s) => s.counts.leasesWaited),
  counter('nixery_build_leases_expired_total', 'Build leases taken over because their holder stopped renewing them.', (s) => s.counts.leasesExpired),
  counter('nixery_layers_packed_total', 'Layers packed (not found in the build cache).', (s) => s.counts.layersPacked),
  counter('nixery_manifest_cache_misses_total', 'Manifest cache lookups that found no usable record (the image is built).', (s) => s.counts.manifestMisses),
  counter('nixery_blob_cache_hits_total', 'Blob and manifest-by-digest requests answered from the hot-blob cache.', (s) => s.counts.hotHits),
  counter('nixery_blob_cache_misses_total', 'Blob and manifest-by-digest requests the hot-blob cache (when on) did not hold.', (s) => s.counts.hotMisses),
  gauge('nixery_blob_cache_bytes', 'Bytes held by the hot-blob cache.', (s) => s.memory.hotCacheBytes),
  gauge('nixery_send_buffered_bytes', 'Bytes responses hold while streaming.', (s) => s.memory.bufferedBytes),
  counter('nixery_send_stalled_total', 'Responses closed because the client accepted nothing for NIXERY_SEND_TIMEOUT.', (s) => s.counts.sendStalled),
  counter('nixery_blob_repairs_total', 'Missing blobs rebuilt from the image they belong to.', (s) => s.counts.repairs),
  counter('nixery_integrity_failures_total', 'Stored objects removed because they failed a check.', (s) => s.readings?.integrityFailures() ?? 0),
  counter('nixery_auth_unauthorized_total', 'Requests refused for missing or bad credentials (401).', (s) => s.readings?.unauthorized() ?? 0),
  counter('nixery_auth_denied_total', 'Requests refused for lack of access (403).', (s) => s.readings?.denied() ?? 0),
  counter('nixery_packages_denied_total', 'Images refused by NIXERY_ALLOW_PACKAGES, NIXERY_DENY_PACKAGES or NIXERY_MAX_PACKAGES.', (s) => s.readings?.packagesDenied() ?? 0),
  counter('nixery_builds_rate_limited_total', 'Builds refused by the per-client build rate limit (429).', (s) => s.readings?.buildsRateLimited() ?? 0),
  counter('nixery_source_looks_total', 'Looks at the package source (revisions of its tags).', (s) => s.counts.looks),
  counter('nixery_source_look_failures_total', 'Looks at the package source that failed.', (s) => s.counts.lookFailures),
  gauge('nixery_source_look_last_seconds', 'How long the last look at the package source took.', (s) => s.counts.lastLookSeconds),
  counter('nixery_source_bytes_hashed_total', 'Bytes of a local package set read to hash it.', (s) => s.counts.bytesHashed),
  gauge('nixery_source_failing', '1 while the package source cannot be reached (the last good revisions are served).', (s) => (s.counts.sourceFailing ? 1 : 0)),
];

const NO_MEMORY: () => BlobMemory = () => ({ hotCacheBytes: 0, bufferedBytes: 0 });

/** The phases of a build that ran Nix (`source`, pinning, happens for cached images too). */
const BUILD_PHASES: readonly BuildPhase[] = ['resolve', 'realise', 'closure', 'layers', 'pack', 'manifest'];

const BUILD_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600];
const STORAGE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** 1 MiB/s to 1 GiB/s. */
const THROUGHPUT_BUCKETS = exponentialBuckets(1 << 20, 2, 11);

/** Request methods as labels: those a registry answers, the rest as OTHER. */
const METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export class Metrics implements HttpObserver, MetricsExposition {
  readonly registry = new Registry();
  /** route → method → status → requests. Folded into the counter when scraped. */
  private readonly requestCounts = new Map<string, Map<string, Map<number, number>>>();
  /** By reason: see ProtocolErrorReason. */
  private readonly protocolErrors = new Map<ProtocolErrorReason, number>();
  /** Connections refused or closed to make room, by reason. */
  private readonly connectionsRefused = new Map<string, number>();
  private readonly counts: Counts = {
    buildsRun: 0,
    layersPacked: 0,
    leasesTaken: 0,
    leasesWaited: 0,
    leasesExpired: 0,
    manifestMemoryHits: 0,
    manifestStorageHits: 0,
    manifestMisses: 0,
    hotHits: 0,
    hotMisses: 0,
    sendStalled: 0,
    repairs: 0,
    looks: 0,
    lookFailures: 0,
    lastLookSeconds: 0,
    bytesHashed: 0,
    sourceFailing: false,
  };
  private readonly nixRuns = new NixRunCounts();
  private readings: MetricReadings | undefined;
  private blobMemory = NO_MEMORY;
  private readonly requestDurations: RequestDurations;
  private readonly buildDurations: Histogram<'outcome'>;
  private readonly phaseDurations: Histogram<'phase'>;
  private readonly packedBytes: Counter<'form'>;
  private readonly packDurations: Histogram;
  private readonly packThroughput: Histogram;
  private readonly storageDurations: Histogram<'backend' | 'operation'>;
  private readonly storageErrors: Counter<'backend' | 'operation' | 'kind'>;

  constructor() {
    const registers = [this.registry];
    const counts = this.requestCounts;
    new Counter({
      name: 'nixery_http_requests_total',
      help: 'HTTP requests by route (none: no route matched, or the HTTP parser refused it), method and status.',
      labelNames: ['route', 'method', 'status'] as const,
      registers,
      collect() {
        this.reset();
        for (const [route, byMethod] of counts) for (const [method, byStatus] of byMethod) for (const [status, n] of byStatus) this.inc({ route, method, status }, n);
      },
    });
    const self = this;
    new Counter({
      name: 'nixery_http_errors_total',
      help: 'HTTP requests answered with a status of 400 or more.',
      registers,
      collect() {
        this.reset();
        this.inc(self.errorCount());
      },
    });
    new Counter({
      name: 'nixery_http_protocol_errors_total',
      help: 'Requests the HTTP parser refused (400, 408, 431) and CONNECT (reason http), failed TLS handshakes (tls_handshake), plain HTTP to the TLS port (http_on_tls_port); TLS handshakes on the plain port, the probe docker, podman and skopeo send first, count as tls_on_plain_port and are no error.',
      labelNames: ['reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of self.protocolErrors) this.inc({ reason }, n);
      },
    });
    new Counter({
      name: 'nixery_http_connections_refused_total',
      help: 'Connections refused at NIXERY_MAX_CONNECTIONS (max_connections) or a client\'s cap (client_connections), idle ones closed to make room (evicted), accepts failed for want of descriptors (accept_failed).',
      labelNames: ['reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of self.connectionsRefused) this.inc({ reason }, n);
      },
    });
    this.requestDurations = new RequestDurations(registers);
    this.buildDurations = new Histogram({
      name: 'nixery_build_duration_seconds',
      help: 'Builds that ran Nix, from resolving the packages to the stored manifests, by outcome.',
      labelNames: ['outcome'] as const,
      buckets: BUILD_BUCKETS,
      registers,
    });
    this.phaseDurations = new Histogram({
      name: 'nixery_build_phase_duration_seconds',
      help: 'Phases of builds that ran Nix: resolve, realise, closure, layers, pack, manifest.',
      labelNames: ['phase'] as const,
      buckets: BUILD_BUCKETS,
      registers,
    });
    for (const phase of BUILD_PHASES) this.phaseDurations.zero({ phase });
    for (const outcome of ['succeeded', 'failed']) this.buildDurations.zero({ outcome });
    this.packedBytes = new Counter({
      name: 'nixery_layer_packed_bytes_total',
      help: 'Bytes of the layers packed: the tar (uncompressed) and the gzip blob (compressed).',
      labelNames: ['form'] as const,
      registers,
    });
    for (const form of ['compressed', 'uncompressed']) this.packedBytes.inc({ form }, 0);
    this.packDurations = new Histogram({
      name: 'nixery_layer_pack_duration_seconds',
      help: 'Time to pack one layer into storage.',
      buckets: BUILD_BUCKETS,
      registers,
    });
    this.packThroughput = new Histogram({
      name: 'nixery_layer_pack_throughput_bytes_per_second',
      help: 'Uncompressed bytes per second of each layer packed.',
      buckets: THROUGHPUT_BUCKETS,
      registers,
    });
    this.storageDurations = new Histogram({
      name: 'nixery_storage_operation_duration_seconds',
      help: 'Storage operations by backend and operation (get and open: until the object is open).',
      labelNames: ['backend', 'operation'] as const,
      buckets: STORAGE_BUCKETS,
      registers,
    });
    this.storageErrors = new Counter({
      name: 'nixery_storage_errors_total',
      help: 'Storage operations that failed, by backend, operation and error kind.',
      labelNames: ['backend', 'operation', 'kind'] as const,
      registers,
    });
    const nix = this.nixRuns;
    new Counter({
      name: 'nixery_nix_invocations_total',
      help: 'Nix processes run (by this process), by command.',
      labelNames: ['command'] as const,
      registers,
      collect() {
        this.reset();
        for (const command of NIX_COMMANDS) this.inc({ command }, nix.commands[command].invocations);
      },
    });
    new Counter({
      name: 'nixery_nix_failures_total',
      help: 'Nix processes that failed, by command and reason (exit: non-zero exit; timeout; stopped: aborted or shutting down).',
      labelNames: ['command', 'reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const command of NIX_COMMANDS) for (const reason of NIX_FAILURES) this.inc({ command, reason }, nix.commands[command].failures[reason]);
      },
    });
    new Counter({
      name: 'nixery_manifest_cache_hits_total',
      help: 'Image requests answered without building, by tier: the registry memo of images by tag, the manifest cache in memory, or a checked record in storage.',
      labelNames: ['tier'] as const,
      registers,
      collect() {
        this.reset();
        this.inc({ tier: 'memo' }, self.readings?.memoHits() ?? 0);
        this.inc({ tier: 'memory' }, self.counts.manifestMemoryHits);
        this.inc({ tier: 'storage' }, self.counts.manifestStorageHits);
      },
    });
    for (const scalar of SCALARS) {
      const config = { name: scalar.name, help: scalar.help, registers };
      if (scalar.type === 'counter') {
        new Counter({
          ...config,
          collect() {
            this.reset();
            this.inc(scalar.read(self.scalarInputs()));
          },
        });
      } else {
        new Gauge({
          ...config,
          collect() {
            this.set(scalar.read(self.scalarInputs()));
          },
        });
      }
    }
  }

  /**
   * Starts serving the counts the registry service, the gate and the quarantine keep (read
   * when scraped), and the process defaults (CPU, memory, event loop lag, GC). Once per Metrics.
   */
  watch(readings: MetricReadings): void {
    if (this.readings) throw new Error('Metrics.watch: already watching');
    this.readings = readings;
    collectDefaultMetrics({ register: this.registry });
  }

  private scalarInputs(): ScalarInputs {
    return { counts: this.counts, readings: this.readings, memory: this.blobMemory() };
  }

  /** One answered request (the hot path: a few map lookups, no allocation once its labels were seen). */
  request(route: string, method: string, status: number, seconds: number): void {
    this.count(route, method, status);
    this.requestDurations.record(route, seconds);
  }

  /** A request the HTTP parser refused (or CONNECT), answered with `status` (0: none), for `reason`. */
  protocolError(status: number, reason: ProtocolErrorReason = 'http'): void {
    this.protocolErrors.set(reason, (this.protocolErrors.get(reason) ?? 0) + 1);
    if (status > 0) this.count('none', 'none', status);
  }

  connectionRefused(reason: ConnectionRefusal): void {
    this.connectionsRefused.set(reason, (this.connectionsRefused.get(reason) ?? 0) + 1);
  }

  private count(route: string, method: string, status: number): void {
    const m = METHODS.has(method) ? method : 'OTHER';
    let byMethod = this.requestCounts.get(route);
    if (!byMethod) this.requestCounts.set(route, (byMethod = new Map()));
    let byStatus = byMethod.get(m);
    if (!byStatus) byMethod.set(m, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  }

  private errorCount(): number {
    let n = 0;
    for (const byMethod of this.requestCounts.values()) for (const byStatus of byMethod.values()) for (const [status, count] of byStatus) if (status >= 400) n += count;
    return n;
  }

  /** The builder's observer: builds and their phases, the manifest cache, packing. */
  readonly builds: BuildObserver = {
    buildStarted: () => {
      this.counts.buildsRun++;
    },
    manifestLookup: (answer) => {
      if (answer === 'memory') this.counts.manifestMemoryHits++;
      else if (answer === 'storage') this.counts.manifestStorageHits++;
      else this.counts.manifestMisses++;
    },
    phase: (phase, seconds) => this.phaseDurations.observe({ phase }, seconds),
    build: (outcome, seconds) => this.buildDurations.observe({ outcome }, seconds),
    layerPacked: ({ compressedBytes, uncompressedBytes, seconds }) => {
      this.counts.layersPacked++;
      this.packedBytes.inc({ form: 'compressed' }, compressedBytes);
      this.packedBytes.inc({ form: 'uncompressed' }, uncompressedBytes);
      this.packDurations.observe(seconds);
      if (seconds > 0) this.packThroughput.observe(uncompressedBytes / seconds);
    },
    buildLease: (event) => {
      if (event === 'taken') this.counts.leasesTaken++;
      else if (event === 'waited') this.counts.leasesWaited++;
      else this.counts.leasesExpired++;
    },
  };

  /** The observer of every Nix process (builds, pins, the package index): hand it to each. */
  get nix(): NixRunCounts {
    return this.nixRuns;
  }

  /** Pinning's observer: looks at the package source, and hashing a local one. */
  readonly pins: PinObserver = {
    looked: (seconds) => {
      this.counts.looks++;
      this.counts.lastLookSeconds = seconds;
      this.counts.sourceFailing = false;
    },
    lookFailed: (unavailable) => {
      this.counts.lookFailures++;
      this.counts.sourceFailing = unavailable;
    },
    hashed: (bytes) => {
      this.counts.bytesHashed += bytes;
    },
  };

  /** The blob policy's observer: the hot cache, stalled responses, repairs, memory held. */
  readonly blobs: BlobObserver = {
    hotLookup: (hit) => {
      if (hit) this.counts.hotHits++;
      else this.counts.hotMisses++;
    },
    sendStalled: () => {
      this.counts.sendStalled++;
    },
    repairStarted: () => {
      this.counts.repairs++;
    },
    memory: (read) => {
      this.blobMemory = read;
    },
  };

  /** An observer for the storage backend `backend` (filesystem, s3, gcs). */
  storage(backend: string): StorageObserver {
    return {
      operation: (operation, seconds, error) => {
        this.storageDurations.observe({ backend, operation }, seconds);
        if (error !== undefined) this.storageErrors.inc({ backend, operation, kind: error instanceof NixeryError ? error.kind.toLowerCase() : 'unexpected' });
      },
    };
  }

  /** The text exposition format, and its content type. */
  async expose(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** The unlabelled counts and the HTTP totals by name (for tests and tools in this process). */
  snapshot(): Record<string, number> {
    const values: Record<string, number> = {};
    let requests = 0;
    for (const byMethod of this.requestCounts.values()) for (const byStatus of byMethod.values()) for (const n of byStatus.values()) requests += n;
    values.nixery_http_requests_total = requests;
    values.nixery_http_errors_total = this.errorCount();
    let protocolErrors = 0;
    for (const [reason, n] of this.protocolErrors) if (reason !== 'tls_on_plain_port') protocolErrors += n;
    values.nixery_http_protocol_errors_total = protocolErrors;
    values.nixery_http_tls_on_plain_port_total = this.protocolErrors.get('tls_on_plain_port') ?? 0;
    let refused = 0;
    for (const n of this.connectionsRefused.values()) refused += n;
    values.nixery_http_connections_refused_total = refused;
    values.nixery_nix_invocations_total = this.nixRuns.invocations;
    const inputs = this.scalarInputs();
    for (const scalar of SCALARS) values[scalar.name] = scalar.read(inputs);
    return values;
  }
}
