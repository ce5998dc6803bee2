// Basic authentication against an htpasswd file with bcrypt entries, as `htpasswd -B` writes
// them (`user:$2y$05$…`). Other hash formats (MD5, SHA1, crypt, plain) are refused at startup:
// they are too weak to put in front of a build service.
// bcrypt runs in libuv's thread pool (@node-rs/bcrypt, native), never on the event loop: a
// burst of wrong passwords must not stall pulls or health probes.

import { readFile } from 'node:fs/promises';
import { hashSync, parseOptions, verify } from '@node-rs/bcrypt';
import { ConfigError } from '../errors.js';
import { Semaphore } from '../util/semaphore.js';

const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
/**
 * bcrypt runs one at a time: it takes at most one core, and the thread pool (4 threads) also reads
 * files for blob pulls, which must not wait behind a burst of password guesses.
 */
const CONCURRENT_VERIFICATIONS = 1;

export class Htpasswd {
  /**
   * Compared against when the user does not exist, at the file's highest cost, so an unknown
   * user costs what a known one does and the time tells nothing.
   */
  private readonly noSuchUser: string;
  private readonly slots = new Semaphore(CONCURRENT_VERIFICATIONS, 10_000);

  private constructor(private readonly hashes: ReadonlyMap<string, string>) {
    const cost = Math.max(...[...hashes.values()].map((h) => parseOptions(h).cost));
    this.noSuchUser = hashSync('nixery: no such user', { cost });
  }

  /** Reads the file; one clear ConfigError (naming the line, never its content) when it is unusable. */
  static async load(file: string): Promise<Htpasswd> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`invalid NIXERY_HTPASSWD: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    return Htpasswd.parse(text, file);
  }

  static parse(text: string, file = 'the htpasswd file'): Htpasswd {
    const hashes = new Map<string, string>();
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const colon = line.indexOf(':');
      const user = colon > 0 ? line.slice(0, colon) : '';
      const hash = colon > 0 ? line.slice(colon + 1) : '';
      if (!user || !BCRYPT.test(hash)) {
        throw new ConfigError(`invalid NIXERY_HTPASSWD: line ${i + 1} of ${file} is not user:bcrypt-hash (create entries with htpasswd -B)`);
      }
      hashes.set(user, hash);
    });
    if (hashes.size === 0) throw new ConfigError(`invalid NIXERY_HTPASSWD: ${file} has no users`);
    return new Htpasswd(hashes);
  }

  get users(): number {
    return this.hashes.size;
  }

  /** Whether `password` is `user`'s (bcrypt in the thread pool; an unknown user costs the same). */
  async verify(user: string, password: string): Promise<boolean> {
    const hash = this.hashes.get(user);
    const ok = await this.slots.use(() => verify(password, hash ?? this.noSuchUser));
    return ok && hash !== undefined;
  }
}
