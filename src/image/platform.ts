// Platforms the registry serves (NIXERY_PLATFORMS): OCI platform names, each tied to the Nix
// system its images are built for. An image name without the `arm64` meta-package is built for
// every configured platform; the first one is what clients that accept no index get.

import { AMD64, ARM64, type Architecture, type ImageRequest } from './name.js';

/** Every platform this registry can build for, by its canonical name. */
export const PLATFORMS: ReadonlyMap<string, Architecture> = new Map([
  [AMD64.platform, AMD64],
  [ARM64.platform, ARM64],
]);

/** Other spellings clients use for the same platforms. */
const ALIASES: ReadonlyMap<string, string> = new Map([['linux/arm64/v8', ARM64.platform]]);

/** The platform of the machine this runs on (amd64 elsewhere, as before platforms existed). */
export function hostPlatform(): Architecture {
  return process.arch === 'arm64' ? ARM64 : AMD64;
}

/** The architecture of a canonical platform name (as `parsePlatforms` returns them). */
export function platformArch(platform: string): Architecture {
  const arch = PLATFORMS.get(platform);
  if (!arch) throw new Error(`unsupported platform ${JSON.stringify(platform)}`);
  return arch;
}

/** The canonical name of a platform as a client may spell it (`linux/arm64/v8`), or undefined if unsupported. */
export function canonicalPlatform(name: string): string | undefined {
  const lower = name.toLowerCase();
  const canonical = ALIASES.get(lower) ?? lower;
  return PLATFORMS.has(canonical) ? canonical : undefined;
}

/**
 * Parses a comma-separated platform list (`linux/amd64,linux/arm64`) into canonical names, in
 * order. Throws an Error saying what is wrong: an empty list or entry, an unknown or unsupported
 * platform, a platform listed twice.
 */
export function parsePlatforms(raw: string): string[] {
  const entries = raw.split(',').map((p) => p.trim());
  if (entries.every((p) => p === '')) throw new Error('must list at least one platform, e.g. linux/amd64,linux/arm64');
  const seen: string[] = [];
  for (const entry of entries) {
    if (entry === '') throw new Error(`has an empty entry in ${JSON.stringify(raw)}`);
    const name = canonicalPlatform(entry);
    if (!name) {
      throw new Error(`unsupported platform ${JSON.stringify(entry)}: this registry builds ${[...PLATFORMS.keys()].join(' and ')} (os/architecture)`);
    }
    if (seen.includes(name)) throw new Error(`lists ${name} twice`);
    seen.push(name);
  }
  return seen;
}

/**
 * The images a request stands for: one per configured platform, in order, unless the name picks
 * its architecture (`arm64/...`), which is one image for that architecture.
 */
export function forPlatforms(image: ImageRequest, platforms: readonly Architecture[]): ImageRequest[] {
  if (image.archRequested) return [image];
  return platforms.map((arch) => ({ ...image, arch }));
}
