// The sigstore/cosign signature format, as containers/image (skopeo, podman) and cosign read it
// from a registry: for a manifest `sha256:<hex>` of repository HOST/NAME, the tag
// `sha256-<hex>.sig` of NAME names an OCI manifest whose one layer is the "simple signing"
// payload (media type application/vnd.dev.cosign.simplesigning.v1+json) annotated with the
// base64 signature of those bytes (dev.cosignproject.cosign/signature), and whose config is the
// OCI image config cosign writes. The manifest also names the signed manifest as its `subject`,
// so the same manifest is the signature's entry in the referrers API (OCI 1.1).
// Everything here is a pure function of (reference, subject, signature): the payload and config
// are the same bytes on every replica; only an ECDSA signature is random, which is why the
// signature is stored once (store.ts).

import { createHash } from 'node:crypto';
import { MEDIA_TYPES } from '../manifest/manifest.js';

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
/** The artifactType cosign gives signatures it lists as OCI 1.1 referrers. */
export const SIGNATURE_ARTIFACT_TYPE = 'application/vnd.dev.cosign.artifact.sig.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';

/** `sha256-<hex>.sig`: the tag the signatures of manifest `sha256:<hex>` are found under. */
export const SIGNATURE_TAG = /^sha256-([a-f0-9]{64})\.sig$/;

export function signatureTag(subjectDigest: string): string {
  return `${subjectDigest.replace(':', '-')}.sig`;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ContentBlob {
  descriptor: Descriptor;
  bytes: Buffer;
}

/** The parts of a signature: the three blobs clients fetch, and the manifest's descriptor. */
export interface SignatureArtifact {
  payload: ContentBlob;
  config: ContentBlob;
  manifest: ContentBlob;
}

function blob(mediaType: string, bytes: Buffer): ContentBlob {
  return { descriptor: { mediaType, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length }, bytes };
}

/**
 * The simple-signing payload, byte for byte as cosign writes it (Go's encoding/json of its
 * struct: these key orders, no spaces, `optional` null). `reference` is HOST/NAME without a tag.
 */
export function simpleSigningPayload(reference: string, subjectDigest: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': reference }, image: { 'docker-manifest-digest': subjectDigest }, type: 'cosign container image signature' },
      optional: null,
    }),
  );
}

/** The signature manifest and its blobs for a payload signed with `signature` (base64). */
export function signatureArtifact(payloadBytes: Buffer, signature: string, subject: Descriptor): SignatureArtifact {
  const payload = blob(SIMPLE_SIGNING_MEDIA_TYPE, payloadBytes);
  // cosign's config: an image config whose one "layer" is the payload, with zero times.
  const config = blob(
    OCI_CONFIG,
    Buffer.from(
      JSON.stringify({
        architecture: '',
        created: '0001-01-01T00:00:00Z',
        history: [{ created: '0001-01-01T00:00:00Z' }],
        os: '',
        rootfs: { type: 'layers', diff_ids: [payload.descriptor.digest] },
        config: {},
      }),
    ),
  );
  const manifest = blob(
    MEDIA_TYPES.ociManifest,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociManifest,
        artifactType: SIGNATURE_ARTIFACT_TYPE,
        config: config.descriptor,
        layers: [{ ...payload.descriptor, annotations: { [SIGNATURE_ANNOTATION]: signature } }],
        subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      }),
    ),
  );
  manifest.descriptor.artifactType = SIGNATURE_ARTIFACT_TYPE;
  return { payload, config, manifest };
}
