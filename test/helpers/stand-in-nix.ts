// A stand-in for the builder's Nix stage (src/builder/nix-stage.ts): it resolves names in a
// package catalogue of its own, "realises" them by writing real files under a store directory
// of its own, and reports their closure with real references and sizes. Everything after it is
// the production pipeline: the real builder packs those files into gzip'd tar layers, writes the
// config and manifests, and stores them in the real storage backend. So registry and API tests
// run in-process, without Nix, on blobs that any client can take.
//
// Deterministic: a package's store path is a hash of its files, references and system; its files
// get Nix's modes (0444 / 0555, directories 0555), so the same catalogue gives the same digests in
// every run and on every machine.

import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { NixStage } from '../../src/builder/nix-stage.js';
import type { ClosureGraph, ResolvedPackage, StorePathInfo } from '../../src/nix/types.js';
import type { PinnedSource } from '../../src/nix/source.js';
import type { ResolveOptions } from '../../src/nix/resolve-packages.js';
import { NixFailedError, PackagesNotFoundError } from '../../src/errors.js';
import { splitNameVersion } from '../../src/sbom/model.js';

/** A file of a package: text or bytes (0444), an executable script (0555), or a symlink. */
export type StandInFile = string | Buffer | { executable: string } | { symlink: string };

export interface StandInPackage {
  /** The store path's name, e.g. `hello-2.12.1`. */
  name: string;
  /** Relative path → file. */
  files: Record<string, StandInFile>;
  /** Attribute paths (catalogue keys) of the packages it refers to at run time. */
  deps?: string[];
  /** Realising it fails with this as Nix's stderr (a broken build)… */
  fails?: string;
  /** …on these systems only (default: on every one). */
  failsOn?: string[];
  /** Realising it takes this long (a build that takes time). */
  buildMs?: number;
  /** SPDX ids of its meta.license (what SBOMs carry). */
  licenses?: string[];
  /** `meta.mainProgram`, as the real resolver reports it. */
  mainProgram?: string;
}

export type Catalogue = Record<string, StandInPackage>;

const script = (body: string): StandInFile => ({ executable: `#!/bin/sh\n${body}\n` });

