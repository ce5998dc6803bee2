// Writing response bodies without trusting the client: a response whose client has accepted
// nothing for `noProgressMs` is closed, and a streamed body keeps at most its window (by default
// MAX_IN_FLIGHT) of bytes handed to the socket and not yet flushed (so a client that stops
// reading holds no more; a response that got no buffer memory has a small window). Bytes
// already in memory for everyone (the hot cache, a shared read) are queued at once: queueing
// them copies nothing.

import type { ServerResponse } from 'node:http';

/** Most bytes of a streamed body handed to the socket and not yet seen flushed. */
export const MAX_IN_FLIGHT = 1024 * 1024;
/** Writes are cut to this size: each completed write is proof of progress. */
const PIECE = 1024 * 1024;

/** The client went away, or made no progress for too long; the response is destroyed. */
export class SendAborted extends Error {
  constructor(readonly reason: 'closed' | 'stalled') {
    super(reason === 'stalled' ? 'the client made no progress; the response was closed' : 'the client closed the connection');
  }
}

/** Writers with bytes in flight, checked by one timer for all of them. */
const watched = new Set<BodyWriter>();
let ticker: NodeJS.Timeout | undefined;

function watch(writer: BodyWriter, noProgressMs: number): void {
  watched.add(writer);
  if (ticker) return;
  ticker = setInterval(
    () => {
      const now = Date.now();
      for (const w of watched) w.checkProgress(now);
      if (watched.size === 0) {
        clearInterval(ticker);
        ticker = undefined;
      }
    },
    Math.max(10, Math.min(1000, noProgressMs / 4)),
  );
  ticker.unref();
}

/**
 * Writes bodies to one response. `write` resolves once the bytes are accepted into the
 * in-flight window; `end` finishes the response once everything is flushed.
 */
export class BodyWriter {
  private inFlight = 0;
  private lastProgress = Date.now();
  private wake: (() => void) | undefined;
  private failure: SendAborted | undefined;

  private readonly window: number;
  private readonly piece: number;

  constructor(
    private readonly res: ServerResponse,
    private readonly noProgressMs: number,
    /** Most bytes in flight (0: the default). */
    window = 0,
  ) {
    this.window = window > 0 ? window : MAX_IN_FLIGHT;
    this.piece = Math.min(PIECE, this.window);
    watch(this, noProgressMs);
    res.once('close', () => {
      if (!res.writableFinished) this.abort('closed');
      watched.delete(this);
    });
  }

  /**
   * Writes `bytes` (any size: cut into pieces without copying). `shared`: the bytes are kept in
   * memory anyway, so they are queued without waiting for the window. `sent`: called once the
   * socket is done with all of them (written, or the response destroyed), never before.
   */
  async write(bytes: Buffer, options: { shared?: boolean; sent?: () => void } = {}): Promise<void> {
    const size = options.shared ? PIECE : this.piece;
    let pieces = Math.ceil(bytes.length / size);
    const { sent } = options;
    if (pieces === 0) sent?.();
    for (let at = 0; at < bytes.length; at += size) {
      const piece = bytes.subarray(at, Math.min(bytes.length, at + size));
      if (!options.shared) while (this.inFlight + piece.length > this.window && this.inFlight > 0) await this.waitForProgress();
      this.throwIfFailed();
      this.inFlight += piece.length;
      this.res.write(piece, () => {
        this.inFlight -= piece.length;
        this.lastProgress = Date.now();
        this.wakeUp();
        if (--pieces === 0) sent?.();
      });
    }
  }

  /**
   * Ends the response once every byte written is flushed, and waits until the end is (or it
   * fails). Ended only then: a draining server closes connections whose response has ended
   * (Node's `closeIdleConnections` counts an ended response as done), which would drop bytes
   * still queued for a slow reader.
   */
  async end(): Promise<void> {
    while (this.inFlight > 0) await this.waitForProgress();
    this.throwIfFailed();
    await new Promise<void>((resolve) => {
      this.res.end(() => resolve());
      // A response destroyed meanwhile never calls back.
      this.res.once('close', () => resolve());
    });
    watched.delete(this);
    this.throwIfFailed();
  }

  /** Destroys the response (a failed transfer for the client). */
  destroy(): void {
    watched.delete(this);
    if (!this.res.destroyed) this.res.destroy();
  }

  /** @internal Called by the shared timer. */
  checkProgress(now: number): void {
    if (this.inFlight > 0 && now - this.lastProgress >= this.noProgressMs) this.abort('stalled');
  }

  private abort(reason: 'closed' | 'stalled'): void {
    if (this.failure) return;
    this.failure = new SendAborted(reason);
    this.destroy();
    this.wakeUp();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private waitForProgress(): Promise<void> {
    this.throwIfFailed();
    return new Promise((resolve) => (this.wake = resolve));
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
