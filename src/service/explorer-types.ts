// The explorer API's JSON shapes (GET /api/v1/images and /api/v1/images/<name>:<tag>), shared
// by the server and the explorer page's code (web/explorer), so the two cannot drift apart. No
// imports: the page's type check sees this file alone.

export interface RecentImage {
  /** `name:tag`, with a name that pulls it (image/name.ts pullName). */
  image: string;
  name: string;
  tag: string;
  manifestDigest: string;
  revision: string | null;
  layers: number;
  /** Bytes of the layers as pulled (compressed). */
  compressedSize: number;
  /** Bytes of the layers unpacked; null when a layer's record predates the uncompressed size. */
  uncompressedSize: number | null;
  /** True when Nix ran for it here; false when it was found built in storage. */
  built: boolean;
  at: string;
}

export interface LayerDetails {
  /** 1-based position in the manifest. */
  index: number;
  kind: 'store-paths' | 'customisation';
  digest: string;
  /** Compressed size (what a pull downloads). */
  size: number;
  diffId: string;
  /** Null for layers whose record predates it. */
  uncompressedSize: number | null;
  /** How many store paths the layer holds (customisation layer: how many outputs it links). */
  paths: number;
  /** The store paths with their NAR sizes; null for records that predate them. */
  storePaths: Array<{ path: string; narSize: number }> | null;
  /** The customisation layer's linked outputs. */
  links: string[] | null;
  /** Popularity of the layer's most popular path in the package set (0: no data or unknown). */
  popularity: number | null;
  /** The shared runtime the layer holds (its package name), if any. */
  runtime: string | null;
  shared: boolean;
}

export interface ImageDetails {
  image: string;
  name: string;
  tag: string;
  architecture: string;
  packages: string[];
  revision: string | null;
  manifest: { digest: string; mediaType: string; size: number };
  dockerManifest: { digest: string; mediaType: string; size: number };
  config: { digest: string; mediaType: string; size: number };
  links: { manifest: string; dockerManifest: string; config: string; registryManifest: string; registryConfig: string };
  totals: { layers: number; size: number; uncompressedSize: number | null; storePaths: number; narSize: number | null };
  layers: LayerDetails[];
  /** Which of its layers other recent images have (the client's view of popularity layering). */
  sharing: ImageSharing;
  /** The image's SBOMs and provenance; null for images recorded before they were made. */
  attestations?: AttestationDetails | null;
  /** Whether what the registry serves of this image is signed (NIXERY_SIGNING_KEY). */
  signature?: SignatureDetails;
}

/** The cosign signature of an image manifest: made by the registry's key on first request. */
export interface SignatureDetails {
  signed: boolean;
  /** The cosign tag that holds it (`NAME:sha256-<hex>.sig`), the key's algorithm and fingerprint. */
  tag?: string;
  algorithm?: string;
  keyFingerprint?: string;
}

/** The SBOMs and provenance of an image manifest, and the license summary of its SBOM. */
export interface AttestationDetails {
  /** The referrers index that lists them (the registry API). */
  referrers: string;
  documents: Array<{ artifactType: string; manifest: string; document: string; size: number; link: string }>;
  /** How many store paths declare each license (SPDX ids), most common first. */
  licenses: Array<{ license: string; storePaths: number }>;
  /** Store paths whose package declares no license (or that no requested package is). */
  withoutLicense: number;
}

/** One of an image's layers that other recent images have too. */
export interface SharedLayerOfImage {
  digest: string;
  /** 1-based position in this image's manifest. */
  index: number;
  /** Compressed size: what a client that has one of `images` does not download again. */
  size: number;
  /** What the layer holds, in a few words (its shared runtime, or its largest store path). */
  label: string;
  /** The other recent images (`name:tag`) whose manifests list it, newest first. */
  images: string[];
}

/** What an image shares with the other images built lately (RecentImages). */
export interface ImageSharing {
  /** How many other recent images it was compared with. */
  compared: number;
  /** Compressed bytes of all its layers (a pull of it with nothing cached). */
  totalBytes: number;
  /** Compressed bytes of its layers that some other recent image has: what a client that has them all skips. */
  skippedBytes: number;
  layers: SharedLayerOfImage[];
  /** For each other recent image that shares a layer: what a client that has just that one skips, most first. */
  images: Array<{ image: string; name: string; tag: string; layers: number; bytes: number }>;
}

/** A layer on the front page's "most shared" list. */
export interface SharedLayer {
  digest: string;
  size: number;
  label: string;
  /** The recent images (`name:tag`) whose manifests list it, newest first. */
  images: string[];
}

/** GET /api/v1/images */
export interface RecentImagesResponse {
  images: RecentImage[];
  /** The layers most recent images have in common (in at least two), most shared first. */
  sharedLayers: SharedLayer[];
}
