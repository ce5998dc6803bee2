// The index page's explorer: search the package set, compose an image name from the packages
// picked, copy its pull commands, build it and watch the build, and the images built lately.

import { ApiError, explorePath, getJson, type PackageHit, type PackageSearch, type RecentImage } from './api.js';
import { buildPanel } from './build.js';
import { commandsWidget } from './commands.js';
import { fill, h, link, pullHost } from './dom.js';
import { formatBytes, formatTime, shortDigest } from './lib/format.js';
import { componentFor, composeName, validTag } from './lib/names.js';

const SEARCH_LIMIT = 25;
const SEARCH_DELAY_MS = 200;

export function startIndex(app: HTMLElement): void {
  const chosen: string[] = [];

  // --- search ---
  const search = h('input', { attrs: { type: 'search', id: 'package-search', placeholder: 'Search packages: name, attribute or description', autocomplete: 'off', 'aria-label': 'Search packages' } });
  const searchNote = h('p', { class: 'note', attrs: { id: 'search-note', 'aria-live': 'polite' } });
  const results = h('ul', { class: 'results', attrs: { id: 'search-results' } });
  let searchTimer: ReturnType<typeof setTimeout> | undefined;
  let searchAbort: AbortController | undefined;

  async function runSearch(): Promise<void> {
    const q = search.value.trim();
    searchAbort?.abort();
    if (q === '') {
      fill(results);
      searchNote.textContent = '';
      return;
    }
    const abort = new AbortController();
    searchAbort = abort;
    try {
      const found = await getJson<PackageSearch>(`/api/v1/packages?q=${encodeURIComponent(q)}&limit=${SEARCH_LIMIT}`, abort.signal);
      if (abort.signal.aborted) return;
      if (found.state === 'indexing') {
        searchNote.textContent = 'The package list of this revision is being indexed; searching again shortly…';
        searchTimer = setTimeout(() => void runSearch(), 1500);
      } else if (found.state === 'failed') {
        searchNote.textContent = `The package list could not be indexed${found.error ? `: ${found.error.message}` : ''}.`;
      } else {
        searchNote.textContent = found.total === 0 ? `No package matches “${q}”.` : `${found.total} package${found.total === 1 ? '' : 's'}${found.total > found.packages.length ? `, the first ${found.packages.length} shown` : ''}.`;
      }
      fill(results, ...found.packages.map(resultRow));
    } catch (err) {
      if (abort.signal.aborted) return;
      searchNote.textContent = err instanceof ApiError ? `Search failed: ${err.message}` : 'Search failed: the registry did not answer.';
      fill(results);
    }
  }

  function resultRow(p: PackageHit): HTMLElement {
    const component = componentFor(p.attr);
    const added = component !== null && chosen.includes(component);
    return h(
      'li',
      { class: 'result', attrs: { 'data-attr': p.attr } },
      h('div', { class: 'result-main' }, h('code', { class: 'attr' }, p.attr), ' ', h('span', { class: 'pkg-name' }, p.name)),
      p.description ? h('div', { class: 'description' }, p.description) : null,
      h(
        'button',
        {
          class: 'add',
          attrs: { type: 'button', disabled: component === null || added, title: component === null ? 'this attribute cannot be named in an image' : undefined },
          on: { click: () => component && add(component) },
        },
        added ? 'Added' : 'Add',
      ),
    );
  }

  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => void runSearch(), SEARCH_DELAY_MS);
  });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      clearTimeout(searchTimer);
      void runSearch();
    }
  });

  // --- composition ---
  const chips = h('ul', { class: 'chips', attrs: { id: 'chosen-packages' } });
  const shell = h('input', { attrs: { type: 'checkbox', id: 'opt-shell' } });
  const arm64 = h('input', { attrs: { type: 'checkbox', id: 'opt-arm64' } });
  const tag = h('input', { attrs: { type: 'text', id: 'opt-tag', value: 'latest', size: 12, spellcheck: 'false', 'aria-label': 'Tag' } });
  const imageRef = h('code', { class: 'image-ref', attrs: { id: 'image-ref' } });
  const tagNote = h('span', { class: 'note', attrs: { id: 'tag-note' } });
  const commands = commandsWidget();
  const buildButton = h('button', { class: 'primary', attrs: { type: 'button', id: 'build-button' }, on: { click: () => void build() } }, 'Build image');
  const exploreLink = h('span', { attrs: { id: 'explore-current' } });
  const panel = buildPanel((s) => {
    if (s.state === 'succeeded') void loadRecent();
  });

  function add(component: string): void {
    if (!chosen.includes(component)) chosen.push(component);
    update();
    void runSearch();
  }

  function remove(component: string): void {
    const i = chosen.indexOf(component);
    if (i >= 0) chosen.splice(i, 1);
    update();
    void runSearch();
  }

  function current(): { name: string | null; tag: string } {
    return { name: composeName({ packages: chosen, shell: shell.checked, arm64: arm64.checked, tag: tag.value }), tag: tag.value.trim() || 'latest' };
  }

  function update(): void {
    fill(
      chips,
      ...chosen.map((c) =>
        h('li', { class: 'chip', attrs: { 'data-component': c } }, h('code', {}, c), h('button', { class: 'remove', attrs: { type: 'button', 'aria-label': `Remove ${c}` }, on: { click: () => remove(c) } }, '×')),
      ),
    );
    if (chosen.length === 0) chips.appendChild(h('li', { class: 'note' }, 'No packages yet: search and add some.'));
    const { name, tag: t } = current();
    const tagOk = validTag(t);
    tagNote.textContent = tagOk ? '' : 'A tag is letters, digits, _ . and -, starting with a letter, digit or _.';
    imageRef.textContent = name ? `${pullHost()}/${name}:${t}` : '—';
    commands.update(name && tagOk ? name : null, t);
    buildButton.disabled = !name || !tagOk;
    fill(exploreLink, name && tagOk ? link(explorePath(name, t), 'Explore this image') : null);
  }
  for (const input of [shell, arm64, tag]) input.addEventListener('input', update);

  async function build(): Promise<void> {
    const { name, tag: t } = current();
    if (!name || !validTag(t)) return;
    buildButton.disabled = true;
    try {
      await panel.start(name, t);
    } finally {
      buildButton.disabled = false;
    }
  }

  // --- recently built ---
  const recentBody = h('tbody', { attrs: { id: 'recent-images-body' } });
  const recentNote = h('p', { class: 'note', attrs: { id: 'recent-note' } });
  const recent = h(
    'section',
    { attrs: { id: 'recent-images' } },
    h('h2', {}, 'Recently built images'),
    recentNote,
    h('table', { class: 'recent' }, h('thead', {}, h('tr', {}, h('th', {}, 'Image'), h('th', {}, 'Layers'), h('th', {}, 'Download'), h('th', {}, 'Unpacked'), h('th', {}, 'Manifest'), h('th', {}, 'When'))), recentBody),
  );

  async function loadRecent(): Promise<void> {
    try {
      const { images } = await getJson<{ images: RecentImage[] }>('/api/v1/images');
      recentNote.textContent = images.length === 0 ? 'No image was built or pulled since the registry started.' : '';
      fill(
        recentBody,
        ...images.map((i) =>
          h(
            'tr',
            { attrs: { 'data-image': i.image } },
            h('td', {}, link(explorePath(i.name, i.tag), i.image)),
            h('td', { class: 'num' }, i.layers),
            h('td', { class: 'num' }, formatBytes(i.compressedSize)),
            h('td', { class: 'num' }, formatBytes(i.uncompressedSize)),
            h('td', {}, h('code', { attrs: { title: i.manifestDigest } }, shortDigest(i.manifestDigest))),
            h('td', {}, formatTime(i.at), i.built ? '' : ' (from storage)'),
          ),
        ),
      );
    } catch (err) {
      recentNote.textContent = `The list of images is unavailable: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  fill(
    app,
    h(
      'section',
      { class: 'card', attrs: { id: 'composer' } },
      h('h2', {}, 'Compose an image'),
      h('div', { class: 'search' }, search),
      searchNote,
      results,
      h('h3', {}, 'Packages'),
      chips,
      h(
        'div',
        { class: 'options' },
        h('label', {}, shell, ' shell (bash, coreutils, moreutils, nano)'),
        h('label', {}, arm64, ' arm64 (aarch64-linux)'),
        h('label', {}, 'tag ', tag),
        tagNote,
      ),
      h('p', { class: 'ref-line' }, 'Image: ', imageRef, ' ', exploreLink),
      commands.element,
      h('div', { class: 'build-row' }, buildButton),
      panel.element,
    ),
    recent,
  );
  update();
  void loadRecent();
}
