// A bound on bytes held at once across many users (e.g. every response buffering blob bytes):
// `acquire` waits, first come first served, until the bytes fit.

export class ByteBudget {
  private used = 0;
  private readonly waiting: Array<{ bytes: number; grant: () => void }> = [];

  constructor(readonly capacity: number) {}

  /** Resolves once `bytes` (clamped to the capacity, so any request can proceed alone) are held. */
  acquire(bytes: number): Promise<number> {
    const n = Math.min(bytes, this.capacity);
    if (this.waiting.length === 0 && this.used + n <= this.capacity) {
      this.used += n;
      return Promise.resolve(n);
    }
    return new Promise((resolve) => this.waiting.push({ bytes: n, grant: () => resolve(n) }));
  }

  /** Gives back what an acquire returned. */
  release(bytes: number): void {
    this.used -= bytes;
    while (this.waiting.length > 0 && this.used + this.waiting[0]!.bytes <= this.capacity) {
      const next = this.waiting.shift()!;
      this.used += next.bytes;
      next.grant();
    }
  }

  get inUse(): number {
    return this.used;
  }

  get queued(): number {
    return this.waiting.length;
  }
}
