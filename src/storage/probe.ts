// A storage round trip for readiness checks: write, read back and delete a small probe object
// under `probes/` (which nothing else uses), so a full disk, a read-only store or an object store
// that refuses writes shows up before a client's build does. Then what pulls read (the caller
// names the prefix): its first object is listed and its first byte read, so objects that cannot be
// listed or read (a directory without permissions, a broken mount) take the replica out of rotation.

import { randomUUID } from 'node:crypto';
import { StorageUnavailableError } from './errors.js';
import type { Storage } from './storage.js';

export async function probeStorage(storage: Storage, readPrefix?: string): Promise<void> {
  const key = `probes/${randomUUID()}`;
  const body = `probe ${key}`;
  await storage.put(key, body, { contentType: 'text/plain' });
  try {
    const back = await storage.read(key);
    if (back?.toString() !== body) throw new StorageUnavailableError(storage.name, 'probe', key, new Error('the probe object read back differs'), 'the storage returned other bytes than were written');
  } finally {
    await storage.delete(key).catch(() => {});
  }
  if (readPrefix !== undefined) await probeRead(storage, readPrefix);
}

/** Lists `prefix` up to its first object and reads that object's first byte (none yet: fine). */
async function probeRead(storage: Storage, prefix: string): Promise<void> {
  let first: string | undefined;
  for await (const info of storage.list(prefix)) {
    if (info.size > 0) {
      first = info.key;
      break;
    }
  }
  if (first === undefined) return;
  const stream = await storage.get(first, { start: 0, end: 0 });
  // Gone meanwhile (collected): the listing worked, which is what the probe asks.
  if (!stream) return;
  for await (const chunk of stream) void chunk;
}

/**
 * Which conditional writes the storage honours (storage.ts, ConditionalWrites): a probe object is
 * created, created again, replaced and deleted on versions old and current.
 * - `all`: create, replace and delete;
 * - `no-delete`: create and replace, but a delete on a stale version went through or a delete on
 *   the current one was refused (Ceph RGW 16 ignores If-Match on DELETE);
 * - `none`: a create or replace condition that must fail succeeded (s3rver ignores them all).
 * A storage that fails outright throws.
 */
export async function conditionalWriteSupport(storage: Storage): Promise<'all' | 'no-delete' | 'none'> {
  const key = `probes/conditional-${randomUUID()}`;
  try {
    const first = await storage.createIfAbsent(key, 'first');
    if (!first) return 'none'; // a fresh key: only a broken condition refuses it
    if (await storage.createIfAbsent(key, 'second')) return 'none';
    const second = await storage.replaceIfVersion(key, 'second', first);
    if (!second || second === first) return 'none';
    if (await storage.replaceIfVersion(key, 'third', first)) return 'none';
    const back = await storage.readVersioned(key);
    if (back?.data.toString() !== 'second' || back.version !== second) return 'none';
    if (await storage.deleteIfVersion(key, first)) return 'no-delete';
    return (await storage.deleteIfVersion(key, second)) ? 'all' : 'no-delete';
  } finally {
    await storage.delete(key).catch(() => {});
  }
}
