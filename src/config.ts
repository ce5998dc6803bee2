// Configuration: one table of settings, each readable from an environment variable (Nixery's
// names where Nixery had one) and from a command-line flag. Values are validated once, at
// startup; a bad value stops the program with one line saying which setting and why.

import os from 'node:os';
import path from 'node:path';
import { ConfigError } from './errors.js';
import { DEFAULT_STRATEGY, STRATEGY_NAMES } from './layers/strategies.js';
import { URL_SETTINGS, displayUrl } from './secrets.js';
import { hostPlatform, parsePlatforms } from './image/platform.js';
import { STORAGE_BACKENDS, STORAGE_KEY, type StorageBackendName } from './storage/storage.js';
import type { GcsSettings, S3StorageOptions, StorageSettings } from './storage/index.js';
import { SigningKey } from './signing/key.js';
import { layerCompression, LibdeflateUnavailableError, type LayerCompression } from './archive/index.js';

export interface Setting<T> {
  env: string;
  flag: string;
  description: string;
  /** Default when neither the flag nor the variable is set; undefined = optional. */
  default?: T;
  parse(raw: string): T;
}

function integer(min: number, max: number) {
  return (raw: string): number => {
    if (!/^\d+$/.test(raw.trim())) throw new Error(`must be a whole number, got ${JSON.stringify(raw)}`);
    const n = Number(raw.trim());
    if (n < min || n > max) throw new Error(`must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

function oneOf<T extends string>(...values: T[]) {
  return (raw: string): T => {
    if (!(values as string[]).includes(raw)) throw new Error(`must be one of ${values.join(', ')}, got ${JSON.stringify(raw)}`);
    return raw as T;
  };
}

function boolean(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new Error(`must be true or false, got ${JSON.stringify(raw)}`);
}

/** A size: bytes, or a number with K, M, G, T (powers of 1024; `MB`, `MiB` and `M` alike). */
export function byteSize(raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(raw);
  if (!m || (m[3] && !m[2] && m[3].toLowerCase() !== 'b')) throw new Error(`must be a size such as 512M or 2G, got ${JSON.stringify(raw)}`);
  const bytes = Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()));
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new Error(`must be a positive size, got ${JSON.stringify(raw)}`);
  return bytes;
}

const nonEmpty = (raw: string): string => {
  if (raw.trim() === '') throw new Error('must not be empty');
  return raw;
};

/**
 * host or host:port as image references start (NIXERY_PUBLIC_HOST). Clients read a first
 * component without a dot or port as a Docker Hub path (`myhost/x` is docker.io/myhost/x), so
 * such a host must be `localhost` or carry a port.
 */
export function publicHost(raw: string): string {
  const value = raw.trim();
  const m = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::(\d{1,5}))?$/.exec(value);
  if (!m) throw new Error(`must be host or host:port (no scheme, no path), got ${JSON.stringify(value)}`);
  if (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535)) throw new Error(`port must be between 1 and 65535, got ${m[2]}`);
  if (m[2] === undefined && !m[1]!.includes('.') && !m[1]!.startsWith('[') && m[1] !== 'localhost') {
    throw new Error(`${JSON.stringify(value)} would be read as a Docker Hub path by clients: give a domain name with a dot, an address, localhost, or add a port`);
  }
  return value;
}

function defaultStoragePath(): string {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'nixery-ts');
}

export const SETTINGS = {
  port: { env: 'PORT', flag: '--port', description: 'TCP port the registry listens on', default: 8080, parse: integer(0, 65535) },
  host: { env: 'NIXERY_HOST', flag: '--host', description: 'address the registry listens on', default: '0.0.0.0', parse: nonEmpty },
  channel: { env: 'NIXERY_CHANNEL', flag: '--channel', description: 'nixpkgs channel or commit to build from', parse: nonEmpty },
  pkgsRepo: { env: 'NIXERY_PKGS_REPO', flag: '--pkgs-repo', description: 'git repository of the package set (the image tag picks a branch, tag or commit)', parse: nonEmpty },
  pkgsPath: { env: 'NIXERY_PKGS_PATH', flag: '--pkgs-path', description: 'local directory of the package set', parse: nonEmpty },
  nixpkgsRepo: { env: 'NIXERY_NIXPKGS_REPO', flag: '--nixpkgs-repo', description: 'git repository NIXERY_CHANNEL names are resolved against (default: GitHub nixpkgs)', parse: nonEmpty },
  nixpkgsTarball: { env: 'NIXERY_NIXPKGS_TARBALL', flag: '--nixpkgs-tarball', description: 'tarball URL of a nixpkgs commit, with {rev} (default: GitHub archive)', parse: nonEmpty },
  // For tests: off exercises the fallback when Nix processes cannot get a parent-death signal.
  parentDeathSignal: { env: 'NIXERY_PDEATHSIG', flag: '--pdeathsig', description: 'start Nix through setpriv --pdeathsig where it works (off: never)', default: true, parse: boolean },
  storageBackend: { env: 'NIXERY_STORAGE_BACKEND', flag: '--storage-backend', description: 'where blobs and caches live: filesystem, s3 or gcs', default: 'filesystem', parse: oneOf('filesystem', 's3', 'gcs') },
  storagePath: { env: 'STORAGE_PATH', flag: '--storage-path', description: 'directory of the filesystem storage backend', default: defaultStoragePath(), parse: nonEmpty },
  // Nixery's meaning: Nix's `--timeout`, per builder. Downloads and evaluation have their own limits.
  nixTimeout: { env: 'NIX_TIMEOUT', flag: '--nix-timeout', description: 'seconds each Nix builder may run (Nix --timeout); downloads and evaluation are not counted', default: 60, parse: integer(1, 86400) },
  evalTimeout: { env: 'NIXERY_EVAL_TIMEOUT', flag: '--eval-timeout', description: 'seconds one Nix evaluation of the package set may take, fetching the package set included', default: 600, parse: integer(1, 86400) },
  buildTimeout: { env: 'NIXERY_BUILD_TIMEOUT', flag: '--build-timeout', description: "seconds realising an image's packages may take in all (every build and download)", default: 3600, parse: integer(1, 86400) },
  popularityUrl: { env: 'NIX_POPULARITY_URL', flag: '--popularity-url', description: 'popularity data for layering: http(s) URL or file path of {"name": count} JSON', parse: nonEmpty },
  platforms: { env: 'NIXERY_PLATFORMS', flag: '--platforms', description: 'platforms images are built for, e.g. linux/amd64,linux/arm64 (the first is what clients that accept no index get)', default: [hostPlatform().platform] as readonly string[], parse: (raw: string): readonly string[] => parsePlatforms(raw) },
  layering: { env: 'NIXERY_LAYERING', flag: '--layering', description: `layering strategy: ${STRATEGY_NAMES.join(', ')}`, default: DEFAULT_STRATEGY, parse: (raw: string) => oneOf(...STRATEGY_NAMES)(raw) },
  layerBudget: { env: 'NIXERY_LAYER_BUDGET', flag: '--layer-budget', description: 'most layers for store paths (the customisation layer comes on top)', default: 94, parse: integer(1, 124) },
  buildConcurrency: { env: 'NIXERY_BUILD_CONCURRENCY', flag: '--build-concurrency', description: 'image builds (Nix) running at once', default: Math.max(1, os.availableParallelism()), parse: integer(1, 1024) },
  buildQueue: { env: 'NIXERY_BUILD_QUEUE', flag: '--build-queue', description: 'builds waiting for a slot before requests get 429', default: 32, parse: integer(0, 100000) },
  buildLeaseSeconds: { env: 'NIXERY_BUILD_LEASE_SECONDS', flag: '--build-lease-seconds', description: 'replicas on one storage build each image once: a build lease lasts this long unless renewed (every third of it) while its holder builds; 0: every replica builds for itself', default: 30, parse: integer(0, 3600) },
  resolveTtl: { env: 'NIXERY_RESOLVE_TTL', flag: '--resolve-ttl', description: 'seconds a moving target (branch, channel, latest) stays resolved to one revision', default: 60, parse: integer(0, 86400 * 365) },
  manifestCacheSize: { env: 'NIXERY_MANIFEST_CACHE', flag: '--manifest-cache', description: 'manifests kept in memory', default: 1024, parse: integer(0, 10_000_000) },
  blobCacheMb: { env: 'NIXERY_BLOB_CACHE_MB', flag: '--blob-cache-mb', description: 'memory for serving hot blobs (each at most 16 MB or 1/8 of it), MB; 0 turns it off', default: 256, parse: integer(0, 1_000_000) },
  logLevel: { env: 'NIXERY_LOG_LEVEL', flag: '--log-level', description: 'log level', default: 'info', parse: oneOf('trace', 'debug', 'info', 'warn', 'error', 'silent') },
  blobRedirect: { env: 'NIXERY_BLOB_REDIRECT', flag: '--blob-redirect', description: 'answer blob GETs from object storage with a 307 to a signed URL', default: true, parse: boolean },
  redirectTtl: { env: 'NIXERY_REDIRECT_TTL', flag: '--redirect-ttl', description: 'lifetime of signed blob URLs, seconds', default: 300, parse: integer(1, 7 * 86400) },
  blobVerify: { env: 'NIXERY_BLOB_VERIFY', flag: '--blob-verify', description: 'check blobs read from storage against their digest: once per stored version (S3, GCS; a filesystem blob on every read, with SHA-256 the first time and a keyed tag of those bytes later), always (SHA-256 on every read), or off (for measurements only)', default: 'once' as const, parse: oneOf('once', 'always', 'off') },
  htpasswd: { env: 'NIXERY_HTPASSWD', flag: '--htpasswd', description: 'htpasswd file with bcrypt entries (htpasswd -B): pulls need one of its users', parse: nonEmpty },
  authTokenRealm: { env: 'NIXERY_AUTH_TOKEN_REALM', flag: '--auth-token-realm', description: 'bearer tokens: the token service URL clients are sent to', parse: nonEmpty },
  authTokenService: { env: 'NIXERY_AUTH_TOKEN_SERVICE', flag: '--auth-token-service', description: "bearer tokens: this registry's service name (the tokens' audience)", parse: nonEmpty },
  authTokenIssuer: { env: 'NIXERY_AUTH_TOKEN_ISSUER', flag: '--auth-token-issuer', description: 'bearer tokens: the issuer the tokens must name', parse: nonEmpty },
  authTokenKeys: { env: 'NIXERY_AUTH_TOKEN_KEYS', flag: '--auth-token-keys', description: "bearer tokens: file of the token service's public keys (PEM keys or certificates, or a JWKS)", parse: nonEmpty },
  authTokenJwks: { env: 'NIXERY_AUTH_TOKEN_JWKS', flag: '--auth-token-jwks', description: "bearer tokens: URL of the token service's JWKS", parse: nonEmpty },
  anonymousPull: { env: 'NIXERY_ANONYMOUS_PULL', flag: '--anonymous-pull', description: 'with authentication on: anonymous clients may pull what is built; only authenticated ones build', default: false, parse: boolean },
  tlsCert: { env: 'NIXERY_TLS_CERT', flag: '--tls-cert', description: 'PEM certificate (chain) to serve HTTPS with (reloaded on SIGHUP and when the file changes)', parse: nonEmpty },
  tlsKey: { env: 'NIXERY_TLS_KEY', flag: '--tls-key', description: 'PEM private key for NIXERY_TLS_CERT', parse: nonEmpty },
  clientBuildsPerMinute: { env: 'NIXERY_CLIENT_BUILDS_PER_MINUTE', flag: '--client-builds-per-minute', description: 'image builds one client (user, else address) may start a minute; 0: no limit', default: 0, parse: integer(0, 100_000) },
  clientBuildBurst: { env: 'NIXERY_CLIENT_BUILD_BURST', flag: '--client-build-burst', description: 'builds a client may start at once before the rate applies (default: the rate)', parse: integer(1, 100_000) },
  trustedProxies: { env: 'NIXERY_TRUSTED_PROXIES', flag: '--trusted-proxies', description: 'addresses or CIDR ranges of proxies whose X-Forwarded-For names the client', parse: nonEmpty },
  allowPackages: { env: 'NIXERY_ALLOW_PACKAGES', flag: '--allow-packages', description: 'packages images may contain: attribute names or globs, inline or a file of them', parse: nonEmpty },
  denyPackages: { env: 'NIXERY_DENY_PACKAGES', flag: '--deny-packages', description: 'packages images may not contain: attribute names or globs, inline or a file of them', parse: nonEmpty },
  denyClosure: { env: 'NIXERY_DENY_CLOSURE', flag: '--deny-closure', description: "store paths images may not contain in their closure: names or globs (e.g. perl-*), inline or a file of them", parse: nonEmpty },
  layerCompression: { env: 'NIXERY_LAYER_COMPRESSION', flag: '--layer-compression', description: 'how layers are compressed: gzip, or zstd (smaller and faster to unpack, but Docker 20.10 and other older clients cannot pull such images)', default: 'gzip' as const, parse: oneOf('gzip', 'zstd') },
  gzip: { env: 'NIXERY_GZIP', flag: '--gzip', description: "gzip compressor: libdeflate (the native addon, 2-3× faster) or zlib (Node's own); the bytes, so the layer digests, differ", default: 'libdeflate' as const, parse: oneOf('libdeflate', 'zlib') },
  maxImageSize: { env: 'NIXERY_MAX_IMAGE_SIZE', flag: '--max-image-size', description: "largest closure an image may have (e.g. 2G), checked before anything is packed", parse: byteSize },
  maxPackages: { env: 'NIXERY_MAX_PACKAGES', flag: '--max-packages', description: 'most packages in one image (besides cacert and iana-etc)', parse: integer(1, 10_000) },
  sendTimeout: { env: 'NIXERY_SEND_TIMEOUT', flag: '--send-timeout', description: 'seconds a client may accept no bytes of a response before it is closed', default: 60, parse: integer(1, 86400) },
  sendBufferMb: { env: 'NIXERY_SEND_BUFFER_MB', flag: '--send-buffer-mb', description: 'memory all responses together may hold while streaming blobs, MB', default: 256, parse: integer(8, 1_000_000) },
  // Without a value, derived from the descriptor limit (src/registry/connections.ts).
  maxConnections: { env: 'NIXERY_MAX_CONNECTIONS', flag: '--max-connections', description: 'connections open at once; at the cap idle ones are closed to make room, else new ones get 503 (default: half of what the descriptor limit leaves after a quarter for storage and Nix)', parse: integer(1, 1_000_000) },
  maxClientConnections: { env: 'NIXERY_MAX_CLIENT_CONNECTIONS', flag: '--max-client-connections', description: 'connections one client address may hold (behind a trusted proxy: requests in flight per forwarded client); past it 429 (default: an eighth of NIXERY_MAX_CONNECTIONS, at least 16)', parse: integer(1, 1_000_000) },
  maxEventStreams: { env: 'NIXERY_MAX_EVENT_STREAMS', flag: '--max-event-streams', description: 'build event streams (SSE) open at once; past it 503 (default: a quarter of NIXERY_MAX_CONNECTIONS, at least 4)', parse: integer(1, 1_000_000) },
  // The value is a SigningKey: it prints as a description and fingerprint, never the key.
  signingKey: { env: 'NIXERY_SIGNING_KEY', flag: '--signing-key', description: 'sign every manifest served (cosign format): a PEM private key, ECDSA P-256 or Ed25519, inline or the path of a file', parse: (raw: string) => SigningKey.load(raw) },
  publicHost: { env: 'NIXERY_PUBLIC_HOST', flag: '--public-host', description: 'host[:port] clients pull from: the identity signatures vouch for, and what the explorer shows in pull commands', parse: publicHost },
  // Below Kubernetes' default 30 s grace period, so the drain ends before the SIGKILL.
  shutdownTimeout: { env: 'NIXERY_SHUTDOWN_TIMEOUT', flag: '--shutdown-timeout', description: 'seconds to finish requests in flight on SIGTERM before closing what remains', default: 25, parse: integer(0, 3600) },
} satisfies Record<string, Setting<unknown>>;

export type SettingName = keyof typeof SETTINGS;
type ValueOf<S> = S extends Setting<infer T> ? T : never;
export type Config = {
  [K in SettingName]: (typeof SETTINGS)[K] extends { default: unknown } ? ValueOf<(typeof SETTINGS)[K]> : ValueOf<(typeof SETTINGS)[K]> | undefined;
};

/**
 * Reads every setting: a command-line value (by setting name) wins over the environment, which
 * wins over the default. Throws ConfigError naming the variable and the problem.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, flags: Partial<Record<SettingName, string>> = {}): Config {
  const out: Record<string, unknown> = {};
  for (const [name, setting] of Object.entries(SETTINGS) as Array<[SettingName, Setting<unknown>]>) {
    const fromFlag = flags[name];
    const fromEnv = env[setting.env];
    const raw = fromFlag ?? (fromEnv === '' ? undefined : fromEnv);
    if (raw === undefined) {
      out[name] = setting.default;
      continue;
    }
    try {
      out[name] = setting.parse(raw);
    } catch (err) {
      const where = fromFlag !== undefined ? setting.flag : setting.env;
      throw new ConfigError(`invalid ${where}: ${(err as Error).message}`);
    }
  }
  return out as Config;
}

/**
 * The effective configuration, for the startup log: every setting, plus the URL-valued
 * variables read elsewhere (storage endpoints, nixpkgs URLs). URLs are shown without their
 * credentials.
 */
export function describeConfig(config: Config, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const shown: Record<string, unknown> = {};
  const urlSettings: readonly string[] = URL_SETTINGS;
  for (const [name, setting] of Object.entries(SETTINGS) as Array<[SettingName, Setting<unknown>]>) {
    const value = config[name];
    if (value !== undefined) shown[setting.env] = urlSettings.includes(setting.env) ? displayUrl(String(value)) : value;
  }
  for (const name of URL_SETTINGS) {
    const value = env[name]?.trim();
    if (value && !(name in shown)) shown[name] = displayUrl(value);
  }
  return shown;
}

// ---- Signing: both settings together. ----

/**
 * The signing settings when NIXERY_SIGNING_KEY is set: the key and the public host the
 * signatures name (required with it: a signature vouches for HOST/NAME, and the host a request
 * came in on is the client's to choose). Undefined when signing is off.
 */
export function signingSettings(config: Pick<Config, 'signingKey' | 'publicHost'>): { key: SigningKey; publicHost: string } | undefined {
  if (!config.signingKey) return undefined;
  if (!config.publicHost) throw new ConfigError('NIXERY_SIGNING_KEY needs NIXERY_PUBLIC_HOST: the host[:port] clients pull from, which signatures name');
  return { key: config.signingKey, publicHost: config.publicHost };
}

/**
 * The layer compression the settings choose. libdeflate is never swapped for zlib behind the
 * operator's back (the digests would change): when its addon cannot load, one line says how to
 * install it or how to choose zlib.
 */
export function layerCompressionSetting(config: Pick<Config, 'layerCompression' | 'gzip'>): LayerCompression {
  try {
    return layerCompression(config.layerCompression, config.gzip);
  } catch (err) {
    if (err instanceof LibdeflateUnavailableError) {
      throw new ConfigError(
        `NIXERY_GZIP=libdeflate (the default), but the libdeflate addon cannot load (${err.message}): install it with \`bash scripts/install-deps.sh\` (or \`apt-get install libdeflate-dev && npm run build\`), or set NIXERY_GZIP=zlib to compress with Node's zlib`,
      );
    }
    throw new ConfigError(`invalid NIXERY_LAYER_COMPRESSION: ${(err as Error).message}`);
  }
}

