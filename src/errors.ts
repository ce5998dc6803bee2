// Every error the product raises on purpose, and the one table that maps each kind to the
// OCI error code, HTTP status and default message a registry client sees. Client errors and
// our own failures are told apart by status (< 500 is the client's), nowhere else.
//
// An error's `message` is public: it may reach a client, so it never holds a server path or a
// credential. What only the log should see (paths, backend names, raw causes) goes in
// `internal`.

export interface CatalogueEntry {
  /** OCI / distribution error code sent in the JSON body. */
  code: string;
  status: number;
  message: string;
  /** Sent as Retry-After (seconds) with this error. */
  retryAfterSeconds?: number;
}

export const ERROR_CATALOGUE = {
  // The request: names, references and ranges that are invalid or unknown.
  NAME_INVALID: { code: 'NAME_INVALID', status: 400, message: 'invalid repository name' },
  // The conformance suite expects 404 for a reference that is not a valid tag (oci.md §3.9).
  TAG_INVALID: { code: 'MANIFEST_UNKNOWN', status: 404, message: 'invalid tag' },
  DIGEST_INVALID: { code: 'DIGEST_INVALID', status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_UNKNOWN: { code: 'MANIFEST_UNKNOWN', status: 404, message: 'manifest unknown' },
  IMAGE_NOT_BUILT: { code: 'MANIFEST_UNKNOWN', status: 404, message: 'the image is not built yet' },
  BLOB_UNKNOWN: { code: 'BLOB_UNKNOWN', status: 404, message: 'blob unknown to registry' },
  PACKAGES_NOT_FOUND: { code: 'NAME_UNKNOWN', status: 404, message: 'could not find Nix packages' },
  NOT_FOUND: { code: 'NOT_FOUND', status: 404, message: 'no such endpoint' },
  UNSUPPORTED: { code: 'UNSUPPORTED', status: 405, message: 'the operation is unsupported' },
  RANGE_INVALID: { code: 'RANGE_INVALID', status: 416, message: 'invalid content range' },
  PAGINATION_NUMBER_INVALID: { code: 'PAGINATION_NUMBER_INVALID', status: 400, message: 'invalid number of results requested' },
  REQUEST_INVALID: { code: 'UNSUPPORTED', status: 400, message: 'malformed HTTP request' },
  REQUEST_TIMEOUT: { code: 'UNSUPPORTED', status: 408, message: 'the request was not received in time' },
  HEADERS_TOO_LARGE: { code: 'UNSUPPORTED', status: 431, message: 'request header fields too large' },
  TOOMANYREQUESTS: { code: 'TOOMANYREQUESTS', status: 429, message: 'too many requests', retryAfterSeconds: 10 },
  // The /api/v1 endpoints (builds, package search).
  BUILD_UNKNOWN: { code: 'BUILD_UNKNOWN', status: 404, message: 'no such build (finished builds are forgotten after a while)' },
  BODY_INVALID: { code: 'BODY_INVALID', status: 400, message: 'invalid request body' },
  BODY_TOO_LARGE: { code: 'SIZE_INVALID', status: 413, message: 'the request body is too large' },
  MEDIA_TYPE_UNSUPPORTED: { code: 'UNSUPPORTED', status: 415, message: 'the request body must be application/json' },
  QUERY_INVALID: { code: 'QUERY_INVALID', status: 400, message: 'invalid query parameter' },

  // Authentication and admission.
  UNAUTHORIZED: { code: 'UNAUTHORIZED', status: 401, message: 'authentication required' },
  DENIED: { code: 'DENIED', status: 403, message: 'requested access to the resource is denied' },
  PACKAGE_DENIED: { code: 'DENIED', status: 403, message: 'a package of the image is not allowed here' },
  IMAGE_TOO_LARGE: { code: 'DENIED', status: 403, message: 'the image is larger than this registry builds' },
  TOO_MANY_PACKAGES: { code: 'DENIED', status: 403, message: 'the image has more packages than this registry builds' },

  // Building: Nix and the package source.
  BUILD_FAILED: { code: 'UNKNOWN', status: 500, message: 'image build failure' },
  // The time limits on Nix (see NixTimeoutError): a builder (NIX_TIMEOUT), a whole realisation
  // (NIXERY_BUILD_TIMEOUT), an evaluation (NIXERY_EVAL_TIMEOUT), a store query.
  BUILD_TIMEOUT: { code: 'UNAVAILABLE', status: 504, message: 'a Nix builder ran longer than NIX_TIMEOUT' },
  REALISE_TIMEOUT: { code: 'UNAVAILABLE', status: 504, message: 'realising the packages took longer than NIXERY_BUILD_TIMEOUT' },
  EVAL_TIMEOUT: { code: 'UNAVAILABLE', status: 504, message: 'evaluating the package set took longer than NIXERY_EVAL_TIMEOUT' },
  STORE_QUERY_TIMEOUT: { code: 'UNAVAILABLE', status: 504, message: 'the Nix store did not answer in time' },
  NIX_UNAVAILABLE: { code: 'UNAVAILABLE', status: 503, message: 'Nix cannot be run', retryAfterSeconds: 30 },
  SOURCE_UNAVAILABLE: { code: 'UNAVAILABLE', status: 503, message: 'the package source cannot be reached', retryAfterSeconds: 30 },

  // Storage. Backends raise these kinds; they never pick OCI codes themselves.
  STORAGE_UNAVAILABLE: { code: 'UNAVAILABLE', status: 503, message: 'storage is unavailable', retryAfterSeconds: 5 },
  // A move whose source vanished (e.g. collected by `nixery gc` meanwhile): retrying rebuilds it.
  STORAGE_OBJECT_NOT_FOUND: { code: 'UNAVAILABLE', status: 503, message: 'a stored object disappeared while it was in use', retryAfterSeconds: 1 },
  STORAGE_RANGE_INVALID: { code: 'RANGE_INVALID', status: 416, message: 'invalid content range' },
  STORAGE_KEY_INVALID: { code: 'UNKNOWN', status: 500, message: 'invalid storage key' },
  // Stored bytes that do not match their digest or checksum: removed, rebuilt on the next request.
  INTEGRITY_FAILED: { code: 'UNAVAILABLE', status: 503, message: 'stored data failed its integrity check and was removed; retry to rebuild it', retryAfterSeconds: 1 },

  // The process itself.
  SHUTTING_DOWN: { code: 'UNAVAILABLE', status: 503, message: 'the registry is shutting down', retryAfterSeconds: 1 },
  CONFIG_INVALID: { code: 'UNKNOWN', status: 500, message: 'invalid configuration' },
  INPUT_INVALID: { code: 'UNKNOWN', status: 500, message: 'invalid input' },
  UNKNOWN: { code: 'UNKNOWN', status: 500, message: 'unknown error' },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorKind = keyof typeof ERROR_CATALOGUE;

export interface ErrorOptions {
  /** Machine-readable detail for the OCI error body (public). */
  detail?: unknown;
  cause?: unknown;
  /** For the log only: paths, backend names, raw causes. */
  internal?: string;
  /** Response headers the error comes with (a WWW-Authenticate challenge). */
  headers?: Record<string, string>;
}

/** Base class: an error whose kind decides how it is reported. */
export class NixeryError extends Error {
  readonly kind: ErrorKind;
  readonly detail: unknown;
  readonly internal: string | undefined;
  readonly headers: Record<string, string> | undefined;
  constructor(kind: ErrorKind, message?: string, options?: ErrorOptions) {
    super(message ?? ERROR_CATALOGUE[kind].message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.detail = options?.detail;
    this.internal = options?.internal;
    this.headers = options?.headers;
    this.name = new.target.name;
  }

  get status(): number {
    return ERROR_CATALOGUE[this.kind].status;
  }
}

/** True for errors that are the client's (4xx), false for our own failures. */
export function isClientError(err: unknown): boolean {
  return err instanceof NixeryError && err.status < 500;
}

/** An image name that breaks the OCI grammar or our package-name rules. */
export class InvalidNameError extends NixeryError {
  constructor(message: string) {
    super('NAME_INVALID', message);
  }
}

export class InvalidTagError extends NixeryError {
  constructor(message: string) {
    super('TAG_INVALID', message);
  }
}

/** A tags list `n` that is not a number of results. */
export class PaginationInvalidError extends NixeryError {
  constructor(message: string) {
    super('PAGINATION_NUMBER_INVALID', message);
  }
}

export class InvalidDigestError extends NixeryError {
  constructor(message: string) {
    super('DIGEST_INVALID', message);
  }
}

/** An image looked at (the explorer) that is not built under its tag's current revision. */
export class ImageNotBuiltError extends NixeryError {
  constructor(image: string) {
    super('IMAGE_NOT_BUILT', `${image} is not built yet: pull it or start a build (POST /api/v1/builds)`);
  }
}

/** Packages the package set does not have; every missing one is listed at once. */
export class PackagesNotFoundError extends NixeryError {
  readonly packages: string[];
  constructor(packages: string[]) {
    super('PACKAGES_NOT_FOUND', `Could not find Nix packages: ${packages.join(', ')}`, { detail: { packages } });
    this.packages = packages;
  }
}

/** The kinds of Nix time limit, each with its own error. */
export type NixTimeoutKind = 'BUILD_TIMEOUT' | 'REALISE_TIMEOUT' | 'EVAL_TIMEOUT' | 'STORE_QUERY_TIMEOUT';

/** What ran past each limit, and the setting an operator raises (none for store queries). */
const NIX_TIME_LIMITS: Record<NixTimeoutKind, { subject: string; setting?: string }> = {
  BUILD_TIMEOUT: { subject: 'the builder', setting: 'NIX_TIMEOUT' },
  REALISE_TIMEOUT: { subject: 'the realisation (builds and downloads)', setting: 'NIXERY_BUILD_TIMEOUT' },
  EVAL_TIMEOUT: { subject: 'evaluation', setting: 'NIXERY_EVAL_TIMEOUT' },
  STORE_QUERY_TIMEOUT: { subject: 'the Nix store query' },
};

/**
 * Nix ran past one of its time limits and was stopped: a builder past NIX_TIMEOUT (Nix's own
 * `--timeout`, reported by Nix), or a whole process past its wall-clock limit (killed by us).
 * The message names what was being done and the setting that sets the limit.
 */
export class NixTimeoutError extends NixeryError {
  readonly seconds: number;
  /** The setting that sets this limit, e.g. `NIX_TIMEOUT` (undefined: a fixed limit). */
  readonly setting: string | undefined;
  constructor(kind: NixTimeoutKind, what: string, seconds: number, options: { internal?: string } = {}) {
    const { subject, setting } = NIX_TIME_LIMITS[kind];
    const limit = setting ? `${setting} (${seconds} s)` : `${seconds} s`;
    super(kind, `${what}: ${subject} took longer than ${limit} and was stopped`, {
      detail: { timeoutSeconds: seconds, ...(setting ? { setting } : {}) },
      internal: options.internal,
    });
    this.seconds = seconds;
    this.setting = setting;
  }
}

/**
 * Nix exited non-zero; the message carries the first lines of its stderr, which the caller has
 * already cleaned of control bytes and secrets (src/nix does).
 */
export class NixFailedError extends NixeryError {
  readonly stderr: string;
  constructor(what: string, stderr: string, exitCode: number | null) {
    const head = firstLines(stderr, 12);
    super('BUILD_FAILED', `${what}: Nix failed${exitCode === null ? '' : ` (exit ${exitCode})`}${head ? `: ${head}` : ''}`);
    this.stderr = stderr;
  }
}

/**
 * A platform of a multi-platform image failed to build, so the image (and its index) cannot be
 * served. It keeps the kind, status, Retry-After and headers of the first failing platform's
 * error, and its message names each failing platform with its cause.
 */
export class PlatformBuildError extends NixeryError {
  /** The failing platforms, in configured order (e.g. `linux/arm64`). */
  readonly platforms: string[];
  readonly retryAfterSeconds: number | undefined;
  /** The failing platforms' Nix output, each line block headed by its platform (for the index page). */
  readonly stderr: string | undefined;
  constructor(failures: ReadonlyArray<{ platform: string; cause: unknown }>) {
    const first = failures[0]!;
    const known = first.cause instanceof NixeryError ? first.cause : undefined;
    const reason = (cause: unknown) => (cause instanceof NixeryError ? cause.message : 'an unexpected error');
    super(known?.kind ?? 'BUILD_FAILED', failures.map((f) => `building for ${f.platform} failed: ${reason(f.cause)}`).join('; '), {
      detail: { platforms: failures.map((f) => ({ platform: f.platform, ...(f.cause instanceof NixeryError && f.cause.detail !== undefined ? { detail: f.cause.detail } : {}) })) },
      internal: failures.map((f) => `${f.platform}: ${logDetail(f.cause)}`).join('; '),
      headers: known?.headers,
      cause: first.cause,
    });
    this.platforms = failures.map((f) => f.platform);
    this.retryAfterSeconds = known ? describeError(known).retryAfterSeconds : undefined;
    const outputs = failures.flatMap((f) => {
      const out = (f.cause as { stderr?: unknown }).stderr;
      return typeof out === 'string' && out.trim() !== '' ? [`${f.platform}:\n${out.trim()}`] : [];
    });
    this.stderr = outputs.length > 0 ? outputs.join('\n') : undefined;
  }
}

/** Nix printed something we cannot read (a Nix version whose output we do not know, or damage). */
export class NixOutputError extends NixeryError {
  constructor(message: string) {
    super('BUILD_FAILED', message);
  }
}

/** Nix (or git) could not be started at all. */
export class NixUnavailableError extends NixeryError {
  constructor(message: string, internal?: string) {
    super('NIX_UNAVAILABLE', message, { internal });
  }
}

/** The package source could not be reached or read (e.g. `git ls-remote` failed). */
export class SourceUnavailableError extends NixeryError {
  constructor(message: string, internal?: string) {
    super('SOURCE_UNAVAILABLE', message, { internal });
  }
}

/** A missing or invalid configuration value; stops startup with one clear line. */
export class ConfigError extends NixeryError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}

/** Input to a command (a layering request, popularity data) that is not what it must be. */
export class InvalidInputError extends NixeryError {
  constructor(message: string) {
    super('INPUT_INVALID', message);
  }
}

export class BlobNotFoundError extends NixeryError {
  constructor(what: string) {
    super('BLOB_UNKNOWN', `blob unknown to registry: ${what}`);
  }
}

export class ManifestNotFoundError extends NixeryError {
  constructor(what: string) {
    super('MANIFEST_UNKNOWN', `manifest unknown: ${what}`);
  }
}

export class TooManyRequestsError extends NixeryError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds: number) {
    super('TOOMANYREQUESTS', message, { detail: { retryAfterSeconds } });
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * Stored bytes that are not what their digest (or a record's checksum) says. Whoever detects it
 * has already quarantined the object, so the next request rebuilds it.
 */
export class IntegrityError extends NixeryError {
  constructor(what: string, internal?: string) {
    super('INTEGRITY_FAILED', `${what} failed its integrity check and was removed; retry to rebuild it`, { internal });
  }
}

/** No credential, or one that is refused; carries the challenge telling the client how to log in. */
export class UnauthorizedError extends NixeryError {
  constructor(message: string, challenge: string) {
    super('UNAUTHORIZED', message, { headers: { 'WWW-Authenticate': challenge } });
  }
}

/** A valid credential that does not grant this. */
export class DeniedError extends NixeryError {
  constructor(message: string) {
    super('DENIED', message);
  }
}

export class PackageDeniedError extends NixeryError {
  constructor(packageName: string, reason: string) {
    super('PACKAGE_DENIED', `package ${packageName} is not allowed here: ${reason}`, { detail: { package: packageName } });
  }
}

export class TooManyPackagesError extends NixeryError {
  constructor(count: number, limit: number) {
    super('TOO_MANY_PACKAGES', `the image has ${count} packages; this registry builds images of at most ${limit} (NIXERY_MAX_PACKAGES)`, { detail: { packages: count, limit } });
  }
}

export class ImageTooLargeError extends NixeryError {
  constructor(bytes: number, limit: number) {
    super('IMAGE_TOO_LARGE', `the image's closure is ${formatBytes(bytes)}; this registry builds images of at most ${formatBytes(limit)} (NIXERY_MAX_IMAGE_SIZE)`, {
      detail: { size: bytes, limit },
    });
  }
}

/** `1536` → `1.5 KiB`, for messages people read. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${bytes} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

export class ShuttingDownError extends NixeryError {
  constructor() {
    super('SHUTTING_DOWN');
  }
}

/** Keeps the first `n` non-empty lines of a (Nix) error output. */
export function firstLines(text: string, n: number): string {
  return text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '')
    .slice(0, n)
    .join('\n');
}

/** How any thrown value is reported: its catalogue entry and public message; unknown errors are UNKNOWN. */
export function describeError(err: unknown): { entry: CatalogueEntry; message: string; detail?: unknown; retryAfterSeconds?: number; headers?: Record<string, string> } {
  if (err instanceof NixeryError) {
    const entry: CatalogueEntry = ERROR_CATALOGUE[err.kind];
    const retryAfterSeconds = err instanceof TooManyRequestsError || err instanceof PlatformBuildError ? (err.retryAfterSeconds ?? entry.retryAfterSeconds) : entry.retryAfterSeconds;
    return { entry, message: err.message, detail: err.detail, retryAfterSeconds, headers: err.headers };
  }
  return { entry: ERROR_CATALOGUE.UNKNOWN, message: ERROR_CATALOGUE.UNKNOWN.message };
}

/** Everything the log should know about an error (never sent to clients). */
export function logDetail(err: unknown): string {
  if (err instanceof NixeryError) return err.internal ? `${err.message} [${err.internal}]` : err.message;
  if (err instanceof Error) return err.stack ?? err.message;
  return String(err);
}
