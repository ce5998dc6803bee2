// Image config and manifests. One config blob, two manifest forms over the same blobs: OCI
// (the default) and Docker schema 2 (for clients that accept only Docker types). Each form uses
// only its own family's media types. Serialisation has a fixed key order, so the bytes are a
// pure function of the inputs. Indexes over several platforms' manifests: image-index.ts.

import { createHash } from 'node:crypto';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export type ManifestFormat = 'oci' | 'docker';

/** How layer blobs are compressed (NIXERY_LAYER_COMPRESSION). */
export type LayerFormat = 'gzip' | 'zstd';

/** The OCI media type of a layer blob (also its content type in storage). */
export function layerMediaType(format: LayerFormat): string {
  return format === 'zstd' ? MEDIA_TYPES.ociLayerZstd : MEDIA_TYPES.ociLayerGzip;
}

/** Fixed creation time: the Nix store's mtime (1 s after the epoch). */
export const CREATED = '1970-01-01T00:00:01Z';
export const IMAGE_ENV = ['PATH=/bin:/usr/bin', 'SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt'];

export const LABELS = {
  packages: 'dev.nixery.packages',
  source: 'dev.nixery.source',
  revision: 'org.opencontainers.image.revision',
} as const;

export interface LayerDescriptor {
  /** sha256:<hex> of the compressed blob. */
  digest: string;
  size: number;
  /** sha256:<hex> of the uncompressed tar. */
  diffId: string;
}

export interface ImageSpec {
  /** OCI platform architecture (amd64, arm64). */
  architecture: string;
  /** Layers in manifest order: most shared first, customisation layer last. */
  layers: LayerDescriptor[];
  /** Container command, e.g. ["bash"] when the shell is in the image. */
  cmd?: string[];
  // The runtime fields below are written only when set, so an image without them keeps its bytes.
  /** `User`, e.g. `65532:65532`. */
  user?: string;
  /** The whole `Env` (default IMAGE_ENV). */
  env?: readonly string[];
  entrypoint?: string[];
  workingDir?: string;
  /** `port/proto`, e.g. `8080/tcp`. */
  exposedPorts?: string[];
  /** Labels after the registry's own (which they cannot replace). */
  labels?: Record<string, string>;
  stopSignal?: string;
  /** The requested packages, sorted. */
  packages: string[];
  /** Human description of the package source, e.g. `git https://… (branch main)`. */
  source: string;
  /** Immutable source revision, when there is one. */
  revision?: string | null;
  /** How the layers are compressed (default gzip). */
  layerFormat?: LayerFormat;
}

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

export interface ImageManifests {
  config: Blob;
  oci: Blob;
  docker: Blob;
}

export function sha256Digest(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export function blob(mediaType: string, json: unknown): Blob {
  const bytes = Buffer.from(JSON.stringify(json));
  return { mediaType, digest: sha256Digest(bytes), size: bytes.length, bytes };
}

/** The image config (the same bytes serve both manifest forms). */
export function imageConfig(spec: ImageSpec): Buffer {
  const labels: Record<string, string> = {};
  labels[LABELS.packages] = spec.packages.join(' ');
  if (spec.revision) labels[LABELS.revision] = spec.revision;
  labels[LABELS.source] = spec.source;
  for (const [key, value] of Object.entries(spec.labels ?? {})) if (!Object.hasOwn(labels, key)) labels[key] = value;
  // Docker's field order; fields not set are left out.
  const config: Record<string, unknown> = {};
  if (spec.user !== undefined) config.User = spec.user;
  if (spec.exposedPorts) config.ExposedPorts = Object.fromEntries(spec.exposedPorts.map((p) => [p, {}]));
  config.Env = spec.env ?? IMAGE_ENV;
  if (spec.entrypoint) config.Entrypoint = spec.entrypoint;
  if (spec.cmd) config.Cmd = spec.cmd;
  if (spec.workingDir !== undefined) config.WorkingDir = spec.workingDir;
  config.Labels = labels;
  if (spec.stopSignal !== undefined) config.StopSignal = spec.stopSignal;
  return Buffer.from(
    JSON.stringify({
      created: CREATED,
      architecture: spec.architecture,
      os: 'linux',
      config,
      rootfs: { type: 'layers', diff_ids: spec.layers.map((l) => l.diffId) },
    }),
  );
}

export function buildManifests(spec: ImageSpec): ImageManifests {
  const configBytes = imageConfig(spec);
  const configDigest = sha256Digest(configBytes);
  const config: Blob = { mediaType: MEDIA_TYPES.ociConfig, digest: configDigest, size: configBytes.length, bytes: configBytes };
  // Docker schema 2 has no zstd layer type: the Docker form of a zstd image names the OCI one
  // (containerd and Docker 23+ read it; clients that accept OCI manifests get the OCI form).
  const ociLayer = layerMediaType(spec.layerFormat ?? 'gzip');
  const dockerLayer = spec.layerFormat === 'zstd' ? ociLayer : MEDIA_TYPES.dockerLayerGzip;
  const form = (manifestType: string, configType: string, layerType: string, withMediaTypeField: boolean) => ({
    schemaVersion: 2,
    mediaType: withMediaTypeField ? manifestType : undefined,
    config: { mediaType: configType, digest: configDigest, size: configBytes.length },
    layers: spec.layers.map((l) => ({ mediaType: layerType, digest: l.digest, size: l.size })),
  });
  return {
    config,
    oci: blob(MEDIA_TYPES.ociManifest, form(MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociConfig, ociLayer, true)),
    docker: blob(MEDIA_TYPES.dockerManifest, form(MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerConfig, dockerLayer, true)),
  };
}

/** The media types of one platform's image manifest. */
export const IMAGE_MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
/** The media types of a multi-platform index (see image-index.ts). */
export const INDEX_MEDIA_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);
/** Which media types a digest-addressed manifest can have: image manifests and indexes. */
export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([...IMAGE_MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES]);
