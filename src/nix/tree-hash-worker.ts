// The worker thread of TreeHasher (tree-hash.ts): hashes trees on request and remembers file
// digests between requests.

import { parentPort } from 'node:worker_threads';
import { hashTreeSync, type Remembered } from './tree-hash.js';

let remembered = new Map<string, Remembered>();

parentPort!.on('message', ({ id, root }: { id: number; root: string }) => {
  try {
    const { remembered: next, ...result } = hashTreeSync(root, remembered);
    remembered = next;
    parentPort!.postMessage({ id, result });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ id, error: { message: e.message, code: e.code } });
  }
});
