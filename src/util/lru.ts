// A bounded map that forgets the least recently used entries first. The bound is a count, or a
// total weight when a weigh function is given (e.g. bytes of cached blobs).

export class LruCache<K, V> {
  private readonly entries = new Map<K, V>();
  private total = 0;
  /** The most recently used key: getting it again needs no reordering (a hot key on the hot path). */
  private newest: K | undefined;

  constructor(
    readonly capacity: number,
    private readonly weigh: (value: V) => number = () => 1,
  ) {}

  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined && key !== this.newest) {
      // Re-insert so iteration order is least → most recently used.
      this.entries.delete(key);
      this.entries.set(key, value);
      this.newest = key;
    }
    return value;
  }

  set(key: K, value: V): void {
    const weight = this.weigh(value);
    if (weight > this.capacity) return;
    this.delete(key);
    this.entries.set(key, value);
    this.newest = key;
    this.total += weight;
    while (this.total > this.capacity) {
      const oldest = this.entries.keys().next().value as K;
      this.delete(oldest);
    }
  }

  delete(key: K): void {
    const value = this.entries.get(key);
    if (value === undefined) return;
    if (key === this.newest) this.newest = undefined;
    this.entries.delete(key);
    this.total -= this.weigh(value);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Total weight held (the entry count without a weigh function). */
  get weight(): number {
    return this.total;
  }
}
