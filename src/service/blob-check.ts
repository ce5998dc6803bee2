// Checking bytes read from storage against the digest they are served under, cheaply enough to
// do on every read. The first read of a digest in this process is hashed with SHA-256 (the
// digest itself). The same bytes also get an AES-256-GMAC tag, under a key and nonce drawn at
// random when the process starts. The tag stays in memory, never stored or sent. Later reads of
// the digest are checked against that tag instead of rehashed:
// - GMAC runs at 8–20 GB/s here (carry-less multiply), SHA-256 at 1.1–2 GB/s, so a 100 MB read
//   costs about 10 ms of CPU instead of 60–90 ms;
// - the right bytes for a digest are the same in every stored copy or version (content
//   addressing), so one tag per digest serves them all;
// - without the key, bytes other than the checked ones pass with probability at most about
//   (their length / 16) / 2^128: a flipped bit, a torn write or a deliberate change all fail.
// `always` hashes every read with SHA-256 and keeps no tags.

import { createCipheriv, createHash, randomBytes, timingSafeEqual, type CipherGCM, type Hash } from 'node:crypto';
import { LruCache } from '../util/lru.js';

/** Tags remembered (16 bytes each, plus the key): about 20 MB at most. */
const TAGS = 100_000;

export class ReadChecks {
  private readonly key = randomBytes(32);
  private readonly nonce = randomBytes(12);
  private readonly tags = new LruCache<string, Buffer>(TAGS);

  /** `tags`: false to hash every read with SHA-256 (`NIXERY_BLOB_VERIFY=always`). */
  constructor(private readonly useTags: boolean) {}

  /** A check of one read of `digest`, fed its bytes in order. */
  start(digest: string): ReadCheck {
    const tag = this.useTags ? this.tags.get(digest) : undefined;
    return new ReadCheck(digest, tag, this.useTags ? this.gmac() : undefined, (t) => this.tags.set(digest, t));
  }

  /** Whether whole bytes are the digest's. */
  matches(digest: string, bytes: Buffer): boolean {
    const check = this.start(digest);
    check.update(bytes);
    return check.passed();
  }

  /** Whether a read of `digest` would be checked by its tag (not hashed). */
  tagged(digest: string): boolean {
    return this.useTags && this.tags.get(digest) !== undefined;
  }

  forget(digest: string): void {
    this.tags.delete(digest);
  }

  private gmac(): CipherGCM {
    return createCipheriv('aes-256-gcm', this.key, this.nonce);
  }
}

export class ReadCheck {
  private readonly sha: Hash | undefined;
  private done = false;

  constructor(
    private readonly digest: string,
    /** The tag of the digest's bytes, once they were hashed in this process. */
    private readonly tag: Buffer | undefined,
    /** Absent with `always`. */
    private readonly mac: CipherGCM | undefined,
    private readonly remember: (tag: Buffer) => void,
  ) {
    this.sha = tag ? undefined : createHash('sha256');
  }

  /** How this read is checked. */
  get kind(): 'sha256' | 'tag' {
    return this.sha ? 'sha256' : 'tag';
  }

  update(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.sha?.update(bytes);
    // Bytes fed as associated data only: GHASH without encrypting anything (chunking does not change the tag).
    this.mac?.setAAD(bytes);
  }

  /** Whether the bytes fed are the digest's (call once, after the last chunk). */
  passed(): boolean {
    if (this.done) throw new Error('a read check was finished twice');
    this.done = true;
    this.mac?.final();
    const tag = this.mac?.getAuthTag();
    if (this.sha) {
      const ok = `sha256:${this.sha.digest('hex')}` === this.digest;
      if (ok && tag) this.remember(tag);
      return ok;
    }
    return tag !== undefined && timingSafeEqual(tag, this.tag!);
  }
}
