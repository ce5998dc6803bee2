// The build form's "Image config" fields → the `config` object of POST /api/v1/builds (README,
// "Image config"). Pure: the page shows the errors next to the form and sends nothing until the
// fields read well. Empty fields are left out, and no field at all means no `config`.

import type { ImageConfig } from '../../../src/image/config.js';

export type { ImageConfig };

/** The form's text, as typed. */
export interface ConfigFields {
  user: string;
  entrypoint: string;
  cmd: string;
  /** One `NAME=value` a line. */
  env: string;
  workingDir: string;
  /** `8080/tcp` or `8080`, separated by spaces or commas. */
  exposedPorts: string;
  /** One `key=value` a line. */
  labels: string;
  stopSignal: string;
}

export const EMPTY_FIELDS: ConfigFields = { user: '', entrypoint: '', cmd: '', env: '', workingDir: '', exposedPorts: '', labels: '', stopSignal: '' };

export type ConfigResult = { config: ImageConfig | undefined; errors: [] } | { config: undefined; errors: Array<{ field: keyof ConfigFields; message: string }> };

/**
 * A command as typed: a JSON array (`["sh", "-c", "echo hi"]`), or words split at spaces where
 * single or double quotes keep a word together and a backslash escapes the next character.
 */
export function parseCommand(text: string): string[] {
  const t = text.trim();
  if (t.startsWith('[')) {
    let value: unknown;
    try {
      value = JSON.parse(t);
    } catch {
      throw new Error('not a JSON array of strings');
    }
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error('not a JSON array of strings');
    return value as string[];
  }
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < t.length; i++) {
    const c = t[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < t.length) word += t[++i];
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < t.length) {
      word += t[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`an unclosed ${quote}`);
  if (inWord) words.push(word);
  return words;
}

function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** The `config` to send, or what is wrong with the fields (the registry checks them again). */
export function imageConfig(f: ConfigFields): ConfigResult {
  const config: ImageConfig = {};
  const errors: Array<{ field: keyof ConfigFields; message: string }> = [];
  if (f.user.trim()) config.user = f.user.trim();
  for (const field of ['entrypoint', 'cmd'] as const) {
    if (!f[field].trim()) continue;
    try {
      config[field] = parseCommand(f[field]);
    } catch (err) {
      errors.push({ field, message: `${field}: ${(err as Error).message}` });
    }
  }
  const env = lines(f.env);
  const badEnv = env.find((l) => !/^[^=\s]+=/.test(l));
  if (badEnv !== undefined) errors.push({ field: 'env', message: `env: ${JSON.stringify(badEnv)} is not NAME=value` });
  else if (env.length > 0) config.env = env;
  if (f.workingDir.trim()) config.workingDir = f.workingDir.trim();
  const ports = f.exposedPorts.split(/[\s,]+/).filter((p) => p !== '');
  const badPort = ports.find((p) => !/^\d{1,5}(\/(tcp|udp|sctp))?$/.test(p));
  if (badPort !== undefined) errors.push({ field: 'exposedPorts', message: `exposed ports: ${JSON.stringify(badPort)} is not PORT or PORT/tcp|udp|sctp` });
  else if (ports.length > 0) config.exposedPorts = ports.map((p) => (p.includes('/') ? p : `${p}/tcp`));
  const labels = lines(f.labels);
  const badLabel = labels.find((l) => !/^[^=\s]+=/.test(l));
  if (badLabel !== undefined) errors.push({ field: 'labels', message: `labels: ${JSON.stringify(badLabel)} is not key=value` });
  else if (labels.length > 0) config.labels = Object.fromEntries(labels.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  if (f.stopSignal.trim()) config.stopSignal = f.stopSignal.trim();
  if (errors.length > 0) return { config: undefined, errors };
  return { config: Object.keys(config).length > 0 ? config : undefined, errors: [] };
}
