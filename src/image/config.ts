// What an image runs as and with, beyond its packages: the `nonroot` meta-package's user, and
// the runtime config a build request may set (POST /api/v1/builds `config`). A config is
// validated and put in one canonical form here, so that equal requests make equal cache keys
// and byte-identical image configs on every replica.

import { ImageConfigInvalidError } from '../errors.js';

/** The user and group the `nonroot` meta-package adds (distroless' and apko's numbers). */
export const NONROOT_USER = { name: 'nonroot', uid: 65532, gid: 65532, home: '/home/nonroot' } as const;
export type ImageUser = typeof NONROOT_USER;

/**
 * A validated image config, canonical: fields absent when not given, exposed ports as
 * `port/proto` sorted by number then protocol, labels sorted by key, env in the order given.
 */
export interface ImageConfig {
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
  /** `NAME=value`, each name once. */
  env?: string[];
  workingDir?: string;
  exposedPorts?: string[];
  labels?: Record<string, string>;
  stopSignal?: string;
}

export const CONFIG_FIELDS = ['user', 'entrypoint', 'cmd', 'env', 'workingDir', 'exposedPorts', 'labels', 'stopSignal'] as const;

/** Limits: generous for real images, small enough that a config stays a few KiB. */
export const CONFIG_LIMITS = { argv: 64, arg: 4096, env: 128, envName: 128, value: 4096, path: 1024, ports: 64, labels: 64, labelKey: 128 } as const;

/** Label keys the registry writes itself (the packages, the source): a request cannot set them. */
const RESERVED_LABEL = /^(?:dev\.nixery\.|org\.opencontainers\.image\.revision$)/;
const USER_PART = '[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}';
const USER_REGEXP = new RegExp(`^${USER_PART}(?::${USER_PART})?$`);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;
const PORT = /^([0-9]{1,5})(?:\/(tcp|udp|sctp))?$/;
/** Linux's signal names (as `kill -l` prints them, SIG-prefixed). */
const SIGNALS = new Set([
  'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGIOT', 'SIGBUS', 'SIGFPE', 'SIGKILL', 'SIGUSR1', 'SIGSEGV', 'SIGUSR2',
  'SIGPIPE', 'SIGALRM', 'SIGTERM', 'SIGSTKFLT', 'SIGCHLD', 'SIGCONT', 'SIGSTOP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGURG', 'SIGXCPU',
  'SIGXFSZ', 'SIGVTALRM', 'SIGPROF', 'SIGWINCH', 'SIGIO', 'SIGPOLL', 'SIGPWR', 'SIGSYS', 'SIGRTMIN', 'SIGRTMAX',
]);

const bad = (field: string, why: string) => new ImageConfigInvalidError(field, why);
const quote = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);

/** Throws ImageConfigInvalidError (400, naming the field) unless `value` is a valid config; returns its canonical form. */
export function validateImageConfig(value: unknown): ImageConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ImageConfigInvalidError('', 'must be an object such as {"cmd": ["hello"]}');
  const fields = value as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((k) => !(CONFIG_FIELDS as readonly string[]).includes(k));
  if (unknown.length > 0) throw bad(unknown[0]!.slice(0, 50), `unknown field (expected ${CONFIG_FIELDS.join(', ')})`);
  const config: ImageConfig = {};
  if (fields.user !== undefined) config.user = user(fields.user);
  if (fields.entrypoint !== undefined) config.entrypoint = argv('entrypoint', fields.entrypoint);
  if (fields.cmd !== undefined) config.cmd = argv('cmd', fields.cmd);
  if (fields.env !== undefined) config.env = env(fields.env);
  if (fields.workingDir !== undefined) config.workingDir = workingDir(fields.workingDir);
  if (fields.exposedPorts !== undefined) config.exposedPorts = ports(fields.exposedPorts);
  if (fields.labels !== undefined) config.labels = labels(fields.labels);
  if (fields.stopSignal !== undefined) config.stopSignal = stopSignal(fields.stopSignal);
  return config;
}

/** True when a config sets nothing (then the image is the plain one). */
export function isEmptyConfig(config: ImageConfig | undefined): boolean {
  return config === undefined || Object.keys(config).length === 0;
}

function text(field: string, value: unknown, max: number, options: { empty?: boolean } = {}): string {
  if (typeof value !== 'string') throw bad(field, 'must be a string');
  if (value === '' && !options.empty) throw bad(field, 'must not be empty');
  if (value.length > max) throw bad(field, `is ${value.length} characters long (at most ${max})`);
  // NUL cannot be passed to exec or written in a config that runtimes read as C strings.
  if (value.includes('\0')) throw bad(field, 'must not contain a NUL character');
  return value;
}

function list(field: string, value: unknown, max: number): unknown[] {
  if (!Array.isArray(value)) throw bad(field, 'must be a list of strings');
  if (value.length === 0) throw bad(field, 'must not be an empty list (leave it out instead)');
  if (value.length > max) throw bad(field, `has ${value.length} entries (at most ${max})`);
  return value;
}

