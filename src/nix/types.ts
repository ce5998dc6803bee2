// Shapes of what Nix tells us about a package set and a closure.

/** One store path of a runtime closure, as `nix path-info --json --closure-size` reports it. */
export interface StorePathInfo {
  path: string;
  /** Runtime references, without the path itself (self-references dropped). */
  references: string[];
  narSize: number;
  /** Size of the path's whole closure (itself included). */
  closureSize: number;
  /** The NAR's hash as Nix prints it (`sha256:<nix32>`, or SRI `sha256-<base64>` since Nix 2.19). */
  narHash?: string;
  /** The derivation that built it (absolute), or null when Nix does not know it. */
  deriver?: string | null;
}

/** The runtime closure of an image's packages. */
export interface ClosureGraph {
  /** Store paths of the requested packages' outputs, sorted, de-duplicated. */
  roots: string[];
  /** Every path of the closure, sorted by path. */
  paths: StorePathInfo[];
}

/** A requested package as the package set resolved it. */
export interface ResolvedPackage {
  /** The name as requested (from the image name). */
  requested: string;
  /** The attribute path it resolved to, e.g. ["python3Packages", "requests"]. */
  attrPath: string[];
  /** The attribute path of the derivation itself: `attrPath` without a selected output (`hello.out` → ["hello"]). */
  packagePath: string[];
  drvPath: string;
  /** The attribute paths of ResolveOptions.compareWith that name this same derivation. */
  sameAs: string[];
  /** Output name → store path, for the outputs that go into the image (default: outputsToInstall). */
  outputs: Record<string, string>;
  /** `meta.mainProgram`: the program in bin/ the package is run as (the image's default command). */
  mainProgram?: string;
  /** What the package says of itself (for SBOMs): absent where the stage does not tell. */
  meta?: PackageMeta;
  /** What the evaluation saw of the package source (the same for every package of one resolve). */
  sourceInfo?: SourceInfo;
}

/** A package's name, version and licenses as its derivation declares them: data, never code. */
export interface PackageMeta {
  /** `pname` (else the name Nix parses out of `name`). */
  pname: string;
  /** `version` (else the version Nix parses out of `name`; may be empty). */
  version: string;
  /** SPDX ids of `meta.license` (one license or a list; those without `spdxId` are left out), sorted. */
  licenses: string[];
}

/** The fetched source as the evaluation saw it. */
export interface SourceInfo {
  /** A git source: the commit's time (fetchGit's lastModified, seconds since the epoch); else null. */
  lastModified: number | null;
  /** A git or channel source: the store path Nix fetched it to; else null. */
  storePath: string | null;
  /** A channel source: the NAR hash of the unpacked tarball (`nix path-info`), as Nix prints it. */
  narHash?: string | null;
}
