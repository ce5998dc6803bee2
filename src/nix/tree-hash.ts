// The content identity of a local package set that is not a git checkout: a hash over relative
// paths (code-unit order), file types, the executable bit, sizes, file contents and link targets;
// `.git` is skipped. It changes whenever anything Nix could read changes and is the same on any
// machine for the same files.
//
// Reading a nixpkgs-sized tree takes seconds, so a TreeHasher remembers each file's digest with
// what identifies the version it read (device, inode, size, modification and change times, as
// git's index does): the next pass stats every file but reads only those that changed. A file
// modified within RACY_MS of being read may change again within the same timestamp tick, so its
// digest is not remembered and it is read again next time.
//
// The walk uses synchronous file system calls: tens of thousands of small files cost a few
// microseconds each that way, against tens through libuv's thread pool. A big tree is walked in
// a worker thread, so the registry's event loop and its own file reads are not in the way; a
// small one (a few hundred files) is walked inline, as starting the worker costs more (~40 ms)
// than the walk. Each inline pass gives up at a bound of entries and bytes to read (so it blocks
// a few milliseconds at most), and from then on that hasher uses the worker.

import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { compareStrings } from '../image/name.js';

/** Coarsest file timestamp granularity we allow for (FAT has 2 s). */
const RACY_MS = 2000;
const READ_CHUNK = 1 << 20;
/** An inline pass gives up past this many directory entries (a few ms of lstat calls)... */
export const INLINE_MAX_ENTRIES = 1000;
/** ...or past this many bytes to read (a few ms of SHA-256). */
export const INLINE_MAX_READ_BYTES = 2 * 1024 * 1024;

/** Thrown by a bounded hashTreeSync when the tree is too big to walk inline. */
class TooBigForInline extends Error {}

export interface Remembered {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  digest: string;
}

export interface TreeHashResult {
  /** Hex SHA-256 of the tree. */
  digest: string;
  files: number;
  /** Bytes read this pass (files whose remembered digest could not be reused). */
  bytesRead: number;
  /** Whether the pass ran in the worker thread (a big tree) or inline (a small one). */
  inWorker: boolean;
}

export interface InlineBounds {
  maxEntries: number;
  maxReadBytes: number;
}

/**
 * Hashes the tree at `root` synchronously, reusing the digests in `remembered` for files whose
 * stat is unchanged; returns the digests to remember for the next pass. Blocks: run it in a
 * worker (TreeHasher does), or with `bounds`, past which it throws TooBigForInline.
 */
export function hashTreeSync(root: string, remembered: Map<string, Remembered>, bounds?: InlineBounds): Omit<TreeHashResult, 'inWorker'> & { remembered: Map<string, Remembered> } {
  const next = new Map<string, Remembered>();
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(READ_CHUNK);
  let files = 0;
  let bytesRead = 0;
  let entries = 0;
  let toRead = 0;
  const field = (s: string): void => {
    hash.update(s);
    hash.update('\0');
  };
  const fileDigest = (abs: string, rel: string, st: BigIntStats): string => {
    const known = remembered.get(rel);
    if (known && known.dev === st.dev && known.ino === st.ino && known.size === st.size && known.mtimeNs === st.mtimeNs && known.ctimeNs === st.ctimeNs) {
      next.set(rel, known);
      return known.digest;
    }
    toRead += Number(st.size);
    if (bounds && toRead > bounds.maxReadBytes) throw new TooBigForInline();
    const startedNs = BigInt(Date.now()) * 1_000_000n;
    const h = createHash('sha256');
    const fd = openSync(abs, 'r');
    try {
      for (;;) {
        const n = readSync(fd, buffer, 0, READ_CHUNK, null);
        if (n === 0) break;
        h.update(buffer.subarray(0, n));
        bytesRead += n;
      }
    } finally {
      closeSync(fd);
    }
    const digest = h.digest('hex');
    const racyNs = BigInt(RACY_MS) * 1_000_000n;
    if (st.mtimeNs < startedNs - racyNs && st.ctimeNs < startedNs - racyNs) {
      next.set(rel, { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, digest });
    }
    return digest;
  };
  const visit = (abs: string, rel: string, st: BigIntStats): void => {
    if (bounds && ++entries > bounds.maxEntries) throw new TooBigForInline();
    if (st.isSymbolicLink()) {
      field('symlink');
      field(rel);
      field(readlinkSync(abs));
    } else if (st.isDirectory()) {
      field('directory');
      field(rel);
      const names = readdirSync(abs).filter((n) => n !== '.git').sort(compareStrings);
      for (const name of names) {
        const childAbs = join(abs, name);
        visit(childAbs, rel === '' ? name : `${rel}/${name}`, lstatSync(childAbs, { bigint: true }));
      }
    } else if (st.isFile()) {
      files++;
      const digest = fileDigest(abs, rel, st);
      field((st.mode & 0o100n) !== 0n ? 'executable' : 'regular');
      field(rel);
      field(String(st.size));
      field(digest);
    } else {
      field('other');
      field(rel);
    }
  };
  visit(root, '', lstatSync(root, { bigint: true }));
  return { digest: hash.digest('hex'), files, bytesRead, remembered: next };
}

