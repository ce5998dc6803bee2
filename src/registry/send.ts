// Writing response bodies without trusting the client: each response keeps at most a little in
// flight (so a client that stops reading holds no more than that), and a response whose client
// has accepted nothing for `noProgressMs` is closed.

import type { ServerResponse } from 'node:http';

/** Most bytes one response may have handed to its socket and not yet seen flushed. */
export const MAX_IN_FLIGHT = 1024 * 1024;
/** Writes are cut to this size: each completed write is proof of progress. */
const PIECE = 256 * 1024;

/** The client went away, or made no progress for too long; the response is destroyed. */
export class SendAborted extends Error {
  constructor(readonly reason: 'closed' | 'stalled') {
    super(reason === 'stalled' ? 'the client made no progress; the response was closed' : 'the client closed the connection');
  }
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
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly res: ServerResponse,
    noProgressMs: number,
  ) {
    const check = Math.max(10, Math.min(1000, noProgressMs / 4));
    this.timer = setInterval(() => {
      if (this.inFlight > 0 && Date.now() - this.lastProgress >= noProgressMs) this.abort('stalled');
    }, check);
    this.timer.unref();
    res.once('close', () => {
      if (!res.writableFinished) this.abort('closed');
      clearInterval(this.timer);
    });
  }

  /** Writes `bytes` (any size: cut into pieces without copying). */
  async write(bytes: Buffer): Promise<void> {
    for (let at = 0; at < bytes.length; at += PIECE) {
      const piece = bytes.subarray(at, Math.min(bytes.length, at + PIECE));
      while (this.inFlight + piece.length > MAX_IN_FLIGHT && this.inFlight > 0) await this.waitForProgress();
      this.throwIfFailed();
      this.inFlight += piece.length;
      this.res.write(piece, () => {
        this.inFlight -= piece.length;
        this.lastProgress = Date.now();
        this.wakeUp();
      });
    }
  }

  /** Ends the response and waits until it is flushed (or fails). */
  async end(): Promise<void> {
    this.throwIfFailed();
    await new Promise<void>((resolve) => {
      this.res.end(() => resolve());
      // A response destroyed meanwhile never calls back.
      this.res.once('close', () => resolve());
    });
    clearInterval(this.timer);
    this.throwIfFailed();
  }

  /** Destroys the response (a failed transfer for the client). */
  destroy(): void {
    clearInterval(this.timer);
    if (!this.res.destroyed) this.res.destroy();
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
