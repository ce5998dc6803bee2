// Store paths → tar entries. The walk never follows symlinks, the entries come out sorted by
// full path, and files with identical content (and mode) become hard links to the first one, so
// the archive is a pure function of the store paths' contents, whether or not the store was
// optimised (hard-linked) on this machine.

import { createHash } from 'node:crypto';
import { constants as fsConstants, type BigIntStats } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { ArchiveError } from './errors.js';
import { Semaphore } from '../util/semaphore.js';
import { displayPath, type TarEntry } from './tar.js';

export interface StorePathOptions {
  /**
   * Directory the store paths are read under (default: none, i.e. `/`). With `/tmp/x`, the
   * store path `/nix/store/abc-foo` is read from `/tmp/x/nix/store/abc-foo` but named
   * `nix/store/abc-foo` in the archive. Tests use it for fake stores.
   */
  storeRoot?: string;
  signal?: AbortSignal;
}

/** Mode of the parent directories (`/nix`, `/nix/store`) written before the store paths. */
export const PARENT_DIRECTORY_MODE = 0o755;
/** How many file-system calls the walk keeps in flight. */
const WALK_CONCURRENCY = 32;
const HASH_CONCURRENCY = 4;
const HASH_BLOCK = 1024 * 1024;

interface Walked {
  /** Archive name bytes, no leading slash. */
  name: Buffer;
  /** Where to read it. */
  fsPath: Buffer;
  stat: BigIntStats;
  target?: Buffer;
}

const SLASH = Buffer.from('/');

function join(a: Buffer, b: Buffer): Buffer {
  return Buffer.concat([a, SLASH, b]);
}

/** Checks and normalises a store path: absolute, no `.`/`..`/empty components. */
function parseStorePath(path: string): string {
  if (typeof path !== 'string' || !path.startsWith('/')) throw new ArchiveError(`store path ${JSON.stringify(path)} is not absolute`);
  const parts = path.split('/').slice(1);
  if (parts.length === 0 || parts.some((p) => p === '' || p === '.' || p === '..') || path.includes('\0')) {
    throw new ArchiveError(`invalid store path ${JSON.stringify(path)}`);
  }
  return parts.join('/');
}

/**
 * Lists the entries of a layer made of `paths`: parent directories (0755) first, then every file,
 * directory and symlink of every store path, sorted by full path (byte order). Sockets, FIFOs and
 * devices are skipped. Identical regular files (same mode, size > 0, same content) after the
 * first become hard links to it.
 */
export async function storePathEntries(paths: readonly string[], options: StorePathOptions = {}): Promise<TarEntry[]> {
  const root = options.storeRoot ? options.storeRoot.replace(/\/+$/, '') : '';
  const names = [...new Set(paths.map(parseStorePath))];
  const limiter = new Semaphore(WALK_CONCURRENCY);
  const walked: Walked[] = [];

  const visit = async (name: Buffer, fsPath: Buffer): Promise<void> => {
    options.signal?.throwIfAborted();
    const stat = await limiter.use(() => lstat(fsPath, { bigint: true }));
    if (stat.isSymbolicLink()) {
      const target = await limiter.use(() => readlink(fsPath, { encoding: 'buffer' }));
      walked.push({ name, fsPath, stat, target });
    } else if (stat.isFile()) {
      walked.push({ name, fsPath, stat });
    } else if (stat.isDirectory()) {
      walked.push({ name, fsPath, stat });
      const children = await limiter.use(() => readdir(fsPath, { encoding: 'buffer' }));
      await Promise.all(children.map((child) => visit(join(name, child), join(fsPath, child))));
    }
    // Sockets, FIFOs and devices: nothing is written (Nix stores have none).
  };

  await Promise.all(
    names.map(async (name) => {
      const fsPath = Buffer.from(`${root}/${name}`);
      try {
        await visit(Buffer.from(name), fsPath);
      } catch (err) {
        if (err instanceof ArchiveError || (err as Error).name === 'AbortError') throw err;
        throw new ArchiveError(`cannot read store path /${name}: ${(err as Error).message}`, { path: `/${name}`, cause: err });
      }
    }),
  );

  const parents = new Set<string>();
  for (const name of names) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) parents.add(parts.slice(0, i).join('/'));
  }
  for (const name of names) parents.delete(name);

  const byName = new Map<string, Walked>();
  for (const w of walked) byName.set(w.name.toString('latin1'), w); // overlapping store paths: one entry each
  const sorted = [...byName.values()].sort((a, b) => Buffer.compare(a.name, b.name));

  const links = await findHardLinks(sorted, options.signal);
  const entries: TarEntry[] = [...parents].map((p) => Buffer.from(p)).sort(Buffer.compare).map((p) => ({ type: 'directory', path: p, mode: PARENT_DIRECTORY_MODE }));
  for (const w of sorted) {
    const mode = Number(w.stat.mode) & 0o7777;
    if (w.stat.isDirectory()) entries.push({ type: 'directory', path: w.name, mode });
    else if (w.stat.isSymbolicLink()) entries.push({ type: 'symlink', path: w.name, target: w.target! });
    else {
      const first = links.get(w);
      if (first) entries.push({ type: 'hardlink', path: w.name, target: first.name, mode });
      else entries.push({ type: 'file', path: w.name, mode, size: Number(w.stat.size), source: { file: w.fsPath } });
    }
  }
  // Parents sort before their children anyway; one final sort keeps the invariant obvious.
  return entries.sort((a, b) => compareNames(a, b));
}

