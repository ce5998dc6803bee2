// The front page's images built lately, and the layers they share: a layer whose digest several
// manifests list is downloaded once by a client that pulls them all.

import { explorePath, getJson, type RecentImagesResponse } from './api.js';
import { digestView, fill, h, link } from './dom.js';
import { formatBytes, formatTime, shortDigest } from './lib/format.js';

export interface RecentSection {
  element: HTMLElement;
  load(): Promise<void>;
}

/** `name:tag` → a link to its page. */
function imageLink(image: string): HTMLAnchorElement {
  const colon = image.lastIndexOf(':');
  return link(explorePath(image.slice(0, colon), image.slice(colon + 1)), image);
}

export function recentSection(): RecentSection {
  const body = h('tbody', { attrs: { id: 'recent-images-body' } });
  const note = h('p', { class: 'note', attrs: { id: 'recent-note' } });
  const sharedBody = h('tbody', { attrs: { id: 'shared-layers-body' } });
  const sharedNote = h('p', { class: 'note', attrs: { id: 'shared-layers-note' } });
  const sharedWrap = h('div', { class: 'table-wrap' }, h('table', { class: 'shared-layers' }, h('thead', {}, h('tr', {}, h('th', {}, 'Layer'), h('th', {}, 'Holds'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'In images'))), sharedBody));
  const element = h(
    'div',
    {},
    h(
      'section',
      { attrs: { id: 'recent-images' } },
      h('h2', {}, 'Recently built images'),
      note,
      h('div', { class: 'table-wrap' }, h('table', { class: 'recent' }, h('thead', {}, h('tr', {}, h('th', {}, 'Image'), h('th', { class: 'num' }, 'Layers'), h('th', { class: 'num' }, 'Download'), h('th', { class: 'num' }, 'Unpacked'), h('th', {}, 'Manifest'), h('th', {}, 'When'))), body)),
    ),
    h(
      'section',
      { attrs: { id: 'shared-layers' } },
      h('h2', {}, 'The most shared layers'),
      h('p', { class: 'note' }, 'Layers that several of these images list in their manifests: a client that has one of them does not download the layer again for the others.'),
      sharedNote,
      sharedWrap,
    ),
  );

  async function load(): Promise<void> {
    try {
      const { images, sharedLayers } = await getJson<RecentImagesResponse>('/api/v1/images');
      note.textContent = images.length === 0 ? 'No image was built or pulled since the registry started.' : '';
      fill(
        body,
        ...images.map((i) =>
          h(
            'tr',
            { attrs: { 'data-image': i.image } },
            h('td', { class: 'name' }, link(explorePath(i.name, i.tag), i.image)),
            h('td', { class: 'num' }, i.layers),
            h('td', { class: 'num' }, formatBytes(i.compressedSize)),
            h('td', { class: 'num' }, formatBytes(i.uncompressedSize)),
            h('td', {}, digestView(i.manifestDigest, shortDigest(i.manifestDigest))),
            h('td', { class: 'when' }, h('time', { attrs: { datetime: i.at } }, formatTime(i.at)), i.built ? '' : ' (from storage)'),
          ),
        ),
      );
      sharedWrap.hidden = sharedLayers.length === 0;
      sharedNote.textContent = sharedLayers.length === 0 ? (images.length < 2 ? 'Build two images to see what they share.' : 'These images share no layer.') : '';
      fill(
        sharedBody,
        ...sharedLayers.map((l) =>
          h(
            'tr',
            { attrs: { 'data-digest': l.digest } },
            h('td', {}, digestView(l.digest, shortDigest(l.digest))),
            h('td', { class: 'holds' }, l.label),
            h('td', { class: 'num' }, formatBytes(l.size)),
            h('td', { class: 'images' }, h('strong', {}, `${l.images.length} images: `), ...l.images.flatMap((image, i) => [i > 0 ? ', ' : '', imageLink(image)])),
          ),
        ),
      );
    } catch (err) {
      note.textContent = `The list of images is unavailable: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  return { element, load };
}
