// The images this process built or found in storage lately, newest first, one entry per
// name:tag, for the explorer's list. Bounded: the oldest entry goes when it is full.

import type { BuiltImage } from '../builder/builder.js';
import { pullName } from '../image/name.js';
import type { RecentImage } from './explorer-types.js';

export class RecentImages {
  private readonly items: RecentImage[] = [];
  constructor(readonly capacity = 50) {}

  add(built: BuiltImage): void {
    // An image built with a request's config is no name:tag's (it is pulled by digest).
    if (built.image.config) return;
    const name = pullName(built.image);
    const image = `${name}:${built.image.tag}`;
    const existing = this.items.findIndex((e) => e.image === image);
    if (existing >= 0) this.items.splice(existing, 1);
    const unpacked = built.layers.map((l) => l.uncompressedSize);
    this.items.unshift({
      image,
      name,
      tag: built.image.tag,
      manifestDigest: built.manifests.oci.digest,
      revision: built.revision,
      layers: built.layers.length,
      compressedSize: built.layers.reduce((sum, l) => sum + l.size, 0),
      uncompressedSize: unpacked.every((n) => n !== undefined) ? unpacked.reduce((sum: number, n) => sum + n!, 0) : null,
      built: !built.fromCache,
      at: new Date().toISOString(),
    });
    this.items.length = Math.min(this.items.length, this.capacity);
  }

  list(): RecentImage[] {
    return [...this.items];
  }
}
