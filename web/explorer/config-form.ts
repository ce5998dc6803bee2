// The build form's collapsed "Image config" section: user, entrypoint, command, environment,
// working directory, ports, labels and stop signal for POST /api/v1/builds (lib/config.ts reads
// them). Nothing filled in: no config is sent, and the image is the one its tag names.

import { fill, h } from './dom.js';
import { EMPTY_FIELDS, imageConfig, type ConfigFields, type ImageConfig } from './lib/config.js';

export interface ConfigForm {
  element: HTMLElement;
  /** The config to send (undefined: none), or null when a field is wrong (shown in the form). */
  read(): ImageConfig | undefined | null;
}

const FIELDS: Array<{ key: keyof ConfigFields; label: string; hint: string; multiline?: boolean }> = [
  { key: 'user', label: 'User', hint: 'e.g. 65532:65532 or nobody' },
  { key: 'entrypoint', label: 'Entrypoint', hint: 'words, or a JSON array: ["/bin/hello", "-g", "hi"]' },
  { key: 'cmd', label: 'Command', hint: 'words, or a JSON array' },
  { key: 'env', label: 'Environment', hint: 'NAME=value, one a line', multiline: true },
  { key: 'workingDir', label: 'Working directory', hint: 'e.g. /tmp' },
  { key: 'exposedPorts', label: 'Exposed ports', hint: 'e.g. 8080/tcp 53/udp' },
  { key: 'labels', label: 'Labels', hint: 'key=value, one a line', multiline: true },
  { key: 'stopSignal', label: 'Stop signal', hint: 'e.g. SIGTERM' },
];

export function configForm(): ConfigForm {
  const inputs = new Map<keyof ConfigFields, HTMLInputElement | HTMLTextAreaElement>();
  const errors = h('ul', { class: 'config-errors error', attrs: { id: 'config-errors', role: 'alert', hidden: true } });
  const rows = FIELDS.map(({ key, label, hint, multiline }) => {
    const id = `config-${key}`;
    const input = multiline
      ? h('textarea', { attrs: { id, rows: 2, spellcheck: 'false', placeholder: hint } })
      : h('input', { attrs: { type: 'text', id, spellcheck: 'false', autocomplete: 'off', placeholder: hint } });
    inputs.set(key, input);
    return h('div', { class: 'config-field' }, h('label', { attrs: { for: id } }, label), input);
  });
  const element = h(
    'details',
    { class: 'image-config', attrs: { id: 'image-config' } },
    h('summary', {}, 'Image config'),
    h('p', { class: 'note' }, 'Optional. An image built with a config is pulled by its digest; the tag keeps naming the image without it.'),
    h('div', { class: 'config-grid' }, ...rows),
    errors,
  );
  return {
    element,
    read() {
      const fields = { ...EMPTY_FIELDS };
      for (const [key, input] of inputs) fields[key] = input.value;
      const result = imageConfig(fields);
      for (const [key, input] of inputs) input.toggleAttribute('aria-invalid', result.errors.some((e) => e.field === key));
      errors.hidden = result.errors.length === 0;
      fill(errors, ...result.errors.map((e) => h('li', {}, e.message)));
      if (result.errors.length > 0) {
        element.open = true;
        return null;
      }
      return result.config;
    },
  };
}
