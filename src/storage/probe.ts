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
 * Whether the storage honours conditional writes (storage.ts, ConditionalWrites): a probe object
 * is created, created again, replaced and deleted on versions old and current. False when a
 * condition that must fail succeeded (a server that ignores If-None-Match, such as s3rver); a
 * storage that fails outright throws.
 */
export async function conditionalWritesHonoured(storage: Storage): Promise<boolean> {
  const key = `probes/conditional-${randomUUID()}`;
  try {
    const first = await storage.createIfAbsent(key, 'first');
    if (!first) return false; // a fresh key: only a broken condition refuses it
    if (await storage.createIfAbsent(key, 'second')) return false;
    const second = await storage.replaceIfVersion(key, 'second', first);
    if (!second || second === first) return false;
    if (await storage.replaceIfVersion(key, 'third', first)) return false;
    if (await storage.deleteIfVersion(key, first)) return false;
    const back = await storage.readVersioned(key);
    if (back?.data.toString() !== 'second' || back.version !== second) return false;
    return await storage.deleteIfVersion(key, second);
  } finally {
    await storage.delete(key).catch(() => {});
  }
}
