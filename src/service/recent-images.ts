// The images this process built or found in storage lately, newest first, one entry per
// name:tag, for the explorer's list. Bounded: the oldest entry goes when it is full. It also
// answers what these images share: layers are content-addressed, so a layer whose digest two
// manifests list is downloaded once by a client that pulls both (popularity layering's point).

import type { BuiltImage } from '../builder/builder.js';
import { pullName } from '../image/name.js';
import type { ImageSharing, RecentImage, SharedLayer, SharedLayerOfImage } from './explorer-types.js';

interface LayerSummary {
  digest: string;
  size: number;
  label: string;
}

interface Entry {
  item: RecentImage;
  layers: LayerSummary[];
}

/** May the client see this repository? (access.ts Admission.mayPull) */
export type Visible = (name: string) => boolean;
const everyone: Visible = () => true;

/** What a layer holds, in a few words: its shared runtime, the largest store path, or its kind. */
export function layerLabel(layer: BuiltImage['layers'][number], last: boolean): string {
  if (last) return 'customisation layer';
  if (layer.runtime) return layer.runtime;
  const largest = [...(layer.storePaths ?? [])].sort((a, b) => b.narSize - a.narSize)[0];
  const name = largest ? largest.path.replace(/^\/nix\/store\/[a-z0-9]+-/, '') : null;
  if (name && layer.paths > 1) return `${name} and ${layer.paths - 1} more`;
  return name ?? `${layer.paths} store path${layer.paths === 1 ? '' : 's'}`;
}

export class RecentImages {
  private readonly entries: Entry[] = [];
  constructor(readonly capacity = 50) {}

  add(built: BuiltImage): void {
    // An image built with a request's config is no name:tag's (it is pulled by digest).
    if (built.image.config) return;
    const name = pullName(built.image);
    const image = `${name}:${built.image.tag}`;
    const existing = this.entries.findIndex((e) => e.item.image === image);
    if (existing >= 0) this.entries.splice(existing, 1);
    const unpacked = built.layers.map((l) => l.uncompressedSize);
    const last = built.layers.length - 1;
    this.entries.unshift({
      item: {
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
      },
      layers: built.layers.map((l, i) => ({ digest: l.digest, size: l.size, label: layerLabel(l, i === last) })),
    });
    this.entries.length = Math.min(this.entries.length, this.capacity);
  }

  list(visible: Visible = everyone): RecentImage[] {
    return this.entries.filter((e) => visible(e.item.name)).map((e) => e.item);
  }

  /**
   * Which of `built`'s layers the other recent images (those `visible`, other manifests) list
   * too, and the bytes a client that has them does not download again.
   */
  sharing(built: BuiltImage, visible: Visible = everyone): ImageSharing {
    const self = built.manifests.oci.digest;
    const others = this.entries.filter((e) => e.item.manifestDigest !== self && visible(e.item.name));
    const holders = new Map<string, string[]>();
    for (const e of others) for (const l of new Set(e.layers.map((x) => x.digest))) holders.set(l, [...(holders.get(l) ?? []), e.item.image]);
    const last = built.layers.length - 1;
    const layers: SharedLayerOfImage[] = [];
    const seen = new Set<string>();
    for (const [i, l] of built.layers.entries()) {
      const images = holders.get(l.digest);
      if (!images || seen.has(l.digest)) continue;
      seen.add(l.digest);
      layers.push({ digest: l.digest, index: i + 1, size: l.size, label: layerLabel(l, i === last), images });
    }
    const mine = new Map(built.layers.map((l) => [l.digest, l.size]));
    const images = others
      .map((e) => {
        const common = [...new Set(e.layers.map((x) => x.digest))].filter((d) => mine.has(d));
        return { image: e.item.image, name: e.item.name, tag: e.item.tag, layers: common.length, bytes: common.reduce((s, d) => s + mine.get(d)!, 0) };
      })
      .filter((x) => x.layers > 0)
      .sort((a, b) => b.bytes - a.bytes || b.layers - a.layers);
    return {
      compared: others.length,
      totalBytes: built.layers.reduce((s, l) => s + l.size, 0),
      skippedBytes: layers.reduce((s, l) => s + l.size, 0),
      layers,
      images,
    };
  }

  /** The layers most of the recent images (those `visible`) list, in at least two of them: most shared, then largest, first. */
  sharedLayers(visible: Visible = everyone, limit = 10): SharedLayer[] {
    const byDigest = new Map<string, SharedLayer>();
    for (const e of this.entries) {
      if (!visible(e.item.name)) continue;
      for (const l of e.layers) {
        const s = byDigest.get(l.digest) ?? { digest: l.digest, size: l.size, label: l.label, images: [] };
        if (!s.images.includes(e.item.image)) s.images.push(e.item.image);
        byDigest.set(l.digest, s);
      }
    }
    return [...byDigest.values()]
      .filter((s) => s.images.length >= 2)
      .sort((a, b) => b.images.length - a.images.length || b.size - a.size || (a.digest < b.digest ? -1 : 1))
      .slice(0, limit);
  }
}
