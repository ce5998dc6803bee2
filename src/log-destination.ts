// Where the server's log lines go: batched in memory, then written by sonic-boom (pino's own
// asynchronous destination, which handles partial writes, EAGAIN and flushing at exit).
//
// Why batch in front of it: sonic-boom appends each line to a string and measures it with
// Buffer.byteLength, which flattens the growing string, a copy of the whole pending buffer (up
// to 16 KB) for every line. At a line per request that was a third of everything the request
// path allocated (bench/README.md). Joining an array of lines once per batch costs one copy.

import { pino } from 'pino';

type SonicBoom = ReturnType<typeof pino.destination>;

/** About this many bytes of lines are handed to the file descriptor at once. */
const BATCH_BYTES = 16 * 1024;

export class BatchedLogDestination {
  private lines: string[] = [];
  private pending = 0;
  private readonly out: SonicBoom;

  constructor(fd: number) {
    // minLength 1: a batch is written at once unless a write is in flight; flush() still
    // waits for everything to be written (it does nothing with minLength 0).
    this.out = pino.destination({ fd, sync: false, minLength: 1 });
    // sonic-boom writes what it holds when the process exits; this holds lines before it.
    process.once('exit', () => {
      try {
        this.flushSync();
      } catch {
        // Nowhere left to report it.
      }
    });
  }

  write(line: string): boolean {
    this.lines.push(line);
    this.pending += line.length;
    if (this.pending >= BATCH_BYTES) this.pass();
    return true;
  }

  /** Writes what is batched; `cb` once it is all written. */
  flush(cb?: (err?: Error) => void): void {
    this.pass();
    this.out.flush(cb);
  }

  flushSync(): void {
    this.pass();
    this.out.flushSync();
  }

  private pass(): void {
    if (this.lines.length === 0) return;
    const batch = this.lines.length === 1 ? this.lines[0]! : this.lines.join('');
    this.lines = [];
    this.pending = 0;
    this.out.write(batch);
  }
}
