// Bounded concurrency with a bounded waiting queue.

export class QueueFullError extends Error {}

export class Semaphore {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(
    readonly limit: number,
    readonly queueLimit = Infinity,
  ) {}

  /** Runs `fn` when a slot is free; throws QueueFullError at once when the queue is full. */
  async use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) {
      if (this.waiting.length >= this.queueLimit) throw new QueueFullError('queue full');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  get active(): number {
    return this.running;
  }
  get queued(): number {
    return this.waiting.length;
  }
}
