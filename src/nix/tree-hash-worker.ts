// The worker thread of TreeHasher (tree-hash.ts): hashes trees on request and remembers file
// digests between requests (starting from those of the inline passes, when they come along).

import { parentPort } from 'node:worker_threads';
import { hashTreeSync, type Remembered } from './tree-hash.js';

let remembered = new Map<string, Remembered>();

parentPort!.on('message', ({ id, root, remembered: handedOver }: { id: number; root: string; remembered?: Map<string, Remembered> }) => {
  try {
    if (handedOver) remembered = handedOver;
    const { remembered: next, ...result } = hashTreeSync(root, remembered);
    remembered = next;
    parentPort!.postMessage({ id, result });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ id, error: { message: e.message, code: e.code } });
  }
});
