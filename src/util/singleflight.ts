// Concurrent calls for the same key share one execution and its result.

export class SingleFlight<K, V> {
  private readonly inflight = new Map<K, Promise<V>>();

  /** Runs `fn` unless a call for `key` is already running, in which case its promise is shared. */
  run(key: K, fn: () => Promise<V>): { promise: Promise<V>; shared: boolean } {
    const running = this.inflight.get(key);
    if (running) return { promise: running, shared: true };
    // `fn` starts on the next tick: even if it throws at once, the entry it removes is there.
    const promise = Promise.resolve()
      .then(fn)
      .finally(() => {
        if (this.inflight.get(key) === promise) this.inflight.delete(key);
      });
    this.inflight.set(key, promise);
    return { promise, shared: false };
  }

  get size(): number {
    return this.inflight.size;
  }
}