function user(value: unknown): string {
  const u = text('user', value, 65);
  if (!USER_REGEXP.test(u)) throw bad('user', `${quote(u)} is not a user: expected NAME, UID, NAME:GROUP or UID:GID (such as "65532:65532")`);
  for (const part of u.split(':')) {
    if (/^[0-9]+$/.test(part) && Number(part) > 0xfffffffe) throw bad('user', `${part} is not a valid id (at most 4294967294)`);
  }
  return u;
}

function argv(field: 'entrypoint' | 'cmd', value: unknown): string[] {
  return list(field, value, CONFIG_LIMITS.argv).map((a, i) => text(`${field}[${i}]`, a, CONFIG_LIMITS.arg, { empty: i > 0 }));
}

function env(value: unknown): string[] {
  const seen = new Set<string>();
  return list('env', value, CONFIG_LIMITS.env).map((e, i) => {
    const field = `env[${i}]`;
    const entry = text(field, e, CONFIG_LIMITS.envName + 1 + CONFIG_LIMITS.value);
    const eq = entry.indexOf('=');
    if (eq < 0) throw bad(field, `${quote(entry)} is not NAME=value`);
    const name = entry.slice(0, eq);
    if (!ENV_NAME.test(name)) throw bad(field, `${quote(name)} is not a variable name (letters, digits and _, not starting with a digit)`);
    if (name.length > CONFIG_LIMITS.envName) throw bad(field, `the name is ${name.length} characters long (at most ${CONFIG_LIMITS.envName})`);
    if (entry.length - eq - 1 > CONFIG_LIMITS.value) throw bad(field, `the value is ${entry.length - eq - 1} characters long (at most ${CONFIG_LIMITS.value})`);
    if (seen.has(name)) throw bad(field, `${name} is set twice`);
    seen.add(name);
    return entry;
  });
}

function workingDir(value: unknown): string {
  const dir = text('workingDir', value, CONFIG_LIMITS.path);
  if (!dir.startsWith('/')) throw bad('workingDir', `${quote(dir)} is not an absolute path`);
  if (dir.split('/').some((c) => c === '..' || c === '.')) throw bad('workingDir', `${quote(dir)} has a . or .. component`);
  if (/[\n\r]/.test(dir)) throw bad('workingDir', 'must not contain a line break');
  return dir;
}

function ports(value: unknown): string[] {
  const parsed = list('exposedPorts', value, CONFIG_LIMITS.ports).map((p, i) => {
    const field = `exposedPorts[${i}]`;
    const s = text(field, p, 12);
    const m = PORT.exec(s);
    const port = m ? Number(m[1]) : 0;
    if (!m || port < 1 || port > 65535) throw bad(field, `${quote(s)} is not a port: expected PORT/PROTO with PORT 1 to 65535 and PROTO tcp, udp or sctp (such as "8080/tcp")`);
    return { port, proto: m[2] ?? 'tcp' };
  });
  parsed.sort((a, b) => a.port - b.port || (a.proto < b.proto ? -1 : a.proto > b.proto ? 1 : 0));
  return [...new Set(parsed.map((p) => `${p.port}/${p.proto}`))];
}

function labels(value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('labels', 'must be an object of strings such as {"team": "web"}');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) throw bad('labels', 'must not be empty (leave it out instead)');
  if (entries.length > CONFIG_LIMITS.labels) throw bad('labels', `has ${entries.length} labels (at most ${CONFIG_LIMITS.labels})`);
  const checked = entries.map(([key, v]): [string, string] => {
    const field = `labels[${JSON.stringify(key.slice(0, 60))}]`;
    if (key.length > CONFIG_LIMITS.labelKey) throw bad(field, `the key is ${key.length} characters long (at most ${CONFIG_LIMITS.labelKey})`);
    if (!LABEL_KEY.test(key)) throw bad(field, 'the key must start with a letter or digit and hold only letters, digits, . _ / and -');
    if (RESERVED_LABEL.test(key)) throw bad(field, 'the registry sets this label itself');
    return [key, text(field, v, CONFIG_LIMITS.value, { empty: true })];
  });
  checked.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // fromEntries makes own properties whatever the key (no prototype setter).
  return Object.fromEntries(checked);
}

function stopSignal(value: unknown): string {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 1 || value > 64) throw bad('stopSignal', `${value} is not a signal number (1 to 64)`);
    return String(value);
  }
  const s = text('stopSignal', value, 16);
  if (/^[0-9]+$/.test(s)) {
    if (Number(s) < 1 || Number(s) > 64) throw bad('stopSignal', `${s} is not a signal number (1 to 64)`);
    return String(Number(s));
  }
  const name = s.toUpperCase().startsWith('SIG') ? s.toUpperCase() : `SIG${s.toUpperCase()}`;
  const rt = /^SIGRT(?:MIN|MAX)[+-]([0-9]{1,2})$/.exec(name);
  if (!SIGNALS.has(name) && !(rt && Number(rt[1]) <= 30)) throw bad('stopSignal', `${quote(s)} is not a signal: expected a name such as "SIGTERM" or a number`);
  return name;
}
