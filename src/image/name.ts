// Image name → package list. `shell/git/htop:latest` becomes the sorted, de-duplicated package
// set plus the target architecture; the result, not the spelling, identifies the image.

import { InvalidNameError, InvalidTagError } from '../errors.js';
import type { ImageConfig } from './config.js';

/** One path component of a repository name (OCI distribution grammar). */
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
/** The canonical repository-name regexp, used by the router and the parser alike. */
export const NAME_PATTERN = `${COMPONENT}(?:/${COMPONENT})*`;
export const NAME_REGEXP = new RegExp(`^${NAME_PATTERN}$`);
export const COMPONENT_REGEXP = new RegExp(`^${COMPONENT}$`);
export const TAG_REGEXP = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
export const NAME_MAX_LENGTH = 255;

export interface Architecture {
  /** Nix system double, e.g. x86_64-linux. */
  nixSystem: string;
  /** OCI platform architecture, e.g. amd64. */
  imageArch: string;
  /** OCI platform as clients write it, e.g. linux/amd64. */
  platform: string;
}

export const AMD64: Architecture = { nixSystem: 'x86_64-linux', imageArch: 'amd64', platform: 'linux/amd64' };
export const ARM64: Architecture = { nixSystem: 'aarch64-linux', imageArch: 'arm64', platform: 'linux/arm64' };

/** Packages the `shell` meta-package adds. */
export const SHELL_PACKAGES = ['bashInteractive', 'coreutils', 'moreutils', 'nano'] as const;
/** The meta-packages: leading name components that are not packages. */
export const META_PACKAGES = ['shell', 'arm64', 'nonroot'] as const;
/** Packages every image gets: the CA bundle and /etc/protocols, /etc/services. */
export const ALWAYS_PACKAGES = ['cacert', 'iana-etc'] as const;

export interface ImageRequest {
  /** Canonical name: the requested components, de-duplicated and sorted, joined by `/`. */
  name: string;
  tag: string;
  /** The packages to put in the image: expanded, de-duplicated, sorted by code unit. */
  packages: string[];
  arch: Architecture;
  /** True when the name picks the architecture (the `arm64` meta-package): one platform only. */
  archRequested: boolean;
  /** The `nonroot` meta-package: the image runs as user nonroot (65532:65532). Absent when not asked for. */
  nonroot?: true;
  /**
   * Runtime config from a build request (POST /api/v1/builds), validated and canonical
   * (config.ts). Absent for images by name: a tag names packages and a revision only.
   */
  config?: ImageConfig;
}

/** Throws InvalidTagError unless `tag` is a valid OCI tag. */
export function validateTag(tag: string): string {
  if (!TAG_REGEXP.test(tag)) {
    const why =
      tag.length === 0
        ? 'it is empty'
        : tag.length > 128
          ? `it is ${tag.length} characters long (at most 128)`
          : 'it must start with a letter, digit or _ and contain only letters, digits, _ . and -';
    throw new InvalidTagError(`invalid tag ${JSON.stringify(truncate(tag))}: ${why}`);
  }
  return tag;
}

/** Throws InvalidNameError unless `name` is a valid OCI repository name of at most 255 characters. */
export function validateName(name: string): string {
  if (name.length === 0) throw new InvalidNameError('invalid image name: it is empty');
  if (name.length > NAME_MAX_LENGTH) {
    throw new InvalidNameError(`invalid image name: it is ${name.length} characters long (at most ${NAME_MAX_LENGTH})`);
  }
  const components = name.split('/');
  for (const [i, c] of components.entries()) {
    if (!COMPONENT_REGEXP.test(c)) {
      const why =
        c === ''
          ? 'it is empty'
          : /[^a-zA-Z0-9._-]/.test(c)
            ? `it has characters a name cannot have (${JSON.stringify(truncate([...new Set(c.match(/[^a-zA-Z0-9._-]/g))].join('')))}): only lower-case letters, digits, . _ and -`
            : /[A-Z]/.test(c)
              ? 'upper-case letters are not allowed (package lookup is case-insensitive)'
              : 'components must be lower-case letters and digits, separated by . _ __ or dashes';
      throw new InvalidNameError(`invalid image name ${JSON.stringify(truncate(name))}: component ${i + 1} ${JSON.stringify(truncate(c))}: ${why}`);
    }
  }
  return name;
}

/** Byte-order comparison (code units), so sorting never depends on locale. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sortedUnique(items: Iterable<string>): string[] {
  return [...new Set(items)].sort(compareStrings);
}

/**
 * Parses an image name and tag. A leading run of meta-packages (`shell`, `arm64`, `nonroot`) is expanded;
 * later occurrences are ordinary package names, as in Nixery. Without `arm64` the architecture is
 * amd64 here; `forPlatforms` (platform.ts) gives the image for each configured platform.
 */
export function parseImageName(name: string, tag = 'latest'): ImageRequest {
  validateName(name);
  validateTag(tag);
  const components = name.split('/');
  let arch = AMD64;
  let archRequested = false;
  let nonroot = false;
  const packages: string[] = [];
  let i = 0;
  for (; i < components.length; i++) {
    const c = components[i]!;
    if (c === 'shell') packages.push(...SHELL_PACKAGES);
    else if (c === 'arm64') {
      arch = ARM64;
      archRequested = true;
    }
    else if (c === 'nonroot') nonroot = true;
    else break;
  }
  packages.push(...components.slice(i), ...ALWAYS_PACKAGES);
  return {
    name: sortedUnique(components).join('/'),
    tag,
    packages: sortedUnique(packages),
    arch,
    archRequested,
    // Only when asked for: the request of a plain image (and its record) stays as it was.
    ...(nonroot ? { nonroot: true as const } : {}),
  };
}

/**
 * A name that pulls this image: its meta-packages first, then its other packages. The canonical
 * `name` sorts every component, so `shell` may not lead there (`hello/shell` asks for a package
 * called shell); this one always parses back to the same architecture and package set.
 */
export function pullName(image: ImageRequest): string {
  const has = new Set(image.packages);
  const shell = SHELL_PACKAGES.every((p) => has.has(p));
  const implied = new Set<string>([...ALWAYS_PACKAGES, ...(shell ? SHELL_PACKAGES : [])]);
  const meta = [...(image.arch === ARM64 ? ['arm64'] : []), ...(image.nonroot ? ['nonroot'] : []), ...(shell ? ['shell'] : [])];
  // Packages that happen to be called like a meta-package go last, behind an ordinary one.
  const isMeta = (p: string) => (META_PACKAGES as readonly string[]).includes(p);
  const rest = image.packages.filter((p) => !implied.has(p));
  const ordered = [...rest.filter((p) => !isMeta(p)), ...rest.filter(isMeta)];
  if (ordered.length > 0 && isMeta(ordered[0]!)) ordered.unshift(ALWAYS_PACKAGES[0]);
  const components = [...meta, ...ordered];
  return components.length > 0 ? components.join('/') : image.name;
}

/** Parses `NAME[:TAG]` as given on the command line. */
export function parseReference(ref: string): ImageRequest {
  const colon = ref.lastIndexOf(':');
  const slash = ref.lastIndexOf('/');
  if (colon > slash) return parseImageName(ref.slice(0, colon), ref.slice(colon + 1));
  return parseImageName(ref);
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
