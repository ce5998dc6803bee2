// The content identity of a local package set that is not a git checkout: a hash over relative
// paths (code-unit order), file types, the executable bit, sizes, file contents and link targets;
// `.git` is skipped. It changes whenever anything Nix could read changes and is the same on any
// machine for the same files.
//
// Reading a nixpkgs-sized tree takes many seconds, so a TreeHasher remembers each file's digest
// with what identifies the version it read (device, inode, size, modification and change times,
// as git's index does): the next pass stats every file but reads only those that changed. A file
// modified within RACY_MS of being read may change again within the same timestamp tick, so its
// digest is not remembered and it is read again next time.

import { createHash } from 'node:crypto';
import { createReadStream, type BigIntStats, type Dirent } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { compareStrings } from '../image/name.js';

/** Coarsest file timestamp granularity we allow for (FAT has 2 s). */
const RACY_MS = 2000;
/** Files stat'ed at once within one directory. */
const STAT_CONCURRENCY = 32;

interface Remembered {
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
}

export class TreeHasher {
  private remembered = new Map<string, Remembered>();

  async hash(root: string): Promise<TreeHashResult> {
    const hash = createHash('sha256');
    const field = (s: string): void => {
      hash.update(s);
      hash.update('\0');
    };
    const next = new Map<string, Remembered>();
    let files = 0;
    let bytesRead = 0;

    const fileDigest = async (abs: string, rel: string, st: BigIntStats): Promise<string> => {
      const known = this.remembered.get(rel);
      if (known && known.dev === st.dev && known.ino === st.ino && known.size === st.size && known.mtimeNs === st.mtimeNs && known.ctimeNs === st.ctimeNs) {
        next.set(rel, known);
        return known.digest;
      }
      const startedNs = BigInt(Date.now()) * 1_000_000n;
      const h = createHash('sha256');
      for await (const chunk of createReadStream(abs)) h.update(chunk as Buffer);
      const digest = h.digest('hex');
      bytesRead += Number(st.size);
      const racyNs = BigInt(RACY_MS) * 1_000_000n;
      if (st.mtimeNs < startedNs - racyNs && st.ctimeNs < startedNs - racyNs) {
        next.set(rel, { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, digest });
      }
      return digest;
    };

    const visit = async (abs: string, rel: string, st: BigIntStats): Promise<void> => {
      if (st.isSymbolicLink()) {
        field('symlink');
        field(rel);
        field(await readlink(abs));
      } else if (st.isDirectory()) {
        field('directory');
        field(rel);
        const entries = (await readdir(abs, { withFileTypes: true })).filter((d: Dirent) => d.name !== '.git').sort((a, b) => compareStrings(a.name, b.name));
        // Stat a batch at once (the thread pool works on them together), then hash in order.
        for (let at = 0; at < entries.length; at += STAT_CONCURRENCY) {
          const batch = entries.slice(at, at + STAT_CONCURRENCY);
          const stats = await Promise.all(batch.map((d) => lstat(join(abs, d.name), { bigint: true })));
          for (let i = 0; i < batch.length; i++) {
            const name = batch[i]!.name;
            await visit(join(abs, name), rel === '' ? name : `${rel}/${name}`, stats[i]!);
          }
        }
      } else if (st.isFile()) {
        files++;
        const digest = await fileDigest(abs, rel, st);
        field((st.mode & 0o100n) !== 0n ? 'executable' : 'regular');
        field(rel);
        field(String(st.size));
        field(digest);
      } else {
        field('other');
        field(rel);
      }
    };
    await visit(root, '', await lstat(root, { bigint: true }));
    this.remembered = next;
    return { digest: hash.digest('hex'), files, bytesRead };
  }
}

/** A one-off content hash of a tree (hex SHA-256), as TreeHasher computes it. */
export async function hashTree(root: string): Promise<string> {
  return (await new TreeHasher().hash(root)).digest;
}