interface WorkerReply {
  id: number;
  result?: Omit<TreeHashResult, 'inWorker'>;
  error?: { message: string; code?: string };
}

/**
 * Hashes trees, remembering file digests between passes: inline while the tree is small, in a
 * worker thread of its own once it was not (the digests remembered so far go along). One pass at
 * a time; the worker does not keep the process alive.
 */
export class TreeHasher {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: TreeHashResult) => void; reject: (e: Error) => void }>();
  private queue: Promise<unknown> = Promise.resolve();
  /** Digests of the inline passes; handed to the worker when it takes over. */
  private remembered = new Map<string, Remembered>();
  /** A pass outgrew the inline bounds: the worker hashes from then on. */
  private big = false;
  private readonly bounds: InlineBounds;

  constructor(bounds: Partial<InlineBounds> = {}) {
    this.bounds = { maxEntries: bounds.maxEntries ?? INLINE_MAX_ENTRIES, maxReadBytes: bounds.maxReadBytes ?? INLINE_MAX_READ_BYTES };
  }

  hash(root: string): Promise<TreeHashResult> {
    const run = this.queue.then(() => this.pass(root));
    this.queue = run.catch(() => {});
    return run;
  }

  private async pass(root: string): Promise<TreeHashResult> {
    if (!this.big) {
      try {
        const { remembered, ...result } = hashTreeSync(root, this.remembered, this.bounds);
        this.remembered = remembered;
        return { ...result, inWorker: false };
      } catch (err) {
        if (!(err instanceof TooBigForInline)) throw err;
        this.big = true;
      }
    }
    const handOver = this.remembered;
    this.remembered = new Map();
    return this.send(root, handOver.size > 0 ? handOver : undefined);
  }

  /** Stops the worker (a later hash starts a new one, with nothing remembered). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    await w?.terminate();
  }

  private send(root: string, remembered?: Map<string, Remembered>): Promise<TreeHashResult> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise<TreeHashResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, root, remembered });
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./tree-hash-worker.js', import.meta.url));
    worker.unref();
    worker.on('message', (reply: WorkerReply) => {
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (!p) return;
      if (reply.result) p.resolve({ ...reply.result, inWorker: true });
      else p.reject(Object.assign(new Error(reply.error?.message ?? 'hashing failed'), { code: reply.error?.code }));
    });
    const failAll = (err: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => failAll(new Error(`the tree hashing worker exited (${code})`)));
    this.worker = worker;
    return worker;
  }
}

/** A one-off content hash of a tree (hex SHA-256), as TreeHasher computes it. */
export async function hashTree(root: string): Promise<string> {
  const hasher = new TreeHasher();
  try {
    return (await hasher.hash(root)).digest;
  } finally {
    await hasher.close();
  }
}
