// Which packages images may contain (NIXERY_ALLOW_PACKAGES, NIXERY_DENY_PACKAGES) and which store
// paths their closures may hold (NIXERY_DENY_CLOSURE): lists of names or globs (`*` any run of
// characters, `?` one), given inline (separated by commas or whitespace) or as a file of them (a
// value with a `/`, one pattern per line, `#` comments). Names are compared without regard to case.
//
// The package lists apply to what a name RESOLVES to, not to how it was spelled: `hello.out`,
// `HELLO`, `1password` or an alias are the attribute path (and derivation) Nix found. Before Nix
// runs, `decide` refuses names that cannot pass whatever they resolve to (cheap, no evaluation);
// `checkResolved` then decides on the resolved attribute paths, and on the derivations the
// denied names evaluate to (so an alias of a denied package is refused too). The closure list
// is checked on the store path names of the runtime closure, before anything is packed.

import { storePathName } from '../util/store-path.js';
import { ALWAYS_PACKAGES } from '../image/name.js';
import { readFileSync } from 'node:fs';
import { ConfigError, PackageDeniedError } from '../errors.js';

export interface PolicyDecision {
  allowed: boolean;
  /** The first refused package and why, when not allowed. */
  package?: string;
  reason?: string;
}

/** What the builder knows about a requested package once Nix resolved it. */
export interface ResolvedName {
  requested: string;
  /** The attribute path of the derivation (outputs dropped), e.g. ["python3Packages", "requests"]. */
  packagePath: readonly string[];
  /** The denied attribute paths (exactDenied) that evaluate to this same derivation. */
  sameAs: readonly string[];
}

export class PackagePolicy {
  private constructor(
    private readonly allow: RegExp[] | null,
    private readonly deny: RegExp[],
    private readonly denyClosure: RegExp[],
    /** The deny patterns that are plain attribute paths (no glob): evaluated to their derivations. */
    readonly exactDenied: readonly string[],
    readonly description: string,
  ) {}

  /** The policy from the settings' raw values (undefined: not set). */
  static fromSettings(allow: string | undefined, deny: string | undefined, denyClosure?: string): PackagePolicy | undefined {
    if (allow === undefined && deny === undefined && denyClosure === undefined) return undefined;
    const allowPatterns = allow === undefined ? null : patterns('NIXERY_ALLOW_PACKAGES', allow);
    const denyPatterns = deny === undefined ? [] : patterns('NIXERY_DENY_PACKAGES', deny);
    const closurePatterns = denyClosure === undefined ? [] : patterns('NIXERY_DENY_CLOSURE', denyClosure);
    const description = [
      allowPatterns ? `allow ${allowPatterns.length} patterns` : '',
      denyPatterns.length ? `deny ${denyPatterns.length} patterns` : '',
      closurePatterns.length ? `deny ${closurePatterns.length} closure patterns` : '',
    ]
      .filter(Boolean)
      .join(', ');
    return new PackagePolicy(
      allowPatterns?.map(globToRegExp) ?? null,
      denyPatterns.map(globToRegExp),
      closurePatterns.map(globToRegExp),
      denyPatterns.filter((p) => !/[*?]/.test(p)),
      description,
    );
  }

  /**
   * Decides from the names as requested, before Nix runs (cheap, no evaluation): a name denied as
   * written is refused; the allow list refuses a name only when no spelling it may resolve to is
   * allowed (the name itself, `_name` for a leading digit, the name without an output such as
   * `.out`). The resolved check decides for good.
   */
  decide(packages: readonly string[]): PolicyDecision {
    for (const name of packages) {
      if (this.deny.some((re) => re.test(name))) return { allowed: false, package: name, reason: 'it is denied by NIXERY_DENY_PACKAGES' };
      if (this.allow && !spellings(name).some((s) => this.allow!.some((re) => re.test(s)))) {
        return { allowed: false, package: name, reason: 'it is not in NIXERY_ALLOW_PACKAGES' };
      }
    }
    return { allowed: true };
  }

  /** Decides on resolved packages: every one's attribute path must pass, and none may be a denied derivation. */
  decideResolved(packages: readonly ResolvedName[]): PolicyDecision {
    for (const p of packages) {
      const path = p.packagePath.join('.');
      const shown = path.toLowerCase() === p.requested.toLowerCase() ? path : `${p.requested} (${path})`;
      if (this.deny.some((re) => re.test(path))) return { allowed: false, package: shown, reason: 'it is denied by NIXERY_DENY_PACKAGES' };
      if (p.sameAs.length > 0) return { allowed: false, package: shown, reason: `it is ${p.sameAs[0]}, which NIXERY_DENY_PACKAGES denies` };
      // The allow list names what images may add besides what every image gets.
      if (this.allow && !ALWAYS.has(p.requested) && !this.allow.some((re) => re.test(path))) return { allowed: false, package: shown, reason: 'it is not in NIXERY_ALLOW_PACKAGES' };
    }
    return { allowed: true };
  }

  /** Throws PackageDeniedError when a resolved package is refused. */
  checkResolved(packages: readonly ResolvedName[]): void {
    const d = this.decideResolved(packages);
    if (!d.allowed) throw new PackageDeniedError(d.package!, d.reason!);
  }

  /** Throws PackageDeniedError naming the first store path of the closure that NIXERY_DENY_CLOSURE matches. */
  checkClosure(storePaths: readonly string[]): void {
    if (this.denyClosure.length === 0) return;
    for (const path of storePaths) {
      const name = storePathName(path);
      if (this.denyClosure.some((re) => re.test(name))) {
        throw new PackageDeniedError(name, `the image's closure contains ${path}, which NIXERY_DENY_CLOSURE denies`);
      }
    }
  }
}

const ALWAYS: ReadonlySet<string> = new Set(ALWAYS_PACKAGES);

/** The attribute paths a requested name may resolve to, as far as the name tells (case aside). */
function spellings(name: string): string[] {
  const parts = name.split('.').map((c) => (/^[0-9]/.test(c) ? `_${c}` : c));
  const out = [name];
  for (let n = parts.length; n >= 1; n--) out.push(parts.slice(0, n).join('.'));
  return out;
}

function patterns(setting: string, raw: string): string[] {
  let text = raw;
  if (raw.includes('/')) {
    try {
      text = readFileSync(raw.trim(), 'utf8')
        .split('\n')
        .map((line) => line.replace(/#.*/, ''))
        .join('\n');
    } catch (err) {
      throw new ConfigError(`invalid ${setting}: cannot read ${raw.trim()} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  const list = text.split(/[\s,]+/).filter(Boolean);
  for (const p of list) {
    if (!/^[A-Za-z0-9_.*?+=-]+$/.test(p)) throw new ConfigError(`invalid ${setting}: ${JSON.stringify(p)} is not a name or glob (letters, digits, . _ - + = * ?)`);
  }
  return list;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}
