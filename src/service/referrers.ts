// The referrers of an image manifest (OCI 1.1): what `GET /v2/NAME/referrers/DIGEST` and the
// referrers tag schema (`sha256-<hex>`) answer. Descriptors come from a list of sources, each a
// function of the repository name and the subject digest: the SBOMs and provenance the builder
// made with the image, and the signatures (added by the server when signing is on: `add`). The index is sorted, so every
// replica answers the same bytes.

import { referrersIndex, type ReferrerDescriptor } from '../manifest/referrers.js';
import type { Blob } from '../manifest/manifest.js';
import type { ImageBuilder } from '../builder/builder.js';
import type { BlobRequester } from './blob-policy.js';

/**
 * Where referrers come from: the descriptors of the manifests whose subject is `subject` under
 * `name`, for the client `who` (descriptors without an artifactType are left out).
 */
export type ReferrerSource = (name: string, subject: string, who?: BlobRequester) => Promise<ReadonlyArray<Omit<ReferrerDescriptor, 'artifactType'> & { artifactType?: string }>>;

/** The builder's SBOM and provenance artifacts of an image manifest, as referrers. */
export function attestationReferrers(builder: Pick<ImageBuilder, 'artifactsOf'>): ReferrerSource {
  return async (_name, subject) =>
    (await builder.artifactsOf(subject)).map((a) => ({ ...a.manifest, artifactType: a.artifactType, ...(a.annotations ? { annotations: a.annotations } : {}) }));
}

export class Referrers {
  private readonly sources: ReferrerSource[];

  constructor(sources: readonly ReferrerSource[] = []) {
    this.sources = [...sources];
  }

  /** Adds a source (e.g. signatures); its descriptors join every index from then on. */
  add(source: ReferrerSource): void {
    this.sources.push(source);
  }

  /** The referrers index of `subject` under `name`, of `artifactType` only when one is given. */
  async index(name: string, subject: string, artifactType?: string, who?: BlobRequester): Promise<Blob> {
    const lists = await Promise.all(this.sources.map((source) => source(name, subject, who)));
    return referrersIndex(lists.flat().filter((d): d is ReferrerDescriptor => typeof d.artifactType === 'string'), artifactType);
  }
}
