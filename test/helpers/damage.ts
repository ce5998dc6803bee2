// Damaging stored files for real, as a failing disk would: in place, keeping the size.

import { open } from 'node:fs/promises';

/** Flips the low bit of one byte of a file in place (by default the middle one). */
export async function flipByteInFile(file: string, at?: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const offset = at ?? Math.floor((await fh.stat()).size / 2);
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, offset);
    one[0] = one[0]! ^ 0x01;
    await fh.write(one, 0, 1, offset);
  } finally {
    await fh.close();
  }
}
