// Popularity of the packages of a set: for each derivation output, how many of the set's
// packages use it as a direct input. Read from the .drv graph, so nothing is built.

import { mapLimit } from '../util/semaphore.js';
import { NixOutputError } from '../errors.js';
import { readFile } from 'node:fs/promises';
import { compareStrings } from '../image/name.js';
import { packageFromPath } from './closure.js';
import { POPCOUNT_EXPRESSION } from './expressions.js';
import type { NixCallOptions } from './resolve.js';
import { sourceArgs } from './resolve.js';
import { runNix } from './run.js';
import type { PinnedSource } from './source.js';

/**
 * `{ "<name>": count }` with keys sorted by code unit, where name is an output's store path
 * without `/nix/store/<hash>-` (e.g. `zlib-1.3.1`, `jq-1.7.1-bin`, the key Nixery's layering
 * looks up) and count = how many packages of the set (top level, and sets with
 * `recurseForDerivations`) have that output among their direct inputs. Every count is ≥ 1:
 * unlike Nixery's narinfo counting there are no self-references to discount, so a package
 * used once is kept. Outputs of the same name from different derivations are added up.
 * One Nix evaluation (limited by `opts.timeoutMs`, NIXERY_EVAL_TIMEOUT); the .drv files are then
 * read directly.
 */
export async function popcount(pinned: PinnedSource, system: string, opts: NixCallOptions): Promise<Record<string, number>> {
  const { stdout } = await runNix(
    'nix-instantiate',
    ['--eval', '--strict', '--json', '--read-write-mode', ...sourceArgs(pinned, system), '--expr', POPCOUNT_EXPRESSION],
    { timeoutMs: opts.timeoutMs, timeoutKind: 'EVAL_TIMEOUT', command: 'popcount', what: 'listing the packages of the set', signal: opts.signal, env: opts.env, observer: opts.observer },
  );
  const drvPaths = JSON.parse(stdout) as string[];
  return countReferences(drvPaths, readDerivation);
}

/** Counts, over `packages`, the outputs of their input derivations (see popcount). */
export async function countReferences(
  packages: readonly string[],
  read: (drvPath: string) => Promise<Derivation>,
): Promise<Record<string, number>> {
  const cache = new Map<string, Promise<Derivation>>();
  const load = (p: string): Promise<Derivation> => {
    let d = cache.get(p);
    if (!d) {
      d = read(p);
      cache.set(p, d);
    }
    return d;
  };
  const counts = new Map<string, number>();
  await mapLimit([...new Set(packages)], 32, async (drvPath) => {
    const drv = await load(drvPath);
    const used = new Set<string>();
    for (const [input, outputNames] of drv.inputDrvs) {
      const inputDrv = await load(input);
      for (const name of outputNames) {
        const path = inputDrv.outputs.get(name);
        // Content-addressed outputs have no path in the .drv: fall back to the derivation's name.
        used.add(path ? packageFromPath(path) : `${packageFromPath(input).replace(/\.drv$/, '')}${name === 'out' ? '' : `-${name}`}`);
      }
    }
    for (const name of used) counts.set(name, (counts.get(name) ?? 0) + 1);
  });
  const result: Record<string, number> = {};
  for (const name of [...counts.keys()].sort(compareStrings)) result[name] = counts.get(name)!;
  return result;
}

/** What popcount needs from a .drv file. */
export interface Derivation {
  /** Output name → store path ("" for content-addressed outputs). */
  outputs: Map<string, string>;
  /** Input .drv path → the output names used. */
  inputDrvs: [string, string[]][];
}

export async function readDerivation(drvPath: string): Promise<Derivation> {
  return parseDerivation(await readFile(drvPath, 'utf8'));
}

type ATerm = string | ATerm[] | { ctor: string; args: ATerm[] };

/**
 * Parses a .drv file (ATerm: `Derive([outputs],[inputDrvs],[inputSrcs],system,builder,[args],[env])`;
 * `DrvWithVersion("…", …)` of newer Nix shifts the fields by one).
 */
export function parseDerivation(text: string): Derivation {
  const term = new ATermParser(text).parseTop();
  if (typeof term !== 'object' || Array.isArray(term)) throw new NixOutputError('not a derivation');
  const fields = term.ctor === 'DrvWithVersion' ? term.args.slice(1) : term.args;
  if (term.ctor !== 'Derive' && term.ctor !== 'DrvWithVersion') throw new NixOutputError(`not a derivation: ${term.ctor}`);
  const [outs, inputs] = fields as [ATerm[][], ATerm[][]];
  const outputs = new Map<string, string>();
  for (const o of outs) outputs.set(o[0] as string, o[1] as string);
  const inputDrvs: [string, string[]][] = [];
  for (const i of inputs) {
    const spec = i[1]!;
    // Newer format: (["out"], [dynamic outputs]) instead of ["out"].
    const names = (Array.isArray(spec) && spec.every((s) => typeof s === 'string') ? spec : (spec as ATerm[])[0]) as string[];
    inputDrvs.push([i[0] as string, names]);
  }
  return { outputs, inputDrvs };
}

class ATermParser {
  private pos = 0;
  constructor(private readonly s: string) {}

  parseTop(): ATerm {
    return this.parse();
  }

  private parse(): ATerm {
    const c = this.s[this.pos];
    if (c === '"') return this.parseString();
    if (c === '[') return this.parseSeq('[', ']');
    if (c === '(') return this.parseSeq('(', ')');
    const m = /^[A-Za-z]+/.exec(this.s.slice(this.pos, this.pos + 32));
    if (!m) throw new NixOutputError(`bad derivation at offset ${this.pos}`);
    this.pos += m[0].length;
    return { ctor: m[0], args: this.parseSeq('(', ')') };
  }

  private parseSeq(open: string, close: string): ATerm[] {
    this.expect(open);
    const items: ATerm[] = [];
    if (this.s[this.pos] === close) {
      this.pos++;
      return items;
    }
    for (;;) {
      items.push(this.parse());
      const c = this.s[this.pos++];
      if (c === close) return items;
      if (c !== ',') throw new NixOutputError(`bad derivation at offset ${this.pos - 1}`);
    }
  }

  private parseString(): string {
    this.expect('"');
    let out = '';
    let start = this.pos;
    for (;;) {
      const c = this.s[this.pos];
      if (c === undefined) throw new NixOutputError('unterminated string in derivation');
      if (c === '"') {
        out += this.s.slice(start, this.pos);
        this.pos++;
        return out;
      }
      if (c === '\\') {
        out += this.s.slice(start, this.pos);
        const e = this.s[this.pos + 1];
        out += e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : (e ?? '');
        this.pos += 2;
        start = this.pos;
        continue;
      }
      this.pos++;
    }
  }

  private expect(c: string): void {
    if (this.s[this.pos] !== c) throw new NixOutputError(`bad derivation at offset ${this.pos}: expected ${c}`);
    this.pos++;
  }
}