function compareNames(a: TarEntry, b: TarEntry): number {
  return Buffer.compare(asBuffer(a.path), asBuffer(b.path));
}

function asBuffer(p: string | Buffer): Buffer {
  return typeof p === 'string' ? Buffer.from(p) : p;
}

/**
 * Maps each regular file that duplicates an earlier one (same mode and size > 0, and the same
 * inode or the same content) to that first file.
 */
async function findHardLinks(sorted: Walked[], signal?: AbortSignal): Promise<Map<Walked, Walked>> {
  const groups = new Map<string, Walked[]>();
  for (const w of sorted) {
    if (!w.stat.isFile() || w.stat.size === 0n) continue;
    const key = `${w.stat.size}:${Number(w.stat.mode) & 0o7777}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = []));
    group.push(w);
  }

  const links = new Map<Walked, Walked>();
  const limiter = new Semaphore(HASH_CONCURRENCY);
  await Promise.all(
    [...groups.values()]
      .filter((g) => g.length > 1)
      .map(async (group) => {
        // The same inode proves identical content; only distinct inodes need hashing.
        const byInode = new Map<string, Walked>();
        for (const w of group) {
          const inode = `${w.stat.dev}:${w.stat.ino}`;
          const first = byInode.get(inode);
          if (first) links.set(w, first);
          else byInode.set(inode, w);
        }
        const distinct = [...byInode.values()];
        if (distinct.length < 2) return;
        const hashes = await Promise.all(distinct.map((w) => limiter.use(() => hashFile(w, signal))));
        const byContent = new Map<string, Walked>();
        distinct.forEach((w, i) => {
          const first = byContent.get(hashes[i]!);
          if (first) links.set(w, first);
          else byContent.set(hashes[i]!, w);
        });
        // A file linked (by inode) to a file that is itself a content duplicate: point at the root.
        for (const w of group) {
          const viaInode = links.get(w);
          if (viaInode && links.has(viaInode)) links.set(w, links.get(viaInode)!);
        }
      }),
  );
  return links;
}

async function hashFile(w: Walked, signal?: AbortSignal): Promise<string> {
  signal?.throwIfAborted();
  const hash = createHash('sha256');
  let handle;
  try {
    handle = await open(w.fsPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (err) {
    throw new ArchiveError(`cannot read ${displayPath(w.fsPath)}: ${(err as Error).message}`, { path: displayPath(w.fsPath), cause: err });
  }
  try {
    const block = Buffer.allocUnsafe(Math.min(HASH_BLOCK, Number(w.stat.size)));
    let position = 0;
    for (;;) {
      const { bytesRead } = await handle.read(block, 0, block.length, position);
      if (bytesRead === 0) break;
      hash.update(block.subarray(0, bytesRead));
      position += bytesRead;
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}
