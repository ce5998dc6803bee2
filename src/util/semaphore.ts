// The one concurrency primitive: bounded concurrency, FIFO, with an optional bound on how many
// may wait. The build queue (bounded, QueueFullError), the store walk and hashing, the gzip
// workers and the builder's packing (mapLimit) all use it, so "how many at once" means one thing.

export class QueueFullError extends Error {}

export class Semaphore {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private max: number;
  constructor(
    limit: number,
    readonly queueLimit = Infinity,
  ) {
    this.max = Semaphore.clamp(limit);
  }

  private static clamp(limit: number): number {
    return Math.max(1, Math.floor(limit));
  }

  get limit(): number {
    return this.max;
  }

  /** Changes the bound; waiters are let in at once if it grew. */
  setLimit(limit: number): void {
    this.max = Semaphore.clamp(limit);
    this.wake();
  }

  /** Runs `fn` when a slot is free; throws QueueFullError at once when the queue is full. */
  async use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) {
      if (this.waiting.length >= this.queueLimit) throw new QueueFullError('queue full');
      // The slot is handed over by wake(), which has already counted it.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await fn();
    } finally {
      this.running--;
      this.wake();
    }
  }

  private wake(): void {
    while (this.running < this.max && this.waiting.length > 0) {
      this.running++;
      this.waiting.shift()!();
    }
  }

  get active(): number {
    return this.running;
  }
  get queued(): number {
    return this.waiting.length;
  }
}

/** `fn` over `items`, at most `limit` at a time; results in input order; the first error rejects. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const slots = new Semaphore(limit);
  return Promise.all(items.map((item, i) => slots.use(() => fn(item, i))));
}