/** `n` bytes that do not compress (a SHA-256 chain): layers bigger than a read chunk. */
export function incompressible(n: number, seed = 'nixery-stand-in'): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(seed).digest();
  for (let i = 0; i < n; i += block.length) {
    block.copy(out, i);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** Names and shapes after the example package set (examples/pkgs), small. */
const PACKAGES: Catalogue = {
  hello: { name: 'hello-2.12.1', mainProgram: 'hello', licenses: ['GPL-3.0-or-later'], files: { 'bin/hello': script("echo 'Hello, world!'"), 'share/doc/hello/README': 'GNU Hello, a stand-in\n' } },
  busybox: { name: 'busybox-static', files: { 'bin/busybox': script('echo busybox'), 'bin/sh': { symlink: 'busybox' }, 'bin/ls': { symlink: 'busybox' } } },
  bashInteractive: { name: 'bash-interactive-5.2p32', files: { 'bin/bash': script('exec sh "$@"') }, deps: ['ncurses'] },
  coreutils: { name: 'coreutils-9.5', files: { 'bin/cat': script('exec busybox cat "$@"'), 'bin/echo': script('exec busybox echo "$@"') }, deps: ['busybox'] },
  moreutils: { name: 'moreutils-0.69', files: { 'bin/sponge': script('cat > "$1"') }, deps: ['perl'] },
  nano: { name: 'nano-8.1', files: { 'bin/nano': script('exec vi "$@"') }, deps: ['busybox'] },
  cacert: { name: 'nss-cacert-3.101', files: { 'etc/ssl/certs/ca-bundle.crt': '-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n' } },
  'iana-etc': { name: 'iana-etc-20240318', files: { 'etc/protocols': 'ip 0 IP\ntcp 6 TCP\n', 'etc/services': 'http 80/tcp\n' } },
  zlib: { name: 'zlib-1.3.1', files: { 'lib/libz.so': 'zlib stand-in\n'.repeat(64) } },
  libffi: { name: 'libffi-3.4.6', files: { 'lib/libffi.so': 'libffi stand-in\n'.repeat(64) } },
  ncurses: { name: 'ncurses-6.4', files: { 'lib/libncurses.so': 'ncurses stand-in\n'.repeat(64) } },
  openssl: { name: 'openssl-3.0.14', files: { 'lib/libssl.so': 'openssl stand-in\n'.repeat(256) }, deps: ['zlib'] },
  perl: { name: 'perl-5.38.2', files: { 'bin/perl': script('echo "This is perl 5"') } },
  python3: { name: 'python3-3.12.4', files: { 'bin/python3': script('echo "Python 3.12.4"') }, deps: ['libffi', 'zlib'] },
  curl: { name: 'curl-8.9.1', files: { 'bin/curl': script('echo "curl 8.9.1"'), 'lib/libcurl.so.4': 'libcurl stand-in\n'.repeat(128) }, deps: ['openssl', 'zlib', 'cacert'] },
  git: { name: 'git-2.45.2', files: { 'bin/git': script('echo "git version 2.45.2"') }, deps: ['curl', 'perl', 'zlib'] },
  htop: { name: 'htop-3.3.0', files: { 'bin/htop': script('echo "htop 3.3.0"') }, deps: ['ncurses'] },
  jq: { name: 'jq-1.7.1', licenses: ['MIT'], files: { 'bin/jq': script('echo jq-1.7.1') }, deps: ['oniguruma'] },
  oniguruma: { name: 'oniguruma-6.9.9', files: { 'lib/libonig.so': 'oniguruma stand-in\n'.repeat(32) } },
  tree: { name: 'tree-2.1.3', files: { 'bin/tree': script('ls -R "$@"') } },
  _1password: { name: '1password-cli-2.29.0', files: { 'bin/op': script('echo "1Password CLI 2.29.0"') } },
  'python3Packages.urllib3': { name: 'python3.12-urllib3-2.2.2', files: { 'lib/python3.12/site-packages/urllib3/__init__.py': '' } , deps: ['python3'] },
  'python3Packages.certifi': { name: 'python3.12-certifi-2024.7.4', files: { 'lib/python3.12/site-packages/certifi/__init__.py': '# certifi\n' }, deps: ['python3', 'cacert'] },
  'python3Packages.requests': {
    name: 'python3.12-requests-2.32.3',
    files: { 'lib/python3.12/site-packages/requests/__init__.py': '# requests\n' },
    deps: ['python3', 'python3Packages.urllib3', 'python3Packages.certifi'],
  },
  'big-data': { name: 'big-data-1.0', files: { 'share/big-data/random.bin': incompressible(3 * 1024 * 1024) } },
  broken: { name: 'broken-1.0', files: {}, fails: "builder for '/nix/store/broken-1.0.drv' failed with exit code 1;\nlast 1 log lines:\n> nixery-example: this package is broken on purpose" },
};

/**
 * Names and shapes after the example package set (examples/pkgs), small. As there, busybox is
 * every package's interpreter: whatever has a script refers to it.
 */
export const EXAMPLE_CATALOGUE: Catalogue = Object.fromEntries(
  Object.entries(PACKAGES).map(([attr, pkg]) => {
    const scripted = attr !== 'busybox' && Object.values(pkg.files).some((f) => typeof f === 'object' && 'executable' in f);
    return [attr, scripted ? { ...pkg, deps: [...new Set([...(pkg.deps ?? []), 'busybox'])] } : pkg];
  }),
);

const NIX_BASE32 = '0123456789abcdfghijklmnpqrsvwxyz';

/** Nix's base-32 of `bytes` (its alphabet, most significant digit first), as Nix prints hashes. */
export function toNix32(bytes: Buffer): string {
  const len = Math.ceil((bytes.length * 8) / 5);
  let out = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const c = ((bytes[i] ?? 0) >> j) | (i + 1 < bytes.length ? bytes[i + 1]! << (8 - j) : 0);
    out += NIX_BASE32[c & 0x1f];
  }
  return out;
}

/** The derivation a stand-in store path is "built" by. */
function drvPathOf(out: string, pkg: StandInPackage): string {
  return `/nix/store/${storeHash(`drv ${out}`)}-${pkg.name}.drv`;
}

function storeHash(input: string): string {
  const digest = createHash('sha256').update(input).digest();
  let out = '';
  for (let i = 0; i < 32; i++) out += NIX_BASE32[digest[i]! % 32];
  return out;
}

function fileBytes(file: StandInFile): number {
  if (typeof file === 'string') return Buffer.byteLength(file);
  if (Buffer.isBuffer(file)) return file.length;
  if ('executable' in file) return Buffer.byteLength(file.executable);
  return Buffer.byteLength(file.symlink);
}

