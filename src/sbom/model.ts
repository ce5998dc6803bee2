// What an image's SBOMs and provenance are made from: facts the build had in hand (the closure
// Nix reported, what the package set declares, the layers, the manifest), as plain data. The
// documents (cyclonedx.ts, spdx.ts, provenance.ts) are pure functions of it, so the same image
// gives the same bytes on every replica.

/** One store path of the image. */
export interface SbomComponent {
  path: string;
  name: string;
  /** Empty when neither the package nor its path name says. */
  version: string;
  /** SHA-256 of the path's NAR, hex (null when Nix gave none). */
  narSha256: string | null;
  narSize: number;
  /** The derivation that built it (null when unknown). */
  deriver: string | null;
  /** SPDX ids from the package's meta.license (sorted; empty when it declares none). */
  licenses: string[];
  /** Digest of the layer that holds it. */
  layer: string | null;
  /** Its runtime references (store paths of the image, sorted, itself left out). */
  references: string[];
}

/** A package asked for by the image name, as it resolved. */
export interface SbomPackage {
  /** The attribute path, dotted. */
  attrPath: string;
  drvPath: string;
  /** Output name → store path. */
  outputs: Record<string, string>;
}

export interface AttestationInput {
  /** The tool and its version (runDetails.builder, the SBOMs' tools). */
  tool: { name: string; version: string };
  image: {
    /** Repository name as clients pull it, e.g. `shell/hello`. */
    name: string;
    /** The tag it was built for. */
    tag: string;
    /** e.g. linux/amd64. */
    platform: string;
    /** Nix system, e.g. x86_64-linux. */
    system: string;
    /** The OCI image manifest this is about (the artifacts' subject). */
    manifest: { mediaType: string; digest: string; size: number };
  };
  source: {
    kind: 'channel' | 'git' | 'path';
    /** For people, credentials redacted (PinnedSource.description). */
    description: string;
    /** Where it comes from, credentials redacted (null for a local directory: its place is no part of the image). */
    uri: string | null;
    revision: string | null;
    /** A fetched nixpkgs tarball: its URL (redacted) and where Nix unpacked it. */
    tarball?: { uri: string; storePath: string | null; narSha256: string | null };
  };
  /** Seconds since the epoch: the source revision's commit time, else 0 (see README, SBOMs). */
  timestamp: number;
  build: { layering: string; budget: number; popularity: string; compression: string };
  /** The store paths the image's packages put in it (the requested outputs), sorted. */
  roots: string[];
  packages: SbomPackage[];
  /** Every store path of the image, sorted by path. */
  components: SbomComponent[];
}

/** ISO 8601 UTC without fractions, of seconds since the epoch. */
export function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The hash part of a store path (`/nix/store/<hash>-name` → `<hash>`). */
export function storeHashPart(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return base.split('-', 1)[0]!;
}

/**
 * Name and version from a store path's name, as Nix's parseDrvName splits them: the version
 * starts at the first `-` followed by something other than a letter (`glibc-2.40-66` →
 * glibc, 2.40-66; `busybox-static` → busybox-static, no version).
 */
export function splitNameVersion(name: string): { name: string; version: string } {
  for (let i = 0; i < name.length - 1; i++) {
    if (name[i] === '-' && !/[A-Za-z]/.test(name[i + 1]!)) return { name: name.slice(0, i), version: name.slice(i + 1) };
  }
  return { name, version: '' };
}

/** A purl of type `nix`: pkg:nix/<name>@<version>?store_path=<path> (qualifiers sorted, encoded). */
export function nixPurl(c: Pick<SbomComponent, 'name' | 'version' | 'path' | 'deriver'>): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
  const qualifiers = [...(c.deriver ? [`drv_path=${enc(c.deriver)}`] : []), `store_path=${enc(c.path)}`];
  return `pkg:nix/${enc(c.name)}${c.version ? `@${enc(c.version)}` : ''}?${qualifiers.join('&')}`;
}
