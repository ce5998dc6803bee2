// What the blob policy (hot cache, sending, repair) reports to whoever watches it (the
// registry's metrics), so it knows nothing of metrics.

/** The memory the blob policy holds, in bytes. */
export interface BlobMemory {
  /** Held by the hot-blob cache. */
  hotCacheBytes: number;
  /** Held by responses while they stream (bounded by NIXERY_SEND_BUFFER_MB). */
  bufferedBytes: number;
}

export interface BlobObserver {
  /** A blob or manifest-by-digest request was looked up in the hot cache (only when it is on). */
  hotLookup(hit: boolean): void;
  /** A response was closed because its client accepted nothing for NIXERY_SEND_TIMEOUT. */
  sendStalled(): void;
  /** A missing blob is being rebuilt from the image it belongs to. */
  repairStarted(): void;
  /** Called once by the blob policy: how to read its memory whenever the observer wants to (gauges). */
  memory(read: () => BlobMemory): void;
}