const contentDigests = new WeakMap<StandInPackage, string>();

/** What a package's files are, as one hash (for its store path). */
function contentDigest(pkg: StandInPackage): string {
  let digest = contentDigests.get(pkg);
  if (!digest) {
    const hash = createHash('sha256');
    for (const [rel, file] of Object.entries(pkg.files).sort(([a], [b]) => (a < b ? -1 : 1))) {
      hash.update(`${rel}\0${typeof file === 'string' || Buffer.isBuffer(file) ? 'f' : 'executable' in file ? 'x' : 'l'}\0`);
      hash.update(typeof file === 'string' || Buffer.isBuffer(file) ? file : 'executable' in file ? file.executable : file.symlink);
      hash.update('\0');
    }
    digest = hash.digest('hex');
    contentDigests.set(pkg, digest);
  }
  return digest;
}

export interface StandInStats {
  /** Calls to the stage (resolve, realise, closure): what `nixStats.invocations` counts for Nix. */
  invocations: number;
  resolves: number;
  realises: number;
  closures: number;
}

export interface StandInOptions {
  catalogue?: Catalogue;
  /** Where the store lives (default: a new temporary directory, removed by `remove`). */
  storeRoot?: string;
}

export class StandInNix implements NixStage {
  readonly storeRoot: string;
  readonly stats: StandInStats = { invocations: 0, resolves: 0, realises: 0, closures: 0 };
  private readonly catalogue: Catalogue;
  /** Store path → its package, references and system (paths differ by system). */
  private readonly byPath = new Map<string, { pkg: StandInPackage; references: string[]; system: string }>();
  private gate: Promise<void> | null = null;

  constructor(options: StandInOptions = {}) {
    this.catalogue = options.catalogue ?? EXAMPLE_CATALOGUE;
    this.storeRoot = options.storeRoot ?? path.join(tmpdir(), `nixery-stand-in-store-${randomBytes(6).toString('hex')}`);
  }

  /** Builds wait (after resolving, before realising) until the function returned is called. */
  hold(): () => void {
    let release!: () => void;
    this.gate = new Promise((resolve) => (release = resolve));
    return () => {
      this.gate = null;
      release();
    };
  }

  async check(): Promise<string> {
    return 'nix-store (stand-in) 0';
  }

  async resolve(pinned: PinnedSource, packages: readonly string[], system: string, opts: ResolveOptions = { timeoutMs: 0 }): Promise<ResolvedPackage[]> {
    this.count('resolves');
    const missing: string[] = [];
    const resolved: ResolvedPackage[] = [];
    for (const requested of packages) {
      const attr = this.lookup(requested);
      if (!attr) {
        missing.push(requested);
        continue;
      }
      const out = this.storePath(attr, system, pinned.revision ?? '');
      // Deny entries that look up to the same package are the same derivation (aliases, spellings).
      const sameAs = (opts.compareWith ?? []).filter((p) => this.lookup(p) === attr);
      const pkg = this.catalogue[attr]!;
      const { name, version } = splitNameVersion(pkg.name);
      resolved.push({
        requested,
        attrPath: attr.split('.'),
        packagePath: attr.split('.'),
        sameAs,
        drvPath: drvPathOf(out, pkg),
        outputs: { out },
        ...(pkg.mainProgram ? { mainProgram: pkg.mainProgram } : {}),
        meta: { pname: name, version, licenses: [...(pkg.licenses ?? [])].sort() },
        sourceInfo: { lastModified: null, storePath: null },
      });
    }
    if (missing.length > 0) throw new PackagesNotFoundError(missing);
    return resolved;
  }

  async realise(resolved: readonly ResolvedPackage[]): Promise<{ release(): Promise<void> }> {
    this.count('realises');
    if (this.gate) await this.gate;
    const all = this.closurePaths(resolved.map((p) => p.outputs.out!));
    const buildMs = Math.max(0, ...all.map((p) => this.byPath.get(p)!.pkg.buildMs ?? 0));
    if (buildMs > 0) await new Promise((resolve) => setTimeout(resolve, buildMs));
    for (const p of all) {
      const { pkg, system } = this.byPath.get(p)!;
      if (pkg.fails && (!pkg.failsOn || pkg.failsOn.includes(system))) {
        throw new NixFailedError(`realising ${resolved.map((r) => r.attrPath.join('.')).join(', ')}`, `error: ${pkg.fails}`, 1);
      }
    }
    await Promise.all(all.map((p) => this.materialise(p)));
    return { release: async () => {} };
  }

