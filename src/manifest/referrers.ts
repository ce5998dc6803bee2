// OCI 1.1 artifacts that refer to an image manifest (SBOMs, provenance, signatures) and the
// referrers index that lists them. An artifact is an image manifest with an `artifactType`, the
// empty config, its document as the one layer, and the image manifest as `subject`. Fixed key
// order and sorted lists: the bytes are a pure function of the inputs.

import { MEDIA_TYPES, blob, sha256Digest, type Blob } from './manifest.js';

/** The OCI empty descriptor's content (`{}`), the config of artifacts that have none. */
export const EMPTY_CONFIG: Blob = (() => {
  const bytes = Buffer.from('{}');
  return { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256Digest(bytes), size: bytes.length, bytes };
})();

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** A descriptor in a referrers index: the artifact manifest, its type and annotations. */
export interface ReferrerDescriptor extends Descriptor {
  artifactType: string;
  annotations?: Record<string, string>;
}

/** The referrers tag schema: the tag that stands for the referrers of `digest` (`sha256-<hex>`). */
export const referrersTag = (digest: string): string => digest.replace(':', '-');
/** The digest a referrers-schema tag stands for, or null when the tag is not one. */
export function referrersTagDigest(tag: string): string | null {
  return /^sha256-[a-f0-9]{64}$/.test(tag) ? tag.replace('-', ':') : null;
}

/** An artifact manifest for `document` (of `artifactType`) whose subject is `subject`. */
export function artifactManifest(artifactType: string, document: Blob, subject: Descriptor, annotations: Record<string, string>): Blob {
  const sorted = Object.fromEntries(Object.entries(annotations).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return blob(MEDIA_TYPES.ociManifest, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    artifactType,
    config: { mediaType: EMPTY_CONFIG.mediaType, digest: EMPTY_CONFIG.digest, size: EMPTY_CONFIG.size },
    layers: [{ mediaType: document.mediaType, digest: document.digest, size: document.size }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    ...(Object.keys(sorted).length > 0 ? { annotations: sorted } : {}),
  });
}

/**
 * The referrers index of a subject: its referrers sorted by artifact type, then digest, those of
 * `artifactType` only when one is given.
 */
export function referrersIndex(referrers: readonly ReferrerDescriptor[], artifactType?: string): Blob {
  const seen = new Set<string>();
  const manifests = referrers
    .filter((r) => artifactType === undefined || r.artifactType === artifactType)
    .filter((r) => !seen.has(r.digest) && seen.add(r.digest))
    .sort((a, b) => (a.artifactType < b.artifactType ? -1 : a.artifactType > b.artifactType ? 1 : a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0))
    .map((r) => ({ mediaType: r.mediaType, digest: r.digest, size: r.size, artifactType: r.artifactType, ...(r.annotations ? { annotations: r.annotations } : {}) }));
  return blob(MEDIA_TYPES.ociIndex, { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests });
}
