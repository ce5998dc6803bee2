// Which packages images may contain (NIXERY_ALLOW_PACKAGES, NIXERY_DENY_PACKAGES): lists of
// attribute names or globs (`*` any run of characters, `?` one), given inline (separated by
// commas or whitespace) or as a file of them (a value with a `/`, one pattern per line, `#`
// comments). Names are compared without regard to case, as the image name itself is looked up.
// A package must match the allow list when there is one, and must not match the deny list.

import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';

export interface PolicyDecision {
  allowed: boolean;
  /** The first refused package and why, when not allowed. */
  package?: string;
  reason?: string;
}

export class PackagePolicy {
  private constructor(
    private readonly allow: RegExp[] | null,
    private readonly deny: RegExp[],
    readonly description: string,
  ) {}

  /** The policy from the two settings' raw values (undefined: not set). */
  static fromSettings(allow: string | undefined, deny: string | undefined): PackagePolicy | undefined {
    if (allow === undefined && deny === undefined) return undefined;
    const allowPatterns = allow === undefined ? null : patterns('NIXERY_ALLOW_PACKAGES', allow);
    const denyPatterns = deny === undefined ? [] : patterns('NIXERY_DENY_PACKAGES', deny);
    const description = [allowPatterns ? `allow ${allowPatterns.length} patterns` : '', denyPatterns.length ? `deny ${denyPatterns.length} patterns` : ''].filter(Boolean).join(', ');
    return new PackagePolicy(allowPatterns?.map(globToRegExp) ?? null, denyPatterns.map(globToRegExp), description);
  }

  /** Decides a whole image: every package must pass. */
  decide(packages: readonly string[]): PolicyDecision {
    for (const name of packages) {
      if (this.deny.some((re) => re.test(name))) return { allowed: false, package: name, reason: 'it is denied by NIXERY_DENY_PACKAGES' };
      if (this.allow && !this.allow.some((re) => re.test(name))) return { allowed: false, package: name, reason: 'it is not in NIXERY_ALLOW_PACKAGES' };
    }
    return { allowed: true };
  }
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
    if (!/^[A-Za-z0-9_.*?+-]+$/.test(p)) throw new ConfigError(`invalid ${setting}: ${JSON.stringify(p)} is not an attribute name or glob (letters, digits, . _ - + * ?)`);
  }
  return list;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}