// ---- Storage backends: the backend-specific variables, read here like every other setting. ----

/** The storage part of Config: the values of the storage settings (the command line passes some). */
export type StorageConfig = Partial<Pick<Config, 'storageBackend' | 'storagePath' | 'blobRedirect' | 'redirectTtl'>> & { storageBackend?: string };

/**
 * Resolves the storage settings: what `config` holds, else the environment, and for s3 and gcs
 * their own variables. Throws ConfigError with one clear line when one is missing or invalid.
 */
export function storageSettings(config: StorageConfig, env: NodeJS.ProcessEnv = process.env): StorageSettings {
  const backend = config.storageBackend ?? (env.NIXERY_STORAGE_BACKEND?.trim() || 'filesystem');
  if (!(STORAGE_BACKENDS as readonly string[]).includes(backend)) {
    throw new ConfigError(`invalid NIXERY_STORAGE_BACKEND: must be one of ${STORAGE_BACKENDS.join(', ')}, got ${JSON.stringify(backend)}`);
  }
  const settings: StorageSettings = { backend: backend as StorageBackendName, redirects: config.blobRedirect ?? true, redirectTtlSeconds: config.redirectTtl ?? SETTINGS.redirectTtl.default };
  if (backend === 'filesystem') {
    const root = config.storagePath ?? (env.STORAGE_PATH?.trim() ? env.STORAGE_PATH : undefined);
    if (!root) throw new ConfigError('the filesystem storage backend needs STORAGE_PATH (the directory to keep blobs and caches in)');
    settings.storagePath = root;
  }
  if (backend === 's3') settings.s3 = s3Settings(env);
  if (backend === 'gcs') settings.gcs = gcsSettings(env);
  return settings;
}

