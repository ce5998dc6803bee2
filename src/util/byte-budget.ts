// A bound on bytes held at once across many users (e.g. every response buffering blob bytes),
// shared fairly: no owner (client) holds more than its share, and nobody waits for bytes. A
// request that gets none goes on without them (a response streams with a small window instead
// of buffering), so clients that never read cannot make anyone else wait.

export class ByteBudget {
  private used = 0;
  private readonly byOwner = new Map<string, number>();

  constructor(
    readonly capacity: number,
    /** Most one owner may hold at once. */
    readonly perOwner: number = capacity,
  ) {}

  /** Takes `bytes` for `owner` when they fit the total and the owner's share: the bytes taken, or 0. */
  tryAcquire(bytes: number, owner: string): number {
    const held = this.byOwner.get(owner) ?? 0;
    if (bytes <= 0 || this.used + bytes > this.capacity || held + bytes > this.perOwner) return 0;
    this.used += bytes;
    this.byOwner.set(owner, held + bytes);
    return bytes;
  }

  /** Gives back what a tryAcquire returned for `owner`. */
  release(bytes: number, owner: string): void {
    if (bytes <= 0) return;
    this.used -= bytes;
    const left = (this.byOwner.get(owner) ?? 0) - bytes;
    if (left > 0) this.byOwner.set(owner, left);
    else this.byOwner.delete(owner);
  }

  get inUse(): number {
    return this.used;
  }

  /** Bytes `owner` holds. */
  heldBy(owner: string): number {
    return this.byOwner.get(owner) ?? 0;
  }
}