  async closure(roots: readonly string[]): Promise<ClosureGraph> {
    this.count('closures');
    const sortedRoots = [...new Set(roots)].sort();
    const all = this.closurePaths(sortedRoots);
    const narSize = (p: string) => Object.values(this.byPath.get(p)!.pkg.files).reduce((sum, f) => sum + fileBytes(f) + 128, 128);
    const paths: StorePathInfo[] = all.map((p) => ({
      path: p,
      references: this.byPath.get(p)!.references,
      narSize: narSize(p),
      closureSize: this.closurePaths([p]).reduce((sum, q) => sum + narSize(q), 0),
      // As Nix ≤ 2.18 prints them: `sha256:<nix32>` (of the files, not of a real NAR).
      narHash: `sha256:${toNix32(createHash('sha256').update(`nar ${p} ${contentDigest(this.byPath.get(p)!.pkg)}`).digest())}`,
      deriver: drvPathOf(p, this.byPath.get(p)!.pkg),
    }));
    return { roots: sortedRoots, paths };
  }

  /** Removes the store directory. */
  async remove(): Promise<void> {
    await rm(this.storeRoot, { recursive: true, force: true });
  }

  private count(kind: 'resolves' | 'realises' | 'closures'): void {
    this.stats.invocations++;
    this.stats[kind]++;
  }

  /** Exact attribute path first, then case-insensitively, then a leading digit's `_` (as the resolver does). */
  private lookup(requested: string): string | null {
    if (requested.split('.').some((c) => c === '')) return null;
    if (this.catalogue[requested]) return requested;
    const folded = requested.toLowerCase();
    for (const candidate of [folded, `_${folded}`]) {
      const found = Object.keys(this.catalogue).find((k) => k.toLowerCase() === candidate);
      if (found) return found;
    }
    return null;
  }

  private storePath(attr: string, system: string, revision: string, seen: string[] = []): string {
    if (seen.includes(attr)) throw new Error(`stand-in catalogue: ${attr} refers to itself through ${seen.join(' → ')}`);
    const pkg = this.catalogue[attr];
    if (!pkg) throw new Error(`stand-in catalogue: ${seen.at(-1)} refers to ${attr}, which it does not have`);
    const references = (pkg.deps ?? []).map((d) => this.storePath(d, system, revision, [...seen, attr])).sort();
    const p = `/nix/store/${storeHash(JSON.stringify({ system, revision, name: pkg.name, files: contentDigest(pkg), references }))}-${pkg.name}`;
    this.byPath.set(p, { pkg, references, system });
    return p;
  }

  private closurePaths(roots: readonly string[]): string[] {
    const seen = new Set<string>();
    const walk = (p: string) => {
      if (seen.has(p)) return;
      const entry = this.byPath.get(p);
      if (!entry) throw new Error(`stand-in store: ${p} is not a path it made`);
      seen.add(p);
      entry.references.forEach(walk);
    };
    roots.forEach(walk);
    return [...seen].sort();
  }

  /** Writes a store path's files once (into a temporary directory renamed into place). */
  private async materialise(storePath: string): Promise<void> {
    const target = path.join(this.storeRoot, storePath);
    if (await stat(target).then(() => true, () => false)) return;
    const staging = `${target}.tmp-${randomBytes(4).toString('hex')}`;
    const { pkg } = this.byPath.get(storePath)!;
    const dirs = new Set<string>([staging]);
    for (const [rel, file] of Object.entries(pkg.files)) {
      const full = path.join(staging, rel);
      for (let d = path.dirname(full); d.length > staging.length; d = path.dirname(d)) dirs.add(d);
      await mkdir(path.dirname(full), { recursive: true });
      if (typeof file === 'string' || Buffer.isBuffer(file)) {
        await writeFile(full, file);
        await chmod(full, 0o444);
      } else if ('executable' in file) {
        await writeFile(full, file.executable);
        await chmod(full, 0o555);
      } else {
        await symlink(file.symlink, full);
      }
    }
    await mkdir(staging, { recursive: true });
    for (const d of dirs) await chmod(d, 0o555);
    try {
      await rename(staging, target);
    } catch (err) {
      // Made meanwhile by another build: the same bytes.
      await rm(staging, { recursive: true, force: true });
      if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}
