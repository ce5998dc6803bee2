// The customisation layer, made here instead of by a Nix build: the merged symlink forest of the
// requested packages' outputs (as nixpkgs' symlinkJoin/lndir would make it), plus the image
// essentials: /usr/bin/env (never dangling), /tmp (1777) and /etc/ssl/certs/ca-bundle.crt.
// With a user (the `nonroot` meta-package): /etc/passwd and /etc/group naming root, nobody and
// the user, and the user's home, owned by it.

import { lstat, readdir, readlink } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { posix } from 'node:path';
import type { Stats } from 'node:fs';
import { compareStrings } from '../image/name.js';
import type { ImageUser } from '../image/config.js';
import { ArchiveError } from './errors.js';
import { sortEntries, type TarEntry } from './tar.js';

export interface CustomisationInput {
  /** Store paths of the requested packages' outputs, in priority order (first wins). */
  outputs: readonly string[];
  /** Every store path of the image (where /usr/bin/env and the CA bundle may come from). */
  closure: readonly string[];
  /** Directory the store paths are read under (tests use fake stores); targets stay as given. */
  storeRoot?: string;
  /** A user to add (the `nonroot` meta-package): passwd, group and its home. */
  user?: ImageUser;
}

/** Two packages provide the same path; `kept` is in the image, `ignored` is not. */
export interface Collision {
  path: string;
  kept: string;
  ignored: string;
}

export interface CustomisationLayer {
  /** Sorted entries, ready for packEntries. */
  entries: TarEntry[];
  collisions: Collision[];
  /** Other things worth a log line (e.g. a file name that is not UTF-8 and was skipped). */
  warnings: string[];
  /** Target of /usr/bin/env, or null when no package in the image has bin/env. */
  env: string | null;
}

export const DIRECTORY_MODE = 0o755;
export const TMP_MODE = 0o1777;
export const CA_BUNDLE = 'etc/ssl/certs/ca-bundle.crt';
/** Mode of /etc/passwd and /etc/group (readable by every user, as on any system). */
export const ACCOUNT_FILE_MODE = 0o644;
/** Deepest directory nesting merged; deeper means a symlink loop. */
const MAX_DEPTH = 64;
const MAX_SYMLINK_HOPS = 40;

interface DirNode {
  kind: 'dir';
  children: Map<string, Node>;
  /** The first directory this one was made from (for collision reports). */
  origin: string;
  mode: number;
  /** Owner, when not root (a user's home). */
  owner?: { uid: number; gid: number };
}

/** A regular file the layer holds itself (/etc/passwd, /etc/group). */
interface FileNode {
  kind: 'file';
  data: Buffer;
  mode: number;
  origin: string;
}

interface LeafNode {
  kind: 'leaf';
  /** Absolute symlink target, e.g. /nix/store/<hash>-hello/bin/hello. */
  target: string;
  /** For a symlink to a directory: the real directory, read if the leaf must become a merged directory. */
  expand?: string;
}

type Node = DirNode | LeafNode | FileNode;

const newDir = (origin: string, mode = DIRECTORY_MODE): DirNode => ({ kind: 'dir', children: new Map(), origin, mode });

/** Builds the customisation layer's entries; see the module comment. */
export async function customisationLayer(input: CustomisationInput): Promise<CustomisationLayer> {
  return new ForestBuilder(input).build();
}

/**
 * The same, in the form the builder uses: outputs and closure as lists, collisions as log lines
 * (`/bin/foo: kept /nix/store/…, ignored /nix/store/…`).
 */
export async function customisationEntries(
  outputs: readonly string[],
  closure: readonly string[],
  options: { storeRoot?: string; user?: ImageUser } = {},
): Promise<{ entries: TarEntry[]; collisions: string[]; details: Collision[]; warnings: string[]; env: string | null }> {
  const layer = await customisationLayer({ outputs, closure, storeRoot: options.storeRoot, user: options.user });
  return {
    entries: layer.entries,
    collisions: layer.collisions.map((c) => `${c.path}: kept ${c.kept}, ignored ${c.ignored}`),
    details: layer.collisions,
    warnings: layer.warnings,
    env: layer.env,
  };
}

class ForestBuilder {
  private readonly root: string;
  private readonly tree: DirNode = newDir('/');
  private readonly collisions: Collision[] = [];
  private readonly warnings: string[] = [];

  constructor(private readonly input: CustomisationInput) {
    this.root = input.storeRoot ? input.storeRoot.replace(/\/+$/, '') : '';
    for (const p of [...input.outputs, ...input.closure]) {
      if (!p.startsWith('/')) throw new ArchiveError(`store path ${JSON.stringify(p)} is not absolute`);
    }
  }

