// Shapes of what Nix tells us about a package set and a closure.

/** One store path of a runtime closure, as `nix path-info --json --closure-size` reports it. */
export interface StorePathInfo {
  path: string;
  /** Runtime references, without the path itself (self-references dropped). */
  references: string[];
  narSize: number;
  /** Size of the path's whole closure (itself included). */
  closureSize: number;
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
}
