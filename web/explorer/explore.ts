// `/explore/<name>:<tag>`: what an image is made of. Its layers in groups (shared runtimes, its
// packages, the customisation layer) with digests, sizes and store paths, a treemap of the
// closure by size, which layers other recent images share, the pull commands, and links to the
// manifest and config JSON. An image that is not built can be built from here; a name with a
// package the source does not have says so.

import { ApiError, getJson, type ImageDetails, type LayerDetails } from './api.js';
import { buildPanel } from './build.js';
import { commandsWidget } from './commands.js';
import { digestView, fill, h, link, svg } from './dom.js';
import { formatBytes, percent, shortDigest, storePathName } from './lib/format.js';
import { groupLayers, type LayerGroup } from './lib/layers.js';
import { canonicalName } from './lib/names.js';
import { squarify, type Rect } from './lib/treemap.js';

/** The image named by the page's URL: `/explore/<name>[:<tag>]`. */
function imageFromPath(): { name: string; tag: string } {
  const ref = decodeURIComponent(location.pathname.slice('/explore/'.length));
  const colon = ref.lastIndexOf(':');
  return colon < 0 ? { name: ref, tag: 'latest' } : { name: ref.slice(0, colon), tag: ref.slice(colon + 1) };
}

/** More layers than this in a group: the group starts folded. */
const OPEN_GROUP_MAX = 12;

export async function startExplore(app: HTMLElement): Promise<void> {
  const typed = imageFromPath();
  // The page's name as the registry writes it, in the address bar too.
  const name = canonicalName(typed.name) ?? typed.name;
  const { tag } = typed;
  if (name !== typed.name) history.replaceState(null, '', `/explore/${name}:${tag}`);
  fill(app, h('p', { class: 'note', attrs: { id: 'explore-loading' } }, 'Loading…'));
  let details: ImageDetails;
  try {
    details = await getJson<ImageDetails>(`/api/v1/images/${name}:${tag}`);
  } catch (err) {
    await notBuilt(app, name, tag, err);
    return;
  }
  render(app, details);
}

/**
 * Why the image is not there: not built yet (offer to build it), or a package the source does
 * not have (the registry's tags/list answers 404 NAME_UNKNOWN for such a name, evaluating it
 * without building), or another error.
 */
async function notBuilt(app: HTMLElement, name: string, tag: string, err: unknown): Promise<void> {
  const e = err instanceof ApiError ? err : null;
  let canBuild = e?.status === 404 && e.code === 'MANIFEST_UNKNOWN';
  let unknown: ApiError | null = null;
  if (canBuild) {
    fill(app, h('p', { class: 'note', attrs: { id: 'explore-loading' } }, 'Not built yet: checking its packages…'));
    try {
      await getJson<unknown>(`/v2/${name}/tags/list?n=1`);
    } catch (check) {
      // Anything but "no such packages" (a refusal, a timeout): building says more.
      if (check instanceof ApiError && check.status === 404 && check.code === 'NAME_UNKNOWN') {
        unknown = check;
        canBuild = false;
      }
    }
  }
  const banner = unknown
    ? h(
        'div',
        { class: 'error', attrs: { id: 'explore-unknown', role: 'alert' } },
        h('strong', {}, 'No such package'),
        h('p', {}, `${name}:${tag} cannot be built: the package source has no package of that name.`),
        h('pre', {}, unknown.message),
      )
    : h('div', { class: 'error', attrs: { id: 'explore-error', role: 'alert' } }, h('strong', {}, e?.code ?? 'ERROR'), h('pre', {}, err instanceof Error ? err.message : String(err)));
  // Built: show the image in place of this.
  const panel = buildPanel((s) => {
    if (s.state === 'succeeded') void startExplore(app);
  });
  const build = (): void => {
    // What the page said before the build is stale now: the build's own outcome replaces it.
    banner.remove();
    void panel.start(name, tag);
  };
  fill(
    app,
    banner,
    canBuild ? h('p', {}, h('button', { class: 'primary', attrs: { type: 'button', id: 'build-button' }, on: { click: build } }, `Build ${name}:${tag}`)) : null,
    panel.element,
    h('p', {}, link('/', unknown ? '← Search the package set' : '← Search packages and compose another image')),
  );
}

