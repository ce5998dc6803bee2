// Conditional writes on the filesystem backend (see ConditionalWrites in storage.ts), atomic
// between processes on one filesystem (NFS included, where link and rename are atomic):
//   - create: the bytes go to a temporary file, which is hard-linked to the key's path; link
//     fails with EEXIST if anything is there, so exactly one creator wins and readers never
//     see a partial object (an O_EXCL create would show the file before its bytes);
//   - replace and delete: the current file is renamed away to a name of our own (of concurrent
//     renames only one gets it), compared with the expected version, and then the new file is
//     linked in (or nothing, for delete). A file that was not the expected version is linked back
//     unchanged (same inode and mtime, so the same version).
// A version is the file's inode and mtime: every write makes a new file.
// A process killed half-way leaves the key absent (the next create wins) and a temporary file
// named after it, which `removeAbandonedTemporaries` removes.

import type { BigIntStats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { VersionedObject } from './storage.js';

/** What the conditional writes need of FilesystemStorage. */
export interface FilesystemPaths {
  /** Where an object's bytes are. */
  dataPath(key: string): string;
  /** A new temporary file name in the storage's own temporary directory (named after this process). */
  tempPath(): string;
  fsync: boolean;
}

export function fileVersion(st: BigIntStats): string {
  return `${st.ino}-${st.mtimeNs}`;
}

export async function createIfAbsent(paths: FilesystemPaths, key: string, data: Buffer | string): Promise<string | null> {
  const tmp = await writeTemporary(paths, data);
  try {
    const target = paths.dataPath(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const version = fileVersion(await fs.stat(tmp, { bigint: true }));
    return (await linkUnlessPresent(tmp, target)) ? version : null;
  } finally {
    await removeQuietly(tmp);
  }
}

export async function replaceIfVersion(paths: FilesystemPaths, key: string, data: Buffer | string, version: string): Promise<string | null> {
  const target = paths.dataPath(key);
  // Cheap first look: a version that already differs is not taken away from its holder at all.
  if ((await currentVersion(target)) !== version) return null;
  const tmp = await writeTemporary(paths, data);
  try {
    const newVersion = fileVersion(await fs.stat(tmp, { bigint: true }));
    if (!(await takeIfVersion(paths, target, version))) return null;
    // Absent now: a create by someone else in between wins, and this replace lost.
    return (await linkUnlessPresent(tmp, target)) ? newVersion : null;
  } finally {
    await removeQuietly(tmp);
  }
}

export async function deleteIfVersion(paths: FilesystemPaths, key: string, version: string): Promise<boolean> {
  const target = paths.dataPath(key);
  if ((await currentVersion(target)) !== version) return false;
  return takeIfVersion(paths, target, version);
}

export async function readVersioned(file: string): Promise<VersionedObject | null> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) return null;
    return { data: await fh.readFile(), version: fileVersion(st) };
  } finally {
    await fh.close();
  }
}

/**
 * Moves `target` away if it is `version` (true: it is gone), else leaves it as it was (false).
 * Only one of concurrent callers gets the file; the others find it absent.
 */
async function takeIfVersion(paths: FilesystemPaths, target: string, version: string): Promise<boolean> {
  const taken = paths.tempPath();
  try {
    await fs.rename(target, taken);
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
  try {
    if (fileVersion(await fs.stat(taken, { bigint: true })) === version) return true;
    // Not the version asked for: back where it was, unless a new object appeared meanwhile.
    await linkUnlessPresent(taken, target);
    return false;
  } finally {
    await removeQuietly(taken);
  }
}

async function currentVersion(file: string): Promise<string | null> {
  try {
    return fileVersion(await fs.stat(file, { bigint: true }));
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

async function writeTemporary(paths: FilesystemPaths, data: Buffer | string): Promise<string> {
  const tmp = paths.tempPath();
  try {
    const fh = await fs.open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
      if (paths.fsync) await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    await removeQuietly(tmp);
    throw err;
  }
  return tmp;
}

/** Hard-links `from` at `to`: false when something is already there. */
async function linkUnlessPresent(from: string, to: string): Promise<boolean> {
  try {
    await fs.link(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

async function removeQuietly(p: string): Promise<void> {
  await fs.rm(p, { force: true }).catch(() => {});
}
