// Filesystem storage: one file per object under a root directory (STORAGE_PATH).
//
// Writes go to `<root>/.tmp/<owner>~<random>`, are fsynced and then renamed into place, so an
// object appears under its key only when complete. Temporary files are named after the process
// that writes them (src/util/owner.ts): those of a process that is gone (a crash, kill -9) are
// removed at once by `removeAbandonedTemporaries`, which the server runs at start and
// periodically; those of a live process never are. The content type lives in a sidecar file
// `<root>/.meta/<key>` (no xattrs: tmpfs and many filesystems lack user xattrs). The sidecar
// records the size and mtime of the data file it describes; if they do not match (a crash
// between the two renames, or two processes racing on one key with different types), the type
// is reported as unknown rather than wrong. Everything starting with `.` at the root is ours
// and never listed.

import { randomUUID } from 'node:crypto';
import { createWriteStream, type Stats, type BigIntStats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { NixeryError } from '../errors.js';
import { compareStrings } from '../image/name.js';
import { LruCache } from '../util/lru.js';
import { isAbandoned, ownedName } from '../util/owner.js';
import { StorageUnavailableError, StorageObjectNotFoundError, checkRange, isMoveOntoItself, validateKey, validatePrefix } from './errors.js';
import * as conditional from './filesystem-conditional.js';
import type { ByteRange, ObjectInfo, ObjectWriter, OpenedObject, Storage, VersionedObject } from './storage.js';

const TMP_DIR = '.tmp';
const META_DIR = '.meta';

interface Sidecar {
  contentType?: string;
  size: number;
  /** mtime of the data file in nanoseconds, as a decimal string. */
  mtimeNs: string;
}

const READ_CHUNK = 1024 * 1024;

export interface FilesystemStorageOptions {
  /** fsync each object before it becomes visible (default true). */
  fsync?: boolean;
}

export class FilesystemStorage implements Storage {
  readonly name: string;
  readonly root: string;
  /** @internal */
  readonly fsync: boolean;
  private ready: Promise<void> | undefined;
  /** Per-key chains that serialise the (sidecar, data) rename pairs within this process. */
  private readonly locks = new Map<string, Promise<void>>();
  /** Sidecars already read; an entry counts only while size and mtime still match the data. */
  private readonly sidecars = new LruCache<string, Sidecar>(4096);

  constructor(root: string, options: FilesystemStorageOptions = {}) {
    this.root = path.resolve(root);
    this.name = `filesystem (${this.root})`;
    this.fsync = options.fsync ?? true;
  }

  async put(key: string, data: Buffer | string, options: { contentType?: string } = {}): Promise<void> {
    validateKey(key);
    await this.init();
    const tmp = this.tempPath();
    try {
      const fh = await fs.open(tmp, 'wx', 0o644);
      try {
        await fh.writeFile(data);
        if (this.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      await this.publish(key, tmp, options.contentType);
    } catch (err) {
      await removeQuietly(tmp);
      throw this.failure('put', key, err);
    }
  }


  async writer(key: string, options: { contentType?: string } = {}): Promise<ObjectWriter> {
    validateKey(key);
    await this.init();
    const tmp = this.tempPath();
    const stream = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    let failure: unknown;
    let state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
    // A stream that errors (or is destroyed by a failing pipeline) takes its temp file with it,
    // even if the caller never calls abort.
    stream.on('error', (err) => {
      failure ??= err;
    });
    stream.on('close', () => {
      if (failure !== undefined || (stream.destroyed && !stream.writableFinished)) void removeQuietly(tmp);
    });
    const settle = () => finished(stream).catch(() => {});

    return {
      stream,
      commit: async () => {
        if (state !== 'open') throw new StorageUnavailableError(this.name, 'commit', key, new Error(`writer already ${state}`));
        state = 'committing';
        try {
          failure ??= stream.errored ?? undefined;
          if (failure === undefined && stream.destroyed && !stream.writableFinished) failure = new Error('the write stream was destroyed before commit');
          if (failure !== undefined) throw failure;
          if (!stream.writableEnded) stream.end();
          await finished(stream);
          if (!stream.closed) await new Promise<void>((resolve) => stream.once('close', () => resolve()));
          if (failure !== undefined) throw failure;
          if (this.fsync) {
            const fh = await fs.open(tmp, 'r');
            try {
              await fh.sync();
            } finally {
              await fh.close();
            }
          }
          await this.publish(key, tmp, options.contentType);
          state = 'committed';
        } catch (err) {
          state = 'aborted';
          stream.destroy();
          await settle();
          await removeQuietly(tmp);
          throw this.failure('write', key, err);
        }
      },
      abort: async () => {
        if (state === 'committed' || state === 'aborted') return;
        state = 'aborted';
        stream.destroy();
        await settle();
        if (!stream.closed) await new Promise<void>((resolve) => stream.once('close', () => resolve()));
        await removeQuietly(tmp);
      },
    };
  }

  async get(key: string, range?: ByteRange): Promise<Readable | null> {
    return (await this.open(key, range))?.stream ?? null;
  }

  async open(key: string, range?: ByteRange, options?: { readAhead?: number }): Promise<OpenedObject | null> {
    validateKey(key);
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.dataPath(key), 'r');
    } catch (err) {
      if (isMissing(err)) return this.missing('get', key);
      throw this.failure('get', key, err);
    }
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) {
        await fh.close();
        return null;
      }
      const info = await this.describe(key, st);
      const bounds = range ? checkRange(key, range, info.size) : undefined;
      // Large reads: a 4 MB layer goes out in a few writes instead of 64 (blob serving is hot).
      const stream = fh.createReadStream({ autoClose: true, highWaterMark: options?.readAhead ?? READ_CHUNK, ...(bounds ?? {}) });
      const read = async (into: Buffer, length: number, position: number) => (await fh.read(into, 0, length, position)).bytesRead;
      return { stream, info, read };
    } catch (err) {
      await fh.close().catch(() => {});
      if (err instanceof NixeryError) throw err;
      throw this.failure('get', key, err);
    }
  }

  async read(key: string): Promise<Buffer | null> {
    validateKey(key);
    try {
      return await fs.readFile(this.dataPath(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') return null;
      if (isMissing(err)) return this.missing('read', key);
      throw this.failure('read', key, err);
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    validateKey(key);
    let st: BigIntStats;
    try {
      st = await fs.stat(this.dataPath(key), { bigint: true });
    } catch (err) {
      if (isMissing(err)) return this.missing('stat', key);
      throw this.failure('stat', key, err);
    }
    if (!st.isFile()) return null;
    return this.describe(key, st);
  }

  /** An object's info from its file's stat, with the type from a sidecar that still matches. */
  private async describe(key: string, st: BigIntStats): Promise<ObjectInfo> {
    const info: ObjectInfo = { key, size: Number(st.size), modified: Number(st.mtimeMs), version: `${st.ino}-${st.size}-${st.mtimeNs}-${st.ctimeNs}` };
    const mtimeNs = st.mtimeNs.toString();
    const matches = (c: Sidecar | null | undefined): c is Sidecar => !!c && c.size === info.size && c.mtimeNs === mtimeNs;
    let sidecar = this.sidecars.get(key);
    if (!matches(sidecar)) {
      const fresh = await this.readSidecar(key);
      if (fresh) this.sidecars.set(key, fresh);
      sidecar = fresh ?? undefined;
    }
    if (matches(sidecar) && sidecar.contentType !== undefined) info.contentType = sidecar.contentType;
    return info;
  }

  async move(from: string, to: string): Promise<void> {
    if (await isMoveOntoItself(this, from, to)) return;
    await this.withLocks([from, to], async () => {
      try {
        await fs.mkdir(path.dirname(this.dataPath(to)), { recursive: true });
        await fs.rename(this.dataPath(from), this.dataPath(to));
      } catch (err) {
        if (isMissing(err)) throw new StorageObjectNotFoundError(from);
        throw this.failure('move', `${from} -> ${to}`, err);
      }
      // rename keeps the mtime, so the sidecar stays valid for the moved data.
      try {
        await fs.mkdir(path.dirname(this.metaPath(to)), { recursive: true });
        await fs.rename(this.metaPath(from), this.metaPath(to));
      } catch (err) {
        if (!isMissing(err)) throw this.failure('move', `${from} -> ${to}`, err);
        await removeQuietly(this.metaPath(to));
      }
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const baseKey = slash < 0 ? '' : prefix.slice(0, slash + 1);
    yield* this.walk(baseKey, prefix);
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    await this.withLocks([key], async () => {
      for (const p of [this.dataPath(key), this.metaPath(key)]) {
        try {
          await fs.unlink(p);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (!isMissing(err) && code !== 'EISDIR' && code !== 'EPERM') throw this.failure('delete', key, err);
        }
      }
    });
  }

  // Conditional writes (filesystem-conditional.ts): atomic between processes, not only in this one.

  async createIfAbsent(key: string, data: Buffer | string): Promise<string | null> {
    validateKey(key);
    await this.init();
    return this.conditionally('create', key, () => conditional.createIfAbsent(this, key, data));
  }

  async replaceIfVersion(key: string, data: Buffer | string, version: string): Promise<string | null> {
    validateKey(key);
    await this.init();
    return this.conditionally('replace', key, () => conditional.replaceIfVersion(this, key, data, version));
  }

  async deleteIfVersion(key: string, version: string): Promise<boolean> {
    validateKey(key);
    await this.init();
    return this.conditionally('delete', key, () => conditional.deleteIfVersion(this, key, version));
  }

  async readVersioned(key: string): Promise<VersionedObject | null> {
    validateKey(key);
    const read = await this.conditionally('read', key, () => conditional.readVersioned(this.dataPath(key)));
    return read ?? this.missing('read', key);
  }

  private async conditionally<T>(operation: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.failure(operation, key, err);
    }
  }

  /**
   * Keys in code-unit order, streamed: directory entries are sorted with `/` appended to
   * directory names, which is exactly the order of the full keys.
   */
  private async *walk(dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    let entries;
    try {
      entries = await fs.readdir(path.join(this.root, dirKey), { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw this.failure('list', dirKey || '/', err);
    }
    const named = entries
      .filter((e) => (e.isFile() || e.isDirectory()) && !(dirKey === '' && e.name.startsWith('.')))
      .map((e) => ({ entry: e, sortKey: e.isDirectory() ? `${dirKey}${e.name}/` : `${dirKey}${e.name}` }))
      .sort((a, b) => compareStrings(a.sortKey, b.sortKey));
    for (const { entry, sortKey } of named) {
      if (entry.isDirectory()) {
        if (sortKey.startsWith(prefix) || prefix.startsWith(sortKey)) yield* this.walk(sortKey, prefix);
        continue;
      }
      if (!sortKey.startsWith(prefix)) continue;
      let st: Stats;
      try {
        st = await fs.stat(path.join(this.root, sortKey));
      } catch (err) {
        if (isMissing(err)) continue; // deleted while we listed
        throw this.failure('list', sortKey, err);
      }
      yield { key: sortKey, size: st.size, modified: st.mtimeMs };
    }
  }

  /** Writes the sidecar, then renames the data into place (both under the key's lock). */
  private async publish(key: string, tmp: string, contentType: string | undefined): Promise<void> {
    const st = await fs.stat(tmp, { bigint: true });
    const sidecar: Sidecar = { size: Number(st.size), mtimeNs: st.mtimeNs.toString() };
    if (contentType !== undefined) sidecar.contentType = contentType;
    const metaTmp = `${tmp}.meta`;
    await this.withLocks([key], async () => {
      try {
        await fs.writeFile(metaTmp, JSON.stringify(sidecar), { flag: 'wx', mode: 0o644 });
        await fs.mkdir(path.dirname(this.metaPath(key)), { recursive: true });
        await fs.rename(metaTmp, this.metaPath(key));
        await fs.mkdir(path.dirname(this.dataPath(key)), { recursive: true });
        await fs.rename(tmp, this.dataPath(key));
      } finally {
        await removeQuietly(metaTmp);
      }
    });
  }

  private async readSidecar(key: string): Promise<Sidecar | null> {
    try {
      const parsed = JSON.parse(await fs.readFile(this.metaPath(key), 'utf8')) as Partial<Sidecar>;
      if (typeof parsed.size !== 'number' || typeof parsed.mtimeNs !== 'string') return null;
      if (parsed.contentType !== undefined && typeof parsed.contentType !== 'string') return null;
      return parsed as Sidecar;
    } catch {
      return null; // missing or unreadable: the type is unknown
    }
  }

  private async withLocks<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort(compareStrings); // one global order: no deadlock
    const release: Array<() => void> = [];
    try {
      for (const key of sorted) {
        const previous = this.locks.get(key) ?? Promise.resolve();
        let done!: () => void;
        const mine = new Promise<void>((resolve) => (done = resolve));
        const chained = previous.then(() => mine);
        this.locks.set(key, chained);
        release.push(() => {
          done();
          if (this.locks.get(key) === chained) this.locks.delete(key);
        });
        await previous;
      }
      return await fn();
    } finally {
      for (const r of release.reverse()) r();
    }
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      const tmpDir = path.join(this.root, TMP_DIR);
      await fs.mkdir(tmpDir, { recursive: true });
      await fs.mkdir(path.join(this.root, META_DIR), { recursive: true });
      await this.removeAbandonedTemporaries();
    })().catch((err) => {
      this.ready = undefined;
      throw this.failure('initialise', this.root, err);
    });
    return this.ready;
  }

  /**
   * Removes the temporary files of writers that are gone (see src/util/owner.ts); returns how
   * many. Safe while this and other processes write: a live owner's files are kept.
   */
  async removeAbandonedTemporaries(): Promise<number> {
    const tmpDir = path.join(this.root, TMP_DIR);
    let names: string[];
    try {
      names = await fs.readdir(tmpDir);
    } catch (err) {
      if (isMissing(err)) return 0;
      throw this.failure('clean up', TMP_DIR, err);
    }
    let removed = 0;
    const now = Date.now();
    for (const name of names) {
      const p = path.join(tmpDir, name);
      const st = await fs.lstat(p).catch(() => null);
      if (!st || !isAbandoned(name, st.mtimeMs, now)) continue;
      await fs.rm(p, { recursive: true, force: true }).catch(() => {});
      removed++;
    }
    return removed;
  }

  /** @internal */
  tempPath(): string {
    return path.join(this.root, TMP_DIR, ownedName(randomUUID()));
  }

  /** @internal */
  dataPath(key: string): string {
    return path.join(this.root, key);
  }

  private metaPath(key: string): string {
    return path.join(this.root, META_DIR, key);
  }

  private failure(operation: string, key: string, err: unknown): Error {
    if (err instanceof NixeryError) return err; // already one of ours
    // The root may have been removed or replaced: set up again on the next write.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') this.ready = undefined;
    return new StorageUnavailableError(this.name, operation, key, err);
  }

  /**
   * A key that is not there: null, unless the storage directory itself is gone or is not a
   * directory, which is a failing store, not a missing object.
   */
  private async missing(operation: string, key: string): Promise<null> {
    let st;
    try {
      st = await fs.stat(this.root);
    } catch (err) {
      if (!isMissing(err)) throw this.failure(operation, key, err);
      this.ready = undefined;
      throw new StorageUnavailableError(this.name, operation, key, new Error(`${this.root} does not exist`), 'the storage directory is missing');
    }
    if (!st.isDirectory()) {
      this.ready = undefined;
      throw new StorageUnavailableError(this.name, operation, key, new Error(`${this.root} is not a directory`), 'the storage directory is not a directory');
    }
    return null;
  }
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

async function removeQuietly(p: string): Promise<void> {
  await fs.rm(p, { force: true }).catch(() => {});
}
