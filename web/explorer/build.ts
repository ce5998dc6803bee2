// Starting a build (POST /api/v1/builds) and watching it live (server-sent events from
// /api/v1/builds/<id>/events, or polling where the stream is unavailable), with its phases,
// "packing layer i of n", bytes, and the result or the error.

import { ApiError, explorePath, getJson, postJson, type BuildStatus } from './api.js';
import { fill, h, link } from './dom.js';
import { formatBytes, formatTime } from './lib/format.js';

const PHASES = ['resolve', 'realise', 'closure', 'layers', 'pack', 'manifest', 'done'] as const;

export interface BuildPanel {
  element: HTMLElement;
  /** Starts building `name:tag` and follows it until it ends. */
  start(name: string, tag: string): Promise<BuildStatus | null>;
}

export function buildPanel(onFinished: (status: BuildStatus) => void = () => {}): BuildPanel {
  const title = h('p', { class: 'build-title' });
  const steps = h('ol', { class: 'phases', attrs: { id: 'build-phases' } }, ...PHASES.map((p) => h('li', { attrs: { 'data-phase': p } }, p)));
  const message = h('p', { class: 'build-message', attrs: { id: 'build-message', 'aria-live': 'polite' } });
  const bar = h('progress', { attrs: { id: 'build-progress', max: 1, value: 0 } });
  const figures = h('span', { class: 'progress-figures', attrs: { id: 'build-figures' } });
  const log = h('ol', { class: 'build-log', attrs: { id: 'build-log' } });
  const outcome = h('div', { class: 'build-outcome', attrs: { id: 'build-outcome' } });
  const element = h(
    'section',
    { class: 'build-status', attrs: { id: 'build-status', hidden: true, 'data-state': 'idle' } },
    title,
    steps,
    h('div', { class: 'progress-row' }, bar, figures),
    message,
    outcome,
    h('details', { class: 'build-log-wrap' }, h('summary', {}, 'Progress log'), log),
  );
  let lastLine = '';

  function render(s: BuildStatus): void {
    element.hidden = false;
    element.dataset.state = s.state;
    fill(title, 'Building ', h('code', {}, s.image), ' · ', h('span', { class: `state state-${s.state}`, attrs: { id: 'build-state' } }, s.state));
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
    if (s.state === 'succeeded') {
      fill(outcome, h('p', { class: 'success' }, 'Built. ', link(explorePath(s.name, s.tag), `Explore ${s.image} →`)));
      outcome.querySelector('a')!.id = 'build-explore-link';
    } else if (s.state === 'failed') {
      fill(outcome, h('div', { class: 'error', attrs: { id: 'build-error', role: 'alert' } }, h('strong', {}, s.error?.code ?? 'FAILED'), h('pre', {}, s.error?.message ?? 'the build failed')));
    } else {
      fill(outcome);
    }
  }

  function showError(err: unknown): void {
    element.hidden = false;
    element.dataset.state = 'failed';
    const e = err instanceof ApiError ? err : null;
    fill(outcome, h('div', { class: 'error', attrs: { id: 'build-error', role: 'alert' } }, h('strong', {}, e?.code ?? 'ERROR'), h('pre', {}, err instanceof Error ? err.message : String(err))));
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

  async function start(name: string, tag: string): Promise<BuildStatus | null> {
    lastLine = '';
    log.replaceChildren();
    fill(outcome);
    element.hidden = false;
    element.dataset.state = 'starting';
    fill(title, 'Starting a build of ', h('code', {}, `${name}:${tag}`), '…');
    try {
      const status = await postJson<BuildStatus>('/api/v1/builds', { image: `${name}:${tag}` });
      render(status);
      return await follow(status);
    } catch (err) {
      showError(err);
      return null;
    }
  }

  return { element, start };
}