  async build(): Promise<CustomisationLayer> {
    const outputs = [...new Set(this.input.outputs)];
    for (const output of outputs) {
      const resolved = await this.resolve(output);
      if (!resolved) throw new ArchiveError(`customisation layer: output ${output} does not exist`, { path: output });
      if (resolved.stat.isDirectory()) await this.merge(this.tree, resolved.path, output, '', 0);
      // An output that is a single file has no directories to merge (symlinkJoin skips it too).
    }

    const closure = [...this.input.closure].sort(compareStrings);
    const env = await this.firstWith('bin/env', [...outputs, ...closure]);
    if (env) await this.place(['usr', 'bin', 'env'], { kind: 'leaf', target: env });

    await this.place(['tmp'], newDir('/tmp', TMP_MODE));

    const { user } = this.input;
    if (user) {
      for (const [name, data] of Object.entries(accountFiles(user))) {
        await this.place(['etc', name], { kind: 'file', data, mode: ACCOUNT_FILE_MODE, origin: `/etc/${name}` });
      }
      const home = newDir(user.home, DIRECTORY_MODE);
      home.owner = { uid: user.uid, gid: user.gid };
      await this.place(user.home.split('/').filter(Boolean), home);
    }

    if (!(await this.treeHas(CA_BUNDLE.split('/')))) {
      const cacert = closure.filter((p) => /^[a-z0-9]+-cacert-/.test(posix.basename(p)));
      const bundle = await this.firstWith(CA_BUNDLE, [...outputs, ...cacert, ...closure]);
      if (bundle) await this.place(CA_BUNDLE.split('/'), { kind: 'leaf', target: bundle });
    }

    const entries: TarEntry[] = [];
    const emit = (dir: DirNode, prefix: string): void => {
      for (const [name, node] of dir.children) {
        const path = prefix + name;
        if (node.kind === 'dir') {
          entries.push({ type: 'directory', path, mode: node.mode, ...(node.owner ?? {}) });
          emit(node, `${path}/`);
        } else if (node.kind === 'file') {
          entries.push({ type: 'file', path, mode: node.mode, size: node.data.length, source: { data: node.data } });
        } else {
          entries.push({ type: 'symlink', path, target: node.target });
        }
      }
    };
    emit(this.tree, '');
    return { entries: sortEntries(entries), collisions: this.collisions, warnings: this.warnings, env };
  }

  /**
   * Merges directory `real` (a logical store path, read under storeRoot) into `dir`. Leaves
   * point at `logical`, the path as the package presents it (through symlinks).
   */
  private async merge(dir: DirNode, real: string, logical: string, rel: string, depth: number): Promise<void> {
    if (depth > MAX_DEPTH) throw new ArchiveError(`customisation layer: ${logical} is nested too deeply (a symlink loop?)`, { path: logical });
    const names: string[] = [];
    for (const raw of await readdir(this.fs(real), { encoding: 'buffer' })) {
      if (!isUtf8(raw)) {
        this.warnings.push(`skipped a file name that is not UTF-8 in ${logical}: ${JSON.stringify(raw.toString('latin1'))}`);
        continue;
      }
      names.push(raw.toString('utf8'));
    }
    names.sort(compareStrings);
    for (const name of names) {
      const childReal = `${real}/${name}`;
      const childLogical = `${logical}/${name}`;
      const childRel = rel ? `${rel}/${name}` : name;
      const kind = await this.classify(childReal);
      const existing = dir.children.get(name);
      if (!existing) {
        if (kind.type === 'dir') {
          const d = newDir(childLogical);
          dir.children.set(name, d);
          await this.merge(d, childReal, childLogical, childRel, depth + 1);
        } else {
          dir.children.set(name, { kind: 'leaf', target: childLogical, expand: kind.type === 'dirlink' ? kind.real : undefined });
        }
      } else if (existing.kind === 'dir' || existing.kind === 'file') {
        if (kind.type === 'leaf' || existing.kind === 'file') this.collide(childRel, existing.origin, childLogical);
        else await this.merge(existing, kind.type === 'dir' ? childReal : kind.real, childLogical, childRel, depth + 1);
      } else if (existing.target === childLogical) {
        // The same path listed twice: nothing to merge.
      } else if (existing.expand !== undefined && kind.type !== 'leaf') {
        const d = await this.expand(existing, childRel, depth);
        dir.children.set(name, d);
        await this.merge(d, kind.type === 'dir' ? childReal : kind.real, childLogical, childRel, depth + 1);
      } else {
        this.collide(childRel, existing.target, childLogical);
      }
    }
  }