/** Reads S3_BUCKET, S3_ENDPOINT, S3_REGION, S3_FORCE_PATH_STYLE, S3_PREFIX (+ static AWS keys if set in `env`). */
export function s3Settings(env: NodeJS.ProcessEnv = process.env): S3StorageOptions {
  const bucket = env.S3_BUCKET?.trim();
  if (!bucket) throw new ConfigError('the s3 storage backend needs S3_BUCKET (the bucket to keep blobs and caches in)');
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError(`invalid S3_BUCKET: ${JSON.stringify(bucket)} is not a valid bucket name (3-63 lower-case letters, digits, . and -)`);
  }
  const options: S3StorageOptions = { bucket };
  const endpoint = env.S3_ENDPOINT?.trim();
  if (endpoint) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new ConfigError(`invalid S3_ENDPOINT: ${JSON.stringify(endpoint)} is not a URL (e.g. http://127.0.0.1:9000)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`invalid S3_ENDPOINT: must be an http or https URL, got ${JSON.stringify(endpoint)}`);
    options.endpoint = endpoint;
  }
  const region = env.S3_REGION?.trim() || env.AWS_REGION?.trim() || env.AWS_DEFAULT_REGION?.trim();
  options.region = region || 'us-east-1';
  const pathStyle = env.S3_FORCE_PATH_STYLE?.trim();
  // Custom endpoints (MinIO, a loopback test server) rarely resolve bucket subdomains.
  options.forcePathStyle = pathStyle ? parseAs('S3_FORCE_PATH_STYLE', boolean, pathStyle) : endpoint !== undefined && endpoint !== '';
  const prefix = objectPrefix(env, 'S3_PREFIX');
  if (prefix) options.prefix = prefix;
  // The SDK's default chain reads process.env; honour static keys given in a different env object.
  if (env !== process.env && env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    options.credentials = { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY };
    if (env.AWS_SESSION_TOKEN) options.credentials.sessionToken = env.AWS_SESSION_TOKEN;
  }
  return options;
}

/** Reads GCS_BUCKET, GCS_ENDPOINT (or STORAGE_EMULATOR_HOST), GCS_PREFIX, GOOGLE_APPLICATION_CREDENTIALS. */
export function gcsSettings(env: NodeJS.ProcessEnv = process.env): GcsSettings {
  const bucket = env.GCS_BUCKET?.trim();
  if (!bucket) throw new ConfigError('the gcs storage backend needs GCS_BUCKET (the bucket to keep blobs and caches in)');
  if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(bucket)) throw new ConfigError(`invalid GCS_BUCKET: ${JSON.stringify(bucket)} is not a valid bucket name`);
  const settings: GcsSettings = { bucket };
  const endpointRaw = env.GCS_ENDPOINT?.trim() || env.STORAGE_EMULATOR_HOST?.trim();
  if (endpointRaw) {
    const withScheme = /^https?:\/\//.test(endpointRaw) ? endpointRaw : `http://${endpointRaw}`;
    try {
      settings.endpoint = new URL(withScheme).origin;
    } catch {
      throw new ConfigError(`invalid GCS_ENDPOINT: ${JSON.stringify(endpointRaw)} is not a URL`);
    }
  }
  const prefix = objectPrefix(env, 'GCS_PREFIX');
  if (prefix) settings.prefix = prefix;
  const keyFile = env.GOOGLE_APPLICATION_CREDENTIALS?.trim();
  if (keyFile) settings.keyFile = keyFile;
  return settings;
}

