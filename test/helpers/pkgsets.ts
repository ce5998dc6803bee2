// Package sets for tests that need more than the example set: the example set plus packages
// the test describes (a layer larger than the in-memory limits, say), written to a temp dir.

import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EXAMPLE_PKGS } from './nix.js';

export interface TestPackageSet {
  dir: string;
  cleanup(): Promise<void>;
}

/** Incompressible, reproducible bytes (a sha256 chain), so gzip cannot shrink the layer. */
export function noise(bytes: number, seed = 'nixery'): Buffer {
  const out = Buffer.alloc(bytes);
  let block = createHash('sha256').update(seed).digest();
  for (let at = 0; at < bytes; at += block.length) {
    block.copy(out, at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/**
 * The example set plus `big`: a package holding `bigBytes` of noise (its layer is about that
 * size compressed).
 */
export async function packageSetWithBigFile(bigBytes: number): Promise<TestPackageSet> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-pkgs-'));
  await writeFile(path.join(dir, 'big.bin'), noise(bigBytes));
  await writeFile(
    path.join(dir, 'default.nix'),
    `{ system ? builtins.currentSystem, ... }@args:
let base = import ${EXAMPLE_PKGS} args;
in base // {
  big = derivation {
    name = "big-1.0";
    system = builtins.currentSystem;
    builder = "\${base.busybox}/bin/sh";
    args = [ "-e" "-c" "mkdir -p $out/share && cp \${./big.bin} $out/share/big.bin" ];
    PATH = "\${base.busybox}/bin";
  };
}
`,
  );
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