  /** Turns a symlink-to-directory leaf into a real directory holding links to its contents. */
  private async expand(leaf: LeafNode, rel: string, depth: number): Promise<DirNode> {
    const d = newDir(leaf.target);
    await this.merge(d, leaf.expand!, leaf.target, rel, depth + 1);
    return d;
  }

  /** Puts an essential at `components`, making parent directories; it wins over packages. */
  private async place(components: string[], node: Node): Promise<void> {
    let dir = this.tree;
    for (const [i, name] of components.entries()) {
      const rel = components.slice(0, i + 1).join('/');
      const existing = dir.children.get(name);
      const isLast = i === components.length - 1;
      if (isLast) {
        if (node.kind === 'dir' && existing?.kind === 'dir') {
          existing.mode = node.mode; // keep what packages put there, with the essential's mode
          existing.owner = node.owner;
          return;
        }
        if (existing) this.collide(rel, describe(node), describe(existing), true);
        dir.children.set(name, node);
        return;
      }
      if (existing?.kind === 'dir') {
        dir = existing;
      } else if (existing?.kind === 'leaf' && existing.expand !== undefined) {
        const d = await this.expand(existing, rel, 0);
        dir.children.set(name, d);
        dir = d;
      } else {
        if (existing) this.collide(rel, `directory /${rel}`, describe(existing), true);
        const d = newDir(`/${rel}`);
        dir.children.set(name, d);
        dir = d;
      }
    }
  }

  /** Whether the forest provides `components` (possibly through a symlink to a directory). */
  private async treeHas(components: string[]): Promise<boolean> {
    let node: Node = this.tree;
    for (const [i, name] of components.entries()) {
      if (node.kind === 'file') return false;
      if (node.kind === 'leaf') return (await this.resolve(`${node.target}/${components.slice(i).join('/')}`)) !== null;
      const next: Node | undefined = node.children.get(name);
      if (!next) return false;
      node = next;
    }
    return node.kind !== 'leaf' || (await this.resolve(node.target)) !== null;
  }

  /** `<path>/<rel>` for the first path that has `rel` as a file (following symlinks), or null. */
  private async firstWith(rel: string, paths: string[]): Promise<string | null> {
    for (const p of paths) {
      const candidate = `${p}/${rel}`;
      const resolved = await this.resolve(candidate);
      if (resolved && !resolved.stat.isDirectory()) return candidate;
    }
    return null;
  }

  private collide(rel: string, kept: string, ignored: string, essential = false): void {
    this.collisions.push({ path: `/${rel}`, kept, ignored });
    if (essential) this.warnings.push(`/${rel} from the image essentials replaces ${ignored}`);
  }

  private fs(logical: string): string {
    return this.root + logical;
  }

  private async classify(real: string): Promise<{ type: 'dir' } | { type: 'leaf' } | { type: 'dirlink'; real: string }> {
    const st = await lstatOrNull(this.fs(real));
    if (st?.isDirectory()) return { type: 'dir' };
    if (st?.isSymbolicLink()) {
      const resolved = await this.resolve(real);
      if (resolved?.stat.isDirectory()) return { type: 'dirlink', real: resolved.path };
    }
    return { type: 'leaf' };
  }

  /**
   * Follows symlinks of a logical path, reading absolute targets under storeRoot, as they
   * would resolve inside the image. Null when it dangles or loops.
   */
  private async resolve(logical: string): Promise<{ path: string; stat: Stats } | null> {
    let path = logical;
    for (let hop = 0; hop < MAX_SYMLINK_HOPS; hop++) {
      const st = await lstatOrNull(this.fs(path));
      if (!st) return null;
      if (!st.isSymbolicLink()) return { path, stat: st };
      const target = await readlink(this.fs(path));
      path = posix.resolve(posix.dirname(path), target);
    }
    return null;
  }
}

function describe(node: Node): string {
  return node.kind === 'dir' ? `directory ${node.origin}` : node.kind === 'file' ? `file ${node.origin}` : node.target;
}

/**
 * /etc/passwd and /etc/group: root, nobody and the user, as distroless images have them (no
 * login shell: an image's shell is run as a command, not as a login).
 */
export function accountFiles(user: ImageUser): { passwd: Buffer; group: Buffer } {
  const nologin = '/sbin/nologin';
  return {
    passwd: Buffer.from(
      `root:x:0:0:root:/root:${nologin}
nobody:x:65534:65534:nobody:/nonexistent:${nologin}
${user.name}:x:${user.uid}:${user.gid}:${user.name}:${user.home}:${nologin}
`,
    ),
    group: Buffer.from(`root:x:0:
nobody:x:65534:
${user.name}:x:${user.gid}:
`),
  };
}

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new ArchiveError(`customisation layer: cannot read ${path}: ${(err as Error).message}`, { path, cause: err });
  }
}
