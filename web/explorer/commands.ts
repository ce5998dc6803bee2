// The pull commands of an image, one tab per client (docker, podman, containerd, Kubernetes),
// each with a copy button.

import { copyText, fill, h, pullHost } from './dom.js';
import { pullCommands, type PullCommand } from './lib/names.js';

export interface CommandsWidget {
  element: HTMLElement;
  /** Shows the commands for `name:tag` (or `name@digest`; a hint when there is no name yet). */
  update(name: string | null, tag: string, digest?: string): void;
}

export function commandsWidget(): CommandsWidget {
  let selected: PullCommand['id'] = 'docker';
  let commands: PullCommand[] = [];
  const tabs = h('div', { class: 'tabs', attrs: { role: 'tablist', id: 'pull-tabs' } });
  const text = h('pre', { class: 'command', attrs: { id: 'pull-command', role: 'tabpanel' } });
  const copied = h('span', { class: 'copied', attrs: { id: 'copy-status', 'aria-live': 'polite' } });
  const copy = h(
    'button',
    {
      class: 'copy',
      attrs: { type: 'button', id: 'copy-command' },
      on: {
        click: () => {
          const current = commands.find((c) => c.id === selected);
          if (!current) return;
          copyText(current.text).then(
            () => (copied.textContent = 'Copied'),
            () => (copied.textContent = 'Copy failed: select the text instead'),
          );
          setTimeout(() => (copied.textContent = ''), 2000);
        },
      },
    },
    'Copy',
  );
  const element = h('div', { class: 'pull-commands' }, tabs, h('div', { class: 'command-box' }, text, h('div', { class: 'command-actions' }, copy, copied)));

  function render(): void {
    fill(
      tabs,
      ...commands.map((c) =>
        h(
          'button',
          {
            class: c.id === selected ? 'tab selected' : 'tab',
            attrs: { type: 'button', role: 'tab', 'aria-selected': c.id === selected ? 'true' : 'false', 'data-client': c.id },
            on: {
              click: () => {
                selected = c.id;
                render();
              },
            },
          },
          c.label,
        ),
      ),
    );
    const current = commands.find((c) => c.id === selected);
    text.textContent = current ? current.text : 'Add packages to see how to pull the image.';
    copy.disabled = !current;
  }

  return {
    element,
    update(name, tag, digest) {
      commands = name ? pullCommands(pullHost(), name, tag, location.protocol === 'http:', digest) : [];
      render();
    },
  };
}