function render(app: HTMLElement, d: ImageDetails): void {
  const commands = commandsWidget();
  commands.update(d.name, d.tag);
  const title = document.querySelector('h1.image-title');
  if (title) title.textContent = d.image;
  const shared = d.layers.filter((l) => l.shared);
  fill(
    app,
    h(
      'section',
      { class: 'card', attrs: { id: 'image-summary' } },
      h(
        'dl',
        { class: 'summary' },
        h('dt', {}, 'Image'),
        h('dd', {}, h('code', { attrs: { id: 'image-name' } }, d.image)),
        h('dt', {}, 'Packages'),
        h('dd', {}, ...d.packages.flatMap((p, i) => [i > 0 ? ' ' : '', h('code', {}, p)])),
        h('dt', {}, 'Architecture'),
        h('dd', {}, d.architecture),
        h('dt', {}, 'Revision'),
        h('dd', {}, d.revision ? digestView(d.revision, shortDigest(d.revision), { id: 'revision' }) : 'none (an unpinned source)'),
        h('dt', {}, 'Manifest'),
        h('dd', {}, digestView(d.manifest.digest, shortDigest(d.manifest.digest), { id: 'manifest-digest' })),
        h('dt', {}, 'Config'),
        h('dd', {}, digestView(d.config.digest, shortDigest(d.config.digest), { id: 'config-digest' })),
        h('dt', {}, 'Size'),
        h(
          'dd',
          { attrs: { id: 'image-totals' } },
          `${d.totals.layers} layers, ${formatBytes(d.totals.size)} to download, ${formatBytes(d.totals.uncompressedSize)} unpacked, ${d.totals.storePaths} store paths`,
          shared.length ? `, ${shared.length} shared runtime layer${shared.length === 1 ? '' : 's'}` : '',
        ),
        h('dt', {}, 'JSON'),
        h(
          'dd',
          { class: 'json-links' },
          Object.assign(link(d.links.manifest, 'OCI manifest'), { id: 'link-manifest' }),
          ' · ',
          Object.assign(link(d.links.dockerManifest, 'Docker manifest'), { id: 'link-docker-manifest' }),
          ' · ',
          Object.assign(link(d.links.config, 'image config'), { id: 'link-config' }),
          ' · ',
          Object.assign(link(`/api/v1/images/${d.image}`, 'these details'), { id: 'link-details' }),
        ),
        ...attestationRows(d),
        ...signatureRows(d),
      ),
      h('h3', {}, 'Pull it'),
      commands.element,
    ),
    sharingSection(d),
    h('section', { attrs: { id: 'closure' } }, h('h2', {}, 'The closure by size'), chart(d), legend()),
    h(
      'section',
      { attrs: { id: 'layers' } },
      h('h2', {}, 'Layers'),
      h('p', { class: 'note' }, 'Grouped as the layering makes them; in manifest order within a group. The customisation layer (symlinks to the packages, /usr/bin/env, /tmp) is last in the manifest.'),
      h('div', { attrs: { id: 'layer-groups' } }, ...groupLayers(d.layers).map((g) => layerGroup(d, g))),
    ),
  );
}

/** The SBOMs and provenance (links), and the licenses their store paths declare. */
function attestationRows(d: ImageDetails): HTMLElement[] {
  const a = d.attestations;
  if (!a) return [];
  const names: Record<string, string> = { 'application/vnd.cyclonedx+json': 'CycloneDX SBOM', 'application/spdx+json': 'SPDX SBOM', 'application/vnd.in-toto+json': 'SLSA provenance' };
  const links = a.documents.flatMap((doc, i) => [i > 0 ? ' · ' : '', link(doc.link, names[doc.artifactType] ?? doc.artifactType)]);
  const licenses = a.licenses.map((l) => `${l.license} (${l.storePaths})`).join(', ');
  return [
    h('dt', {}, 'SBOMs'),
    h('dd', { class: 'json-links', attrs: { id: 'attestations' } }, ...links, ' · ', link(a.referrers, 'referrers')),
    h('dt', {}, 'Licenses'),
    h('dd', { attrs: { id: 'licenses' } }, `${licenses || 'none declared'}${a.withoutLicense ? `; ${a.withoutLicense} store path${a.withoutLicense === 1 ? '' : 's'} without` : ''}`),
  ];
}

/** Whether the registry signs what it serves of the image, and where the signature is. */
function signatureRows(d: ImageDetails): HTMLElement[] {
  const s = d.signature;
  if (!s) return [];
  const text = s.signed
    ? `yes: a cosign signature (${s.algorithm} key ${s.keyFingerprint?.slice(0, 23)}…), tag ${s.tag}`
    : 'no: this registry signs nothing (NIXERY_SIGNING_KEY is not set)';
  return [h('dt', {}, 'Signed'), h('dd', { attrs: { id: 'signature' } }, text)];
}

