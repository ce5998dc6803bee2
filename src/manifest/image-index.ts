// The index of a multi-platform image, in both families: an OCI image index over the platforms'
// OCI manifests, and a Docker manifest list over their Docker manifests (a family never points
// into the other). Entries are in the given platform order, which is part of the image (the
// first platform is the default), and keys are in a fixed order, so the bytes, and the digests,
// are a pure function of the platforms' manifests.

import { MEDIA_TYPES, blob, type Blob, type ImageManifests } from './manifest.js';

/** One platform of an index: its OCI architecture and its manifests. */
export interface IndexEntry {
  /** OCI architecture, e.g. arm64. */
  architecture: string;
  manifests: ImageManifests;
}

/** Both forms of an index. */
export interface ImageIndex {
  oci: Blob;
  docker: Blob;
}

/** The OCI index and the Docker manifest list over `entries`, in that order. */
export function buildIndex(entries: readonly IndexEntry[]): ImageIndex {
  if (entries.length === 0) throw new Error('an index needs at least one platform');
  const form = (indexType: string, manifestType: 'oci' | 'docker') => ({
    schemaVersion: 2,
    mediaType: indexType,
    manifests: entries.map((e) => {
      const m = e.manifests[manifestType];
      return { mediaType: m.mediaType, digest: m.digest, size: m.size, platform: { architecture: e.architecture, os: 'linux' } };
    }),
  });
  return {
    oci: blob(MEDIA_TYPES.ociIndex, form(MEDIA_TYPES.ociIndex, 'oci')),
    docker: blob(MEDIA_TYPES.dockerManifestList, form(MEDIA_TYPES.dockerManifestList, 'docker')),
  };
}
