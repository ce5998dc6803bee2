// Package lists for search tests and benchmarks: generated, nixpkgs-shaped, in memory (no Nix).

import type { PackageInfo } from '../../src/nix/packages.js';

const WORDS = ['fast', 'small', 'library', 'tool', 'server', 'client', 'parser', 'compiler', 'bindings', 'utilities', 'framework', 'daemon'];

/** The same shape as bench/packages.ts's generated sets: 70 % top level, 30 % in four nested sets. */
export function generatedPackages(n: number): PackageInfo[] {
  const out: PackageInfo[] = [];
  for (let i = 0; i < n; i++) {
    const nested = i >= n * 0.7;
    const prefix = nested ? `py${i % 4}-` : 'pkg';
    const attr = nested ? `set${i % 4}Packages.${prefix}${i}` : `${prefix}${i}`;
    const version = `${Math.floor(i / 100)}.${i % 100}`;
    out.push({
      attr,
      name: `${prefix}${i}-${version}`,
      pname: `${prefix}${i}`,
      version,
      description: `A ${WORDS[i % 12]} ${WORDS[Math.floor(i / 7) % 12]} for ${WORDS[Math.floor(i / 13) % 12]} number ${i}, generated for the benchmark`,
    });
  }
  return out;
}

/** One-letter words that every package has (so no package is ruled out early): the worst case. */
export function longQuery(words: number): string {
  const letters = 'aeorntilsdfgbcmpu';
  return Array.from({ length: words }, (_, i) => letters[i % letters.length]!.repeat(1 + Math.floor(i / letters.length))).join(' ');
}