/** Which layers the other recent images have too, and what a client that has them skips. */
function sharingSection(d: ImageDetails): HTMLElement {
  const s = d.sharing;
  const summary =
    s.compared === 0
      ? 'No other image was built lately here to compare it with.'
      : s.layers.length === 0
        ? `None of its layers is in the ${s.compared} other image${s.compared === 1 ? '' : 's'} built lately.`
        : `${s.layers.length} of its ${d.totals.layers} layers are in other images built lately: a client that has those images downloads ${formatBytes(s.totalBytes - s.skippedBytes)} of ${formatBytes(s.totalBytes)}, skipping ${formatBytes(s.skippedBytes)} (${percent(s.skippedBytes, s.totalBytes)}).`;
  return h(
    'section',
    { attrs: { id: 'sharing' } },
    h('h2', {}, 'What it shares'),
    h('p', { attrs: { id: 'sharing-summary', 'data-skipped': s.skippedBytes, 'data-total': s.totalBytes } }, summary),
    s.images.length
      ? h(
          'ul',
          { class: 'sharing-images', attrs: { id: 'sharing-images' } },
          ...s.images.map((o) =>
            h('li', { attrs: { 'data-image': o.image, 'data-bytes': o.bytes } }, 'With ', link(`/explore/${o.name}:${o.tag}`, o.image), `: ${o.layers} layer${o.layers === 1 ? '' : 's'}, ${formatBytes(o.bytes)} (${percent(o.bytes, s.totalBytes)}) not downloaded again`),
          ),
        )
      : null,
    s.layers.length
      ? h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'sharing', attrs: { id: 'sharing-table' } },
            h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'Layer'), h('th', {}, 'Holds'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'Also in'))),
            h(
              'tbody',
              {},
              ...s.layers.map((l) =>
                h(
                  'tr',
                  { attrs: { 'data-digest': l.digest } },
                  h('td', { class: 'num' }, l.index),
                  h('td', {}, digestView(l.digest, shortDigest(l.digest))),
                  h('td', { class: 'holds' }, l.label),
                  h('td', { class: 'num' }, formatBytes(l.size)),
                  h('td', { class: 'images' }, ...l.images.flatMap((image, i) => [i > 0 ? ', ' : '', imageLink(image)])),
                ),
              ),
            ),
          ),
        )
      : null,
  );
}

function imageLink(image: string): HTMLAnchorElement {
  const colon = image.lastIndexOf(':');
  return link(`/explore/${image.slice(0, colon)}:${image.slice(colon + 1)}`, image);
}

function legend(): HTMLElement {
  return h(
    'p',
    { class: 'legend' },
    h('span', { class: 'swatch shared' }),
    ' shared runtime layer (popular in the package set) ',
    h('span', { class: 'swatch own' }),
    ' other layers. Each box is a store path, sized by its NAR size; boxes are grouped by layer.',
  );
}

const CHART_W = 960;
const CHART_H = 360;
const GAP = 2;

/** A treemap of the store paths by NAR size, grouped by layer (old records: layers by size). */
function chart(d: ImageDetails): SVGSVGElement {
  const root = svg('svg', { id: 'closure-chart', viewBox: `0 0 ${CHART_W} ${CHART_H}`, role: 'img', 'aria-label': `Store paths of ${d.image} by size` });
  const layers = d.layers.filter((l) => l.kind === 'store-paths');
  const layerWeight = (l: LayerDetails) => (l.storePaths ? l.storePaths.reduce((s, p) => s + p.narSize, 0) : (l.uncompressedSize ?? l.size));
  for (const { item: layer, rect } of squarify(layers, layerWeight, { x: 0, y: 0, w: CHART_W, h: CHART_H })) {
    const group = svg('g', { class: `layer ${layer.shared ? 'shared' : 'own'}`, 'data-layer': layer.index });
    const inner = inset(rect, GAP);
    group.appendChild(svg('rect', { class: 'layer-box', x: inner.x, y: inner.y, width: inner.w, height: inner.h }, svg('title', {}, layerTitle(layer))));
    const paths = layer.storePaths ?? [];
    for (const { item: p, rect: r } of squarify(paths, (x) => x.narSize, inset(inner, 1))) {
      const box = inset(r, 0.5);
      group.appendChild(svg('rect', { class: 'path-box', x: box.x, y: box.y, width: box.w, height: box.h }, svg('title', {}, `${p.path}\n${formatBytes(p.narSize)} · layer ${layer.index}`)));
      const label = fitLabel(storePathName(p.path), box);
      if (label) group.appendChild(svg('text', { x: box.x + 4, y: box.y + 14, class: 'path-label' }, label));
    }
    root.appendChild(group);
  }
  return root;
}

