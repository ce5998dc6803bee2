// Building the DOM without HTML strings: every value becomes a text node or an attribute value
// set through the DOM, so nothing from the registry (package descriptions, error messages, store
// paths) is ever parsed as markup.

export type Child = Node | string | number | null | undefined | false;

export interface Props {
  class?: string;
  /** Attributes, set with setAttribute (values are never parsed as HTML). */
  attrs?: Record<string, string | number | boolean | undefined>;
  on?: { [K in keyof HTMLElementEventMap]?: (event: HTMLElementEventMap[K]) => void };
}

function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

function setAttrs(el: Element, attrs: Props['attrs']): void {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  setAttrs(el, props.attrs);
  for (const [type, fn] of Object.entries(props.on ?? {})) el.addEventListener(type, fn as EventListener);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Props['attrs'] = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Replaces an element's content. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A same-origin link; `path` must be one this page built (it always starts with `/`). */
export function link(path: string, ...children: Child[]): HTMLAnchorElement {
  if (!path.startsWith('/') || path.startsWith('//')) throw new Error(`not a local path: ${path}`);
  return h('a', { attrs: { href: path } }, ...children);
}

/** Copies text to the clipboard; where the Clipboard API is not allowed (plain HTTP), through a selection. */
export async function copyText(text: string): Promise<void> {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = h('textarea', { class: 'offscreen', attrs: { readonly: true } }, text);
  document.body.appendChild(area);
  area.select();
  try {
    document.execCommand('copy');
  } finally {
    area.remove();
  }
}

/** A button that copies `text`, saying so (or how to copy by hand) in `status` for screen readers too. */
export function copyButton(text: string, label: string, props: { id?: string; class?: string } = {}): HTMLElement {
  const status = h('span', { class: 'copied', attrs: { 'aria-live': 'polite' } });
  const button = h(
    'button',
    {
      class: `copy ${props.class ?? ''}`.trim(),
      attrs: { type: 'button', id: props.id, 'data-copy': text, 'aria-label': label, title: label },
      on: {
        click: () => {
          copyText(text).then(
            () => (status.textContent = 'Copied'),
            () => (status.textContent = 'Copy failed: select the text instead'),
          );
          setTimeout(() => (status.textContent = ''), 2000);
        },
      },
    },
    'Copy',
  );
  return h('span', { class: 'copy-wrap' }, button, status);
}

/**
 * A digest shortened to `sha256:0123456789ab…` (the whole one in its title), never wrapped
 * mid-hash, with a button that copies it whole. `href`: the short form links there.
 */
export function digestView(digest: string, short: string, opts: { id?: string; href?: string; title?: string } = {}): HTMLElement {
  const title = opts.title ?? digest;
  const text = opts.href ? Object.assign(link(opts.href, short), { title }) : h('code', { attrs: { title } }, short);
  return h('span', { class: 'digest', attrs: { id: opts.id, 'data-digest': digest } }, text, ' ', copyButton(digest, `Copy ${digest}`, { class: 'copy-digest' }));
}

/** The host pull commands name: NIXERY_PUBLIC_HOST when the registry set it on the page, else this page's host. */
export function pullHost(): string {
  return document.body.dataset.pullHost || location.host;
}
