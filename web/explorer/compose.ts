// The index page's explorer: search the package set (Enter adds the top result), compose an
// image name from the packages picked, copy its pull commands, set an image config, build it
// and watch the build, and the images built lately with the layers they share.

import { ApiError, explorePath, getJson, type PackageHit, type PackageSearch } from './api.js';
import { buildPanel } from './build.js';
import { commandsWidget } from './commands.js';
import { configForm } from './config-form.js';
import { fill, h, link, pullHost } from './dom.js';
import { canonicalName, componentFor, composeName, validTag } from './lib/names.js';
import { recentSection } from './recent.js';

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

  /** The query the results shown are of, and those results. */
  let shown: { q: string; packages: PackageHit[] } | null = null;

  async function runSearch(): Promise<PackageHit[] | null> {
    const q = search.value.trim();
    searchAbort?.abort();
    if (q === '') {
      fill(results);
      searchNote.textContent = '';
      shown = null;
      return null;
    }
    const abort = new AbortController();
    searchAbort = abort;
    try {
      const found = await getJson<PackageSearch>(`/api/v1/packages?q=${encodeURIComponent(q)}&limit=${SEARCH_LIMIT}`, abort.signal);
      if (abort.signal.aborted) return null;
      if (found.state === 'indexing') {
        searchNote.textContent = 'The package list of this revision is being indexed; searching again shortly…';
        searchTimer = setTimeout(() => void runSearch(), 1500);
      } else if (found.state === 'failed') {
        searchNote.textContent = `The package list could not be indexed${found.error ? `: ${found.error.message}` : ''}.`;
      } else {
        searchNote.textContent = found.total === 0 ? `No package matches “${q}”.` : `${found.total} package${found.total === 1 ? '' : 's'}${found.total > found.packages.length ? `, the first ${found.packages.length} shown` : ''}.`;
      }
      fill(results, ...found.packages.map(resultRow));
      results.dataset.query = q; // which query the list answers
      shown = { q, packages: found.packages };
      return found.state === 'ready' ? found.packages : null;
    } catch (err) {
      if (abort.signal.aborted) return null;
      searchNote.textContent = err instanceof ApiError ? `Search failed: ${err.message}` : 'Search failed: the registry did not answer.';
      fill(results);
      shown = null;
      return null;
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
  // Enter adds the top result that can be added (searching first when the results are not of this query).
  search.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    e.preventDefault();
    clearTimeout(searchTimer);
    const q = search.value.trim();
    void (async () => {
      const hits = shown?.q === q ? shown.packages : await runSearch();
      const top = (hits ?? []).map((p) => componentFor(p.attr)).find((c): c is string => c !== null && !chosen.includes(c));
      if (!top || search.value.trim() !== q) return;
      search.value = '';
      add(top);
      searchNote.textContent = `Added ${top}.`;
    })();
  });

  // --- composition ---
  const chips = h('ul', { class: 'chips', attrs: { id: 'chosen-packages' } });
  const shell = h('input', { attrs: { type: 'checkbox', id: 'opt-shell' } });
  const arm64 = h('input', { attrs: { type: 'checkbox', id: 'opt-arm64' } });
  const nonroot = h('input', { attrs: { type: 'checkbox', id: 'opt-nonroot' } });
  const tag = h('input', { attrs: { type: 'text', id: 'opt-tag', value: 'latest', size: 12, spellcheck: 'false', 'aria-label': 'Tag' } });
  const imageRef = h('code', { class: 'image-ref', attrs: { id: 'image-ref' } });
  const tagNote = h('span', { class: 'note', attrs: { id: 'tag-note' } });
  const commands = commandsWidget();
  const buildButton = h('button', { class: 'primary', attrs: { type: 'button', id: 'build-button' }, on: { click: () => void build() } }, 'Build image');
  const exploreLink = h('span', { attrs: { id: 'explore-current' } });
  const config = configForm();
  const recent = recentSection();
  const panel = buildPanel((s) => {
    if (s.state === 'succeeded') void recent.load();
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
    return { name: composeName({ packages: chosen, shell: shell.checked, arm64: arm64.checked, nonroot: nonroot.checked, tag: tag.value }), tag: tag.value.trim() || 'latest' };
  }

  function update(): void {
    fill(
      chips,
      ...chosen.map((c) =>
        h('li', { class: 'chip', attrs: { 'data-component': c } }, h('code', {}, c), h('button', { class: 'remove', attrs: { type: 'button', 'aria-label': `Remove ${c}` }, on: { click: () => remove(c) } }, '×')),
      ),
    );
    if (chosen.length === 0) chips.appendChild(h('li', { class: 'note' }, 'No packages yet: search and add some.'));
    const { name: typed, tag: t } = current();
    // Shown and pulled as the registry names it (the typed order may differ).
    const name = typed ? canonicalName(typed) : null;
    const tagOk = validTag(t);
    tagNote.textContent = tagOk ? '' : 'A tag is letters, digits, _ . and -, starting with a letter, digit or _.';
    imageRef.textContent = name ? `${pullHost()}/${name}:${t}` : '—';
    commands.update(name && tagOk ? name : null, t);
    buildButton.disabled = !name || !tagOk;
    fill(exploreLink, name && tagOk ? link(explorePath(name, t), 'Explore this image') : null);
  }
  for (const input of [shell, arm64, nonroot, tag]) input.addEventListener('input', update);

  async function build(): Promise<void> {
    const { name, tag: t } = current();
    if (!name || !validTag(t)) return;
    const cfg = config.read();
    if (cfg === null) return; // the form says what is wrong
    buildButton.disabled = true;
    try {
      await panel.start(canonicalName(name) ?? name, t, cfg);
    } finally {
      buildButton.disabled = false;
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
        h('label', {}, nonroot, ' nonroot (runs as uid 65532)'),
        h('label', {}, 'tag ', tag),
        tagNote,
      ),
      h('p', { class: 'ref-line' }, 'Image: ', imageRef, ' ', exploreLink),
      commands.element,
      config.element,
      h('div', { class: 'build-row' }, buildButton),
      panel.element,
    ),
    recent.element,
  );
  update();
  void recent.load();
}
