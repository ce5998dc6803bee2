// An image's layers in three groups as the layering makes them: the shared runtimes (popular
// store paths, the same layer in many images), the image's own packages, and the customisation
// layer (links, /tmp), each with its totals. Manifest order within a group.

import type { LayerDetails } from '../../../src/service/explorer-types.js';

export type LayerGroupId = 'runtimes' | 'packages' | 'customisation';

export interface LayerGroup {
  id: LayerGroupId;
  title: string;
  layers: LayerDetails[];
  totals: { layers: number; size: number; uncompressedSize: number | null; storePaths: number };
}

const TITLES: Record<LayerGroupId, string> = {
  runtimes: 'Shared runtimes',
  packages: 'Packages',
  customisation: 'Customisation layer',
};

export function groupOf(l: LayerDetails): LayerGroupId {
  return l.kind === 'customisation' ? 'customisation' : l.shared ? 'runtimes' : 'packages';
}

/** The non-empty groups, in the order above. */
export function groupLayers(layers: readonly LayerDetails[]): LayerGroup[] {
  return (['runtimes', 'packages', 'customisation'] as const)
    .map((id) => {
      const members = layers.filter((l) => groupOf(l) === id);
      const unpacked = members.map((l) => l.uncompressedSize);
      return {
        id,
        title: TITLES[id],
        layers: members,
        totals: {
          layers: members.length,
          size: members.reduce((s, l) => s + l.size, 0),
          uncompressedSize: unpacked.every((n) => n !== null) ? unpacked.reduce((s: number, n) => s + n!, 0) : null,
          storePaths: members.reduce((s, l) => s + (l.kind === 'store-paths' ? l.paths : 0), 0),
        },
      };
    })
    .filter((g) => g.layers.length > 0);
}
