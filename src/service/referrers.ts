// The referrers of an image manifest (OCI 1.1): what `GET /v2/NAME/referrers/DIGEST` and the
// referrers tag schema (`sha256-<hex>`) answer. Descriptors come from a list of sources, each a
// function of the repository name and the subject digest: the SBOMs and provenance the builder
// made with the image, and whatever else is added (signatures). The index is sorted, so every
// replica answers the same bytes.

import { referrersIndex, type ReferrerDescriptor } from '../manifest/referrers.js';
import type { Blob } from '../manifest/manifest.js';
import type { ImageBuilder } from '../builder/builder.js';

/** Where referrers come from: the descriptors of the manifests whose subject is `subject`. */
export type ReferrerSource = (name: string, subject: string) => Promise<readonly ReferrerDescriptor[]>;

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
  async index(name: string, subject: string, artifactType?: string): Promise<Blob> {
    const lists = await Promise.all(this.sources.map((source) => source(name, subject)));
    return referrersIndex(lists.flat(), artifactType);
  }
}