/** The prefix every object name gets in the bucket (S3_PREFIX, GCS_PREFIX): a key-like path with one trailing `/`. */
function objectPrefix(env: NodeJS.ProcessEnv, variable: string): string | undefined {
  const prefix = env[variable]?.trim();
  if (!prefix) return undefined;
  const bare = prefix.replace(/\/+$/, '');
  if (!STORAGE_KEY.test(bare) || bare.split('/').some((seg) => seg === '.' || seg === '..')) {
    throw new ConfigError(`invalid ${variable}: ${JSON.stringify(prefix)} must be a path of letters, digits, . _ and -`);
  }
  return `${bare}/`;
}

function parseAs<T>(variable: string, parse: (raw: string) => T, raw: string): T {
  try {
    return parse(raw);
  } catch (err) {
    throw new ConfigError(`invalid ${variable}: ${(err as Error).message}`);
  }
}

// ---- Clean-up of what dead processes left behind. ----

/** Default time between clean-ups. */
export const DEFAULT_CLEANUP_INTERVAL_MS = 3 * 60_000;

/**
 * The clean-up interval: NIXERY_CLEANUP_INTERVAL_MS (milliseconds) when set — an internal knob
 * that tests use for a short interval — else DEFAULT_CLEANUP_INTERVAL_MS.
 */
export function cleanupIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.NIXERY_CLEANUP_INTERVAL_MS;
  if (raw === undefined || raw.trim() === '') return DEFAULT_CLEANUP_INTERVAL_MS;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 10 ? n : DEFAULT_CLEANUP_INTERVAL_MS;
}
