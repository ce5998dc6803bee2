// A storage round trip for readiness checks: write, read back and delete a small probe object
// under `probes/` (which nothing else uses), so a full disk, a read-only store or an object store
// that refuses writes shows up before a client's build does.

import { randomUUID } from 'node:crypto';
import { StorageUnavailableError } from './errors.js';
import type { Storage } from './storage.js';

export async function probeStorage(storage: Storage): Promise<void> {
  const key = `probes/${randomUUID()}`;
  const body = `probe ${key}`;
  await storage.put(key, body, { contentType: 'text/plain' });
  try {
    const back = await storage.read(key);
    if (back?.toString() !== body) throw new StorageUnavailableError(storage.name, 'probe', key, new Error('the probe object read back differs'), 'the storage returned other bytes than were written');
  } finally {
    await storage.delete(key).catch(() => {});
  }
}
