// Starting a build (POST /api/v1/builds, with the image config when one was set) and watching
// it live (server-sent events from /api/v1/builds/<id>/events, or polling where the stream is
// unavailable), with its phases, "packing layer i of n", bytes, and the result or the error.
// The panel comes into view when the build starts and ends, and its phases are announced to
// screen readers.

import { ApiError, explorePath, getJson, pinnedDigest, postJson, type BuildStatus } from './api.js';
import { copyButton, digestView, fill, h, link, pullHost } from './dom.js';
import type { ImageConfig } from './lib/config.js';
import { formatBytes, formatTime, shortDigest } from './lib/format.js';
import { canonicalName } from './lib/names.js';

const PHASES = ['resolve', 'realise', 'closure', 'layers', 'pack', 'manifest', 'done'] as const;

export interface BuildPanel {
  element: HTMLElement;
  /** Starts building `name:tag` (with `config`, an image pullable by digest) and follows it until it ends. */
  start(name: string, tag: string, config?: ImageConfig): Promise<BuildStatus | null>;
}

export function buildPanel(onFinished: (status: BuildStatus) => void = () => {}): BuildPanel {
  const title = h('p', { class: 'build-title' });
  const steps = h('ol', { class: 'phases', attrs: { id: 'build-phases' } }, ...PHASES.map((p) => h('li', { attrs: { 'data-phase': p } }, p)));
  const message = h('p', { class: 'build-message', attrs: { id: 'build-message' } });
  // What a screen reader says: the phase when it changes, then the outcome (not every byte).
  const announce = h('p', { class: 'offscreen', attrs: { id: 'build-announce', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' } });
  const bar = h('progress', { attrs: { id: 'build-progress', max: 1, value: 0 } });
  const figures = h('span', { class: 'progress-figures', attrs: { id: 'build-figures' } });
  const log = h('ol', { class: 'build-log', attrs: { id: 'build-log' } });
  const outcome = h('div', { class: 'build-outcome', attrs: { id: 'build-outcome' } });
  const element = h(
    'section',
    { class: 'build-status', attrs: { id: 'build-status', hidden: true, 'data-state': 'idle' } },
    title,
    announce,
    steps,
    h('div', { class: 'progress-row' }, bar, figures),
    message,
    outcome,
    h('details', { class: 'build-log-wrap' }, h('summary', {}, 'Progress log'), log),
  );
  let lastLine = '';
  let lastAnnounced = '';
  let withConfig = false;

  /**
   * Brings the panel into view (no animation) when it is not wholly in view, its top at the top
   * so that what it adds below still shows; unless the reader scrolled away from it.
   */
  function reveal(force = false): void {
    const box = element.getBoundingClientRect();
    const whole = box.top >= 0 && box.bottom <= window.innerHeight;
    const looking = box.bottom > 0 && box.top < window.innerHeight;
    if (!whole && (force || looking)) element.scrollIntoView({ block: 'start', behavior: 'instant' });
  }

  function say(text: string): void {
    if (text === lastAnnounced) return;
    lastAnnounced = text;
    announce.textContent = text;
  }

  function render(s: BuildStatus): void {
    element.hidden = false;
    const changed = element.dataset.state !== s.state || element.dataset.phase !== (s.phase ?? '');
    element.dataset.state = s.state;
    element.dataset.phase = s.phase ?? '';
    const shown = `${canonicalName(s.name) ?? s.name}:${s.tag}`;
    fill(title, 'Building ', h('code', {}, shown), ' · ', h('span', { class: `state state-${s.state}`, attrs: { id: 'build-state' } }, s.state));
    say(
      s.state === 'succeeded'
        ? `Build of ${shown} succeeded.`
        : s.state === 'failed'
          ? `Build of ${shown} failed: ${s.error?.message ?? s.message ?? ''}`
          : s.state === 'queued'
            ? `Build of ${shown} queued.`
            : `Building ${shown}: ${s.phase ?? 'running'}.`,
    );
    const current = s.state === 'succeeded' ? 'done' : (s.phase ?? '');
    const at = PHASES.indexOf(current as (typeof PHASES)[number]);
    for (const li of steps.children) {
      const i = PHASES.indexOf((li as HTMLElement).dataset.phase as (typeof PHASES)[number]);
      li.className = at < 0 ? '' : i < at || s.state === 'succeeded' ? 'done' : i === at ? (s.state === 'failed' ? 'failed' : 'current') : '';
    }
    message.textContent = s.message && s.message !== s.state && s.state !== 'succeeded' ? s.message : s.state === 'queued' ? 'waiting for a build slot' : '';
    const p = s.progress;
    if (p && p.layers) {
      bar.max = p.layers;
      bar.value = Math.min(p.layer ?? 0, p.layers);
      const bytes = p.bytesDone !== undefined ? ` · ${formatBytes(p.bytesDone)}${p.bytesTotal ? ` of ${formatBytes(p.bytesTotal)}` : ''}` : '';
      figures.textContent = `layer ${p.layer ?? 0} of ${p.layers}${bytes}`;
    } else if (s.state === 'succeeded' || s.state === 'failed') {
      // Nothing is going on any more: no busy bar.
      bar.max = 1;
      bar.value = s.state === 'succeeded' ? 1 : 0;
      figures.textContent = '';
    } else {
      bar.removeAttribute('value'); // indeterminate while nothing is counted
      figures.textContent = '';
    }
    const line = `${s.state}${s.phase ? ` · ${s.phase}` : ''}${s.message ? `: ${s.message}` : ''}`;
    if (line !== lastLine) {
      lastLine = line;
      log.appendChild(h('li', {}, h('time', {}, formatTime(new Date().toISOString())), ' ', line));
    }
    if (s.state === 'succeeded' && s.result) {
      const name = canonicalName(s.name) ?? s.name;
      const digest = pinnedDigest(s.result);
      if (withConfig) {
        // An image with its own config is not what the tag serves: it is pulled by digest.
        const ref = `${pullHost()}/${s.result.reference ?? `${name}@${digest}`}`;
        fill(
          outcome,
          h('p', { class: 'success' }, 'Built, with its own config: pull it by digest (the tag serves the image without it).'),
          h('div', { class: 'command-box' }, h('pre', { class: 'command', attrs: { id: 'build-pinned' } }, ref), copyButton(ref, 'Copy the pull reference', { id: 'copy-pinned' })),
        );
      } else {
        const explore = Object.assign(link(explorePath(name, s.tag), `Explore ${name}:${s.tag} →`), { id: 'build-explore-link' });
        fill(outcome, h('p', { class: 'success' }, 'Built: ', digestView(digest, shortDigest(digest), { id: 'build-digest' }), ' ', explore));
      }
    } else if (s.state === 'failed') {
      fill(outcome, h('div', { class: 'error', attrs: { id: 'build-error', role: 'alert' } }, h('strong', {}, s.error?.code ?? 'FAILED'), h('pre', {}, s.error?.message ?? 'the build failed')));
    } else {
      fill(outcome);
    }
    if (changed) reveal(s.state === 'succeeded' || s.state === 'failed');
  }

  function showError(err: unknown): void {
    element.hidden = false;
    element.dataset.state = 'failed';
    const e = err instanceof ApiError ? err : null;
    say(`The build could not start: ${err instanceof Error ? err.message : String(err)}`);
    fill(outcome, h('div', { class: 'error', attrs: { id: 'build-error', role: 'alert' } }, h('strong', {}, e?.code ?? 'ERROR'), h('pre', {}, err instanceof Error ? err.message : String(err))));
    reveal(true);
  }

  /** Follows a build until it ends: the event stream, or polling once a second without it. */
  function follow(first: BuildStatus): Promise<BuildStatus> {
    return new Promise((resolve) => {
      let last = first;
      const finish = (s: BuildStatus) => {
        render(s);
        onFinished(s);
        resolve(s);
      };
      if (first.state === 'succeeded' || first.state === 'failed') return finish(first);
      const events = new EventSource(`/api/v1/builds/${encodeURIComponent(first.id)}/events`);
      let ended = false;
      events.addEventListener('status', (e) => {
        last = JSON.parse((e as MessageEvent<string>).data) as BuildStatus;
        if (last.state === 'succeeded' || last.state === 'failed') {
          ended = true;
          events.close();
          finish(last);
        } else {
          render(last);
        }
      });
      events.addEventListener('error', () => {
        // The stream ended or failed before the build did: ask until it ends.
        if (ended) return;
        ended = true;
        events.close();
        const poll = async (): Promise<void> => {
          try {
            last = await getJson<BuildStatus>(`/api/v1/builds/${encodeURIComponent(first.id)}`);
          } catch (err) {
            showError(err);
            return;
          }
          if (last.state === 'succeeded' || last.state === 'failed') finish(last);
          else {
            render(last);
            setTimeout(() => void poll(), 1000);
          }
        };
        void poll();
      });
    });
  }

  async function start(name: string, tag: string, config?: ImageConfig): Promise<BuildStatus | null> {
    lastLine = '';
    lastAnnounced = '';
    withConfig = config !== undefined;
    log.replaceChildren();
    fill(outcome);
    element.hidden = false;
    element.dataset.state = 'starting';
    element.dataset.phase = '';
    const shown = `${canonicalName(name) ?? name}:${tag}`;
    fill(title, 'Starting a build of ', h('code', {}, shown), '…');
    say(`Starting a build of ${shown}.`);
    reveal(true);
    try {
      // `config` only when set: without it the image is the one its tag names.
      const status = await postJson<BuildStatus>('/api/v1/builds', config ? { image: `${name}:${tag}`, config } : { image: `${name}:${tag}` });
      render(status);
      return await follow(status);
    } catch (err) {
      showError(err);
      return null;
    }
  }

  return { element, start };
}
