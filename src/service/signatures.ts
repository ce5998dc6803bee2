// Signatures as the registry serves them (NIXERY_SIGNING_KEY): the signature manifest under the
// cosign tag `sha256-<hex>.sig`, and its descriptor in the referrers index. Only a manifest or
// index that `name` resolves to is signed as `name`: a signature says "HOST/NAME is this
// digest", so a digest from another repository gets none (404), whoever asks.

import { ManifestNotFoundError, NixeryError } from '../errors.js';
import { INDEX_MEDIA_TYPES, IMAGE_MANIFEST_MEDIA_TYPES, type Blob } from '../manifest/manifest.js';
import type { Descriptor } from '../signing/cosign.js';
import { artifactBlobs, type SignatureStore } from '../signing/store.js';
import { LruCache } from '../util/lru.js';
import type { RegistryService } from './registry-service.js';
import type { BlobRequester } from './blob-policy.js';
import type { SignatureDetails } from './explorer-types.js';

export interface SignatureSources {
  service: Pick<RegistryService, 'contains'>;
  /** A manifest by digest from storage (the blob policy's). */
  manifest(digest: string, who?: BlobRequester): Promise<{ bytes: Buffer; mediaType: string }>;
}

export class Signatures {
  /** `name@digest` of the signature blobs served under a name: what a restricted client may then fetch. */
  private readonly served = new LruCache<string, true>(16_384);

  constructor(
    /** Undefined: signing is off (every .sig tag is unknown, no signature referrers). */
    readonly store: SignatureStore | undefined,
    private readonly sources: SignatureSources,
  ) {}

  get enabled(): boolean {
    return this.store !== undefined;
  }

  /** What the explorer says of the signature of manifest `digest` served as `name`. */
  details(name: string, digest: string): SignatureDetails {
    if (!this.store) return { signed: false };
    const { algorithm, fingerprint } = this.store.keyInfo;
    return { signed: true, tag: `${name}:${digest.replace(':', '-')}.sig`, algorithm, keyFingerprint: fingerprint };
  }

  /** The signature manifest of `subjectDigest` as `name` (the `.sig` tag); 404 MANIFEST_UNKNOWN when there is none to give. */
  async signatureManifest(name: string, subjectDigest: string, who?: BlobRequester): Promise<Blob> {
    const subject = await this.subject(name, subjectDigest, who);
    if (!subject || !this.store) throw new ManifestNotFoundError(`no signature of ${subjectDigest} in ${name}`);
    const artifact = await this.store.signature(name, subject);
    this.remember(name, artifactBlobs(artifact).map((b) => b.digest));
    const m = artifact.manifest;
    return { mediaType: m.descriptor.mediaType, digest: m.descriptor.digest, size: m.descriptor.size, bytes: m.bytes };
  }

  /**
   * The referrers of `subjectDigest` in `name` that are signatures: the signature manifest's
   * descriptor (with its artifactType), made on first request like the `.sig` tag. None when
   * signing is off or the digest is no manifest of `name`.
   */
  async signatureReferrers(name: string, subjectDigest: string, who?: BlobRequester): Promise<Descriptor[]> {
    if (!this.store) return [];
    const subject = await this.subject(name, subjectDigest, who);
    if (!subject) return [];
    const artifact = await this.store.signature(name, subject);
    this.remember(name, artifactBlobs(artifact).map((b) => b.digest));
    return [artifact.manifest.descriptor];
  }

  /** Whether `digest` is a signature blob or manifest served under `name` (repository scoping). */
  contains(name: string, digest: string): boolean {
    return this.served.get(`${name}@${digest}`) === true;
  }

  private remember(name: string, digests: string[]): void {
    for (const d of digests) this.served.set(`${name}@${d}`, true);
  }

  /** The manifest or index `digest` of `name`, as a descriptor; undefined when it is none. */
  private async subject(name: string, digest: string, who?: BlobRequester): Promise<Descriptor | undefined> {
    if (!this.store || !(await this.sources.service.contains(name, digest))) return undefined;
    let found: { bytes: Buffer; mediaType: string };
    try {
      found = await this.sources.manifest(digest, who);
    } catch (err) {
      if (err instanceof NixeryError && err.kind === 'MANIFEST_UNKNOWN') return undefined;
      throw err;
    }
    // A config or layer digest is in the name's scope too: only manifests and indexes are signed.
    if (!IMAGE_MANIFEST_MEDIA_TYPES.has(found.mediaType) && !INDEX_MEDIA_TYPES.has(found.mediaType)) return undefined;
    return { mediaType: found.mediaType, digest, size: found.bytes.length };
  }
}