function layerTitle(l: LayerDetails): string {
  const what = l.runtime ? `shared runtime ${l.runtime}` : `${l.paths} store path${l.paths === 1 ? '' : 's'}`;
  return `layer ${l.index}: ${what}\n${formatBytes(l.size)} compressed, ${formatBytes(l.uncompressedSize)} unpacked\n${l.digest}`;
}

function inset(r: Rect, by: number): Rect {
  const dx = Math.min(by, r.w / 4);
  const dy = Math.min(by, r.h / 4);
  return { x: r.x + dx, y: r.y + dy, w: r.w - 2 * dx, h: r.h - 2 * dy };
}

/** The label cut to the box (about 7 units a character at the chart's font size), or none. */
function fitLabel(text: string, r: Rect): string | null {
  if (r.h < 18 || r.w < 30) return null;
  const chars = Math.floor((r.w - 8) / 7);
  if (chars < 3) return null;
  return text.length <= chars ? text : `${text.slice(0, chars - 1)}…`;
}

/** A group of layers: its totals in the summary, folded when it is long. */
function layerGroup(d: ImageDetails, g: LayerGroup): HTMLElement {
  const t = g.totals;
  const paths = g.id === 'customisation' ? '' : `, ${t.storePaths} store path${t.storePaths === 1 ? '' : 's'}`;
  const totals = `${t.layers} layer${t.layers === 1 ? '' : 's'}, ${formatBytes(t.size)} to download, ${formatBytes(t.uncompressedSize)} unpacked${paths}`;
  return h(
    'details',
    { class: `layer-group group-${g.id}`, attrs: { 'data-group': g.id, open: g.layers.length <= OPEN_GROUP_MAX } },
    h('summary', {}, h('strong', {}, g.title), ' · ', h('span', { class: 'group-totals' }, totals)),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'layers' },
        h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'Digest'), h('th', { class: 'num' }, 'Download'), h('th', { class: 'num' }, 'Unpacked'), h('th', {}, 'Store paths'), h('th', {}, 'Sharing'))),
        h('tbody', {}, ...g.layers.map((l) => layerRow(d, l))),
      ),
    ),
  );
}

function layerRow(d: ImageDetails, l: LayerDetails): HTMLTableRowElement {
  const contents =
    l.kind === 'customisation'
      ? h('details', {}, h('summary', {}, `links ${l.paths} output${l.paths === 1 ? '' : 's'}`), h('ul', { class: 'paths' }, ...(l.links ?? []).map((p) => h('li', {}, h('code', {}, p)))))
      : l.storePaths
        ? h(
            'details',
            {},
            h('summary', {}, `${l.paths} store path${l.paths === 1 ? '' : 's'}`),
            h('ul', { class: 'paths' }, ...[...l.storePaths].sort((a, b) => b.narSize - a.narSize).map((p) => h('li', {}, h('code', {}, p.path), ' ', h('span', { class: 'size' }, formatBytes(p.narSize))))),
          )
        : `${l.paths} store path${l.paths === 1 ? '' : 's'}`;
  const sharing =
    l.kind === 'customisation'
      ? h('span', { class: 'badge custom' }, 'customisation')
      : l.shared
        ? h('span', { class: 'badge shared', attrs: { title: `${l.popularity} derivations of the package set refer to it` } }, `shared runtime: ${l.runtime}`)
        : l.popularity
          ? h('span', { class: 'note' }, `popularity ${l.popularity}`)
          : h('span', { class: 'note' }, '—');
  return h(
    'tr',
    { class: l.shared ? 'layer-row shared' : 'layer-row', attrs: { 'data-digest': l.digest, 'data-kind': l.kind } },
    h('td', { class: 'num' }, l.index),
    h('td', {}, digestView(l.digest, shortDigest(l.digest), { href: `/v2/${d.name}/blobs/${l.digest}`, title: `${l.digest} (download the layer)` })),
    h('td', { class: 'num' }, formatBytes(l.size)),
    h('td', { class: 'num' }, formatBytes(l.uncompressedSize)),
    h('td', {}, contents),
    h('td', {}, sharing),
  );
}
