// Every error the product raises on purpose, and the one table that maps each kind to the
// OCI error code, HTTP status and default message a registry client sees. Client errors and
// our own failures are told apart by status (< 500 is the client's), nowhere else.
//
// An error's `message` is public: it may reach a client, so it never holds a server path or a
// credential. What only the log should see (paths, backend names, raw causes) goes in
// `internal`.
//
// Each error class is one line below, made from its kind by defineError (as fastify's
// createError does), so the table and the classes cannot drift apart.

import { causeMessage, describeStorageCause } from './util/cause.js';

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
  // A requested package that fails to evaluate (throws, fails an assertion): the request's fault.
  PACKAGE_INVALID: { code: 'PACKAGE_INVALID', status: 400, message: 'a package of the image cannot be evaluated' },
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
  // Descriptors and connections (NIXERY_MAX_CONNECTIONS and the caps beneath it).
  OUT_OF_DESCRIPTORS: { code: 'UNAVAILABLE', status: 503, message: 'the registry is out of file descriptors', retryAfterSeconds: 5 },
  TOO_MANY_CONNECTIONS: { code: 'UNAVAILABLE', status: 503, message: 'the registry has too many connections open', retryAfterSeconds: 1 },
  CLIENT_CONNECTIONS: { code: 'TOOMANYREQUESTS', status: 429, message: 'this client has too many connections open', retryAfterSeconds: 1 },
  CONFIG_INVALID: { code: 'UNKNOWN', status: 500, message: 'invalid configuration' },
  INPUT_INVALID: { code: 'UNKNOWN', status: 500, message: 'invalid input' },
  VERIFY_FAILED: { code: 'UNKNOWN', status: 500, message: "the image's provenance could not be read" },
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

/** What an error class makes of its constructor's arguments. */
interface Made<F> {
  message?: string;
  /** Overrides the class's kind (an error that takes the kind of its cause). */
  kind?: ErrorKind;
  options?: ErrorOptions;
  /** Extra public fields of the error (e.g. `seconds`, `packages`). */
  fields?: F;
}

export interface NixeryErrorClass<A extends unknown[], F extends object> {
  new (...args: A): NixeryError & Readonly<F>;
  readonly prototype: NixeryError & Readonly<F>;
}

/**
 * Makes the class of one kind of error from its catalogue kind and a function of its
 * arguments, as fastify's `createError` does: one line per error, `instanceof` works, and the
 * class is named (for logs and `err.name`). A `parent` makes it an instance of that class too.
 */
function defineError<A extends unknown[], F extends object = object>(
  name: string,
  kind: ErrorKind,
  make: (...args: A) => Made<F> = () => ({}),
  parent?: abstract new (...args: never[]) => NixeryError,
): NixeryErrorClass<A, F> {
  const cls = class extends NixeryError {
    constructor(...args: A) {
      const made = make(...args);
      super(made.kind ?? kind, made.message, made.options);
      if (made.fields) Object.assign(this, made.fields);
    }
  };
  Object.defineProperty(cls, 'name', { value: name });
  // The parent's constructor is not run (its arguments differ); only its prototype is shared.
  if (parent) Object.setPrototypeOf(cls.prototype, parent.prototype);
  return cls as unknown as NixeryErrorClass<A, F>;
}

const msg = (message: string, options?: ErrorOptions): Made<object> => ({ message, options });

// ---- The errors, one line each (kind, then what the arguments make of it). ----

// The request.
/** An image name that breaks the OCI grammar or our package-name rules. */
export const InvalidNameError = /* @__PURE__ */ defineError('InvalidNameError', 'NAME_INVALID', (message: string) => msg(message));
export const InvalidTagError = /* @__PURE__ */ defineError('InvalidTagError', 'TAG_INVALID', (message: string) => msg(message));
/** A tags list `n` that is not a number of results. */
export const PaginationInvalidError = /* @__PURE__ */ defineError('PaginationInvalidError', 'PAGINATION_NUMBER_INVALID', (message: string) => msg(message));
export const InvalidDigestError = /* @__PURE__ */ defineError('InvalidDigestError', 'DIGEST_INVALID', (message: string) => msg(message));
/** An image looked at (the explorer) that is not built under its tag's current revision. */
export const ImageNotBuiltError = /* @__PURE__ */ defineError('ImageNotBuiltError', 'IMAGE_NOT_BUILT', (image: string) => msg(`${image} is not built yet: pull it or start a build (POST /api/v1/builds)`));
/** Packages the package set does not have; every missing one is listed at once. */
export const PackagesNotFoundError = /* @__PURE__ */ defineError('PackagesNotFoundError', 'PACKAGES_NOT_FOUND', (packages: string[]) => ({ message: `Could not find Nix packages: ${packages.join(', ')}`, options: { detail: { packages } }, fields: { packages } }));
/** The same, with why each name is missing; a plain "no attribute hello" adds nothing to the name. */
export const PackagesNotFoundWithReasons = /* @__PURE__ */ defineError('PackagesNotFoundWithReasons', 'PACKAGES_NOT_FOUND', (reasons: Array<{ requested: string; reason: string }>) => {
  const packages = reasons.map((r) => r.requested);
  const described = reasons.map((r) => (r.reason === `no attribute ${r.requested}` ? r.requested : `${r.requested} (${r.reason})`));
  return { message: `Could not find Nix packages: ${described.join(', ')}`, options: { detail: { packages } }, fields: { packages, reasons } };
}, PackagesNotFoundError);
export const BlobNotFoundError = /* @__PURE__ */ defineError('BlobNotFoundError', 'BLOB_UNKNOWN', (what: string) => msg(`blob unknown to registry: ${what}`));
export const ManifestNotFoundError = /* @__PURE__ */ defineError('ManifestNotFoundError', 'MANIFEST_UNKNOWN', (what: string) => msg(`manifest unknown: ${what}`));
export const TooManyRequestsError = /* @__PURE__ */ defineError('TooManyRequestsError', 'TOOMANYREQUESTS', (message: string, retryAfterSeconds: number) => ({ message, options: { detail: { retryAfterSeconds } }, fields: { retryAfterSeconds } }));

// Authentication and admission.
/** No credential, or one that is refused; carries the challenge telling the client how to log in. */
export const UnauthorizedError = /* @__PURE__ */ defineError('UnauthorizedError', 'UNAUTHORIZED', (message: string, challenge: string) => msg(message, { headers: { 'WWW-Authenticate': challenge } }));
/** A valid credential that does not grant this. */
export const DeniedError = /* @__PURE__ */ defineError('DeniedError', 'DENIED', (message: string) => msg(message));
export const PackageDeniedError = /* @__PURE__ */ defineError('PackageDeniedError', 'PACKAGE_DENIED', (packageName: string, reason: string) => msg(`package ${packageName} is not allowed here: ${reason}`, { detail: { package: packageName } }));
export const TooManyPackagesError = /* @__PURE__ */ defineError('TooManyPackagesError', 'TOO_MANY_PACKAGES', (count: number, limit: number) => msg(`the image has ${count} packages; this registry builds images of at most ${limit} (NIXERY_MAX_PACKAGES)`, { detail: { packages: count, limit } }));
export const ImageTooLargeError = /* @__PURE__ */ defineError('ImageTooLargeError', 'IMAGE_TOO_LARGE', (bytes: number, limit: number) => msg(`the image's closure is ${formatBytes(bytes)}; this registry builds images of at most ${formatBytes(limit)} (NIXERY_MAX_IMAGE_SIZE)`, { detail: { size: bytes, limit } }));

/** A requested package that fails to evaluate; the message names it and carries Nix's reason. */
export const PackageInvalidError = /* @__PURE__ */ defineError('PackageInvalidError', 'PACKAGE_INVALID', (packageName: string, reason: string) => msg(`package ${packageName} cannot be evaluated: ${reason}`, { detail: { package: packageName } }));

// Building: Nix and the package source.
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
export const NixTimeoutError = /* @__PURE__ */ defineError('NixTimeoutError', 'BUILD_TIMEOUT', (kind: NixTimeoutKind, what: string, seconds: number, options: { internal?: string } = {}) => {
  const { subject, setting } = NIX_TIME_LIMITS[kind];
  const limit = setting ? `${setting} (${seconds} s)` : `${seconds} s`;
  const detail = { timeoutSeconds: seconds, ...(setting ? { setting } : {}) };
  return { kind, message: `${what}: ${subject} took longer than ${limit} and was stopped`, options: { detail, internal: options.internal }, fields: { seconds, setting } };
});
/** Nix exited non-zero; the message carries the first lines of its stderr, already cleaned of control bytes and secrets (src/nix does). */
export const NixFailedError = /* @__PURE__ */ defineError('NixFailedError', 'BUILD_FAILED', (what: string, stderr: string, exitCode: number | null) => {
  const head = firstLines(stderr, 12);
  return { message: `${what}: Nix failed${exitCode === null ? '' : ` (exit ${exitCode})`}${head ? `: ${head}` : ''}`, fields: { stderr } };
});
/**
 * A platform of a multi-platform image failed to build, so the image (and its index) cannot be
 * served. It keeps the kind, status, Retry-After and headers of the first failing platform's
 * error, and its message names each failing platform with its cause.
 */
export const PlatformBuildError = /* @__PURE__ */ defineError('PlatformBuildError', 'BUILD_FAILED', (failures: ReadonlyArray<{ platform: string; cause: unknown }>) => {
  const first = failures[0]!;
  const known = first.cause instanceof NixeryError ? first.cause : undefined;
  const reason = (cause: unknown) => (cause instanceof NixeryError ? cause.message : 'an unexpected error');
  const outputs = failures.flatMap((f) => {
    const out = (f.cause as { stderr?: unknown }).stderr;
    return typeof out === 'string' && out.trim() !== '' ? [`${f.platform}:\n${out.trim()}`] : [];
  });
  return {
    kind: known?.kind,
    message: failures.map((f) => `building for ${f.platform} failed: ${reason(f.cause)}`).join('; '),
    options: {
      detail: { platforms: failures.map((f) => ({ platform: f.platform, ...(f.cause instanceof NixeryError && f.cause.detail !== undefined ? { detail: f.cause.detail } : {}) })) },
      internal: failures.map((f) => `${f.platform}: ${logDetail(f.cause)}`).join('; '),
      headers: known?.headers,
      cause: first.cause,
    },
    fields: {
      /** The failing platforms, in configured order (e.g. `linux/arm64`). */
      platforms: failures.map((f) => f.platform),
      retryAfterSeconds: known ? describeError(known).retryAfterSeconds : undefined,
      /** The failing platforms' Nix output, each block headed by its platform (for the index page). */
      stderr: outputs.length > 0 ? outputs.join('\n') : undefined,
    },
  };
});
/** Nix printed something we cannot read (a Nix version whose output we do not know, or damage). */
export const NixOutputError = /* @__PURE__ */ defineError('NixOutputError', 'BUILD_FAILED', (message: string) => msg(message));
/** Nix (or git) could not be started at all. */
export const NixUnavailableError = /* @__PURE__ */ defineError('NixUnavailableError', 'NIX_UNAVAILABLE', (message: string, internal?: string) => msg(message, { internal }));
/** The package source could not be reached or read (e.g. `git ls-remote` failed). */
export const SourceUnavailableError = /* @__PURE__ */ defineError('SourceUnavailableError', 'SOURCE_UNAVAILABLE', (message: string, internal?: string) => msg(message, { internal }));

// Packing layers: build failures naming the file and what went wrong.
/** A layer could not be packed: unreadable input, an invalid entry, a failing sink. */
export const ArchiveError = /* @__PURE__ */ defineError('ArchiveError', 'BUILD_FAILED', (message: string, options?: { path?: string; cause?: unknown }) => ({ message, options: { detail: options?.path === undefined ? undefined : { path: options.path }, cause: options?.cause }, fields: { path: options?.path } }));
/** A file changed (size or type) between the directory walk and the moment it was packed. */
export const FileChangedError = /* @__PURE__ */ defineError('FileChangedError', 'BUILD_FAILED', (path: string, what: string) => ({ message: `file changed while it was being packed: ${path}: ${what}`, options: { detail: { path } }, fields: { path: path as string | undefined } }), ArchiveError);

// Layering: a graph or budget that breaks the strategies' preconditions (a bug upstream).
export const InvalidClosureError = /* @__PURE__ */ defineError('InvalidClosureError', 'BUILD_FAILED', (message: string) => msg(`invalid closure graph: ${message}`));
/** A layer budget outside 1..max. */
export const InvalidLayerBudgetError = /* @__PURE__ */ defineError('InvalidLayerBudgetError', 'BUILD_FAILED', (budget: unknown, max: number) => msg(`invalid layer budget ${JSON.stringify(budget)}: must be a whole number from 1 to ${max}`));

// Storage. Backends raise these kinds; the table above, not they, picks the OCI codes.
/** A key that does not match STORAGE_KEY, climbs out of the root, or uses a reserved name. */
export const InvalidStorageKeyError = /* @__PURE__ */ defineError('InvalidStorageKeyError', 'STORAGE_KEY_INVALID', (key: string, why: string) => ({ message: `invalid storage key ${JSON.stringify(key.length > 120 ? `${key.slice(0, 117)}...` : key)}: ${why}`, fields: { key } }));
/** An operation that needs an existing object (move) found none. */
export const StorageObjectNotFoundError = /* @__PURE__ */ defineError('StorageObjectNotFoundError', 'STORAGE_OBJECT_NOT_FOUND', (key: string) => ({ options: { internal: `storage object not found: ${key}` }, fields: { key } }));
/** A byte range outside the object. */
export const StorageRangeError = /* @__PURE__ */ defineError('StorageRangeError', 'STORAGE_RANGE_INVALID', (key: string, start: number, end: number, size?: number) => msg(`invalid byte range ${start}-${end}${size === undefined ? '' : ` of ${size} bytes`}`, { internal: key }));
/**
 * The backend itself failed: an I/O error, a full or read-only disk, an object store's error.
 * `reason` is in words a client may see (e.g. `the storage device is full`); the key, backend
 * and raw cause go to the log only.
 */
export const StorageUnavailableError = /* @__PURE__ */ defineError('StorageUnavailableError', 'STORAGE_UNAVAILABLE', (backend: string, operation: string, key: string, cause: unknown, reason = describeStorageCause(cause)) =>
  ({ message: `storage is unavailable: ${reason} (${operation})`, options: { cause, internal: `${backend}: ${operation} ${key} failed: ${causeMessage(cause)}` }, fields: { reason } }));
/**
 * Stored bytes that are not what their digest (or a record's checksum) says. Whoever detects it
 * has already quarantined the object, so the next request rebuilds it.
 */
export const IntegrityError = /* @__PURE__ */ defineError('IntegrityError', 'INTEGRITY_FAILED', (what: string, internal?: string) => msg(`${what} failed its integrity check and was removed; retry to rebuild it`, { internal }));

// The process and its inputs.
export const ShuttingDownError = /* @__PURE__ */ defineError('ShuttingDownError', 'SHUTTING_DOWN');
/** A missing or invalid configuration value; stops startup with one clear line. */
export const ConfigError = /* @__PURE__ */ defineError('ConfigError', 'CONFIG_INVALID', (message: string) => msg(message));
/** A build request's image `config` with a field that is not what it must be: the 400 names the field. */
export const ImageConfigInvalidError = /* @__PURE__ */ defineError('ImageConfigInvalidError', 'BODY_INVALID', (field: string, why: string) => msg(`${field ? `config.${field}` : 'config'}: ${why}`, { detail: { field: field ? `config.${field}` : 'config' } }));
/** Input to a command (a layering request, popularity data) that is not what it must be. */
export const InvalidInputError = /* @__PURE__ */ defineError('InvalidInputError', 'INPUT_INVALID', (message: string) => msg(message));
/** `nixery verify` could not get as far as comparing: the registry or the provenance failed it. */
export const VerifyError = /* @__PURE__ */ defineError('VerifyError', 'VERIFY_FAILED', (message: string) => msg(message));
/** Popularity data that is not `{"name": count}`. */
export const InvalidPopularityError = /* @__PURE__ */ defineError('InvalidPopularityError', 'INPUT_INVALID', (message: string) => msg(message), InvalidInputError);
/** A `nixery layers` request that is not JSON or not in the contract's shape. */
export const InvalidLayersRequestError = /* @__PURE__ */ defineError('InvalidLayersRequestError', 'INPUT_INVALID', (message: string) => msg(`invalid layers request: ${message}`));

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

/** A process or file could not be opened: this process is out of descriptors (EMFILE, ENFILE). */
export const OutOfDescriptorsError = /* @__PURE__ */ defineError('OutOfDescriptorsError', 'OUT_OF_DESCRIPTORS', (what: string, internal?: string) => msg(`the registry is out of file descriptors (${what}); retry shortly`, { internal }));
/** A connection, request or event stream over one of the caps (the message names which). */
export const TooManyConnectionsError = /* @__PURE__ */ defineError('TooManyConnectionsError', 'TOO_MANY_CONNECTIONS', (kind: 'TOO_MANY_CONNECTIONS' | 'CLIENT_CONNECTIONS', message: string) => ({ kind, message }));

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
    const own = (err as { retryAfterSeconds?: number }).retryAfterSeconds;
    const retryAfterSeconds = err instanceof TooManyRequestsError || err instanceof PlatformBuildError ? (own ?? entry.retryAfterSeconds) : entry.retryAfterSeconds;
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

/** Instance types, so each class name is also a type (`err: BlobNotFoundError`). */
export type InvalidNameError = InstanceType<typeof InvalidNameError>;
export type InvalidTagError = InstanceType<typeof InvalidTagError>;
export type PaginationInvalidError = InstanceType<typeof PaginationInvalidError>;
export type InvalidDigestError = InstanceType<typeof InvalidDigestError>;
export type ImageNotBuiltError = InstanceType<typeof ImageNotBuiltError>;
export type PackagesNotFoundError = InstanceType<typeof PackagesNotFoundError>;
export type PackagesNotFoundWithReasons = InstanceType<typeof PackagesNotFoundWithReasons>;
export type BlobNotFoundError = InstanceType<typeof BlobNotFoundError>;
export type ManifestNotFoundError = InstanceType<typeof ManifestNotFoundError>;
export type TooManyRequestsError = InstanceType<typeof TooManyRequestsError>;
export type UnauthorizedError = InstanceType<typeof UnauthorizedError>;
export type DeniedError = InstanceType<typeof DeniedError>;
export type PackageDeniedError = InstanceType<typeof PackageDeniedError>;
export type PackageInvalidError = InstanceType<typeof PackageInvalidError>;
export type TooManyPackagesError = InstanceType<typeof TooManyPackagesError>;
export type ImageTooLargeError = InstanceType<typeof ImageTooLargeError>;
export type NixTimeoutError = InstanceType<typeof NixTimeoutError>;
export type NixFailedError = InstanceType<typeof NixFailedError>;
export type PlatformBuildError = InstanceType<typeof PlatformBuildError>;
export type NixOutputError = InstanceType<typeof NixOutputError>;
export type NixUnavailableError = InstanceType<typeof NixUnavailableError>;
export type SourceUnavailableError = InstanceType<typeof SourceUnavailableError>;
export type ArchiveError = InstanceType<typeof ArchiveError>;
export type FileChangedError = InstanceType<typeof FileChangedError>;
export type InvalidClosureError = InstanceType<typeof InvalidClosureError>;
export type InvalidLayerBudgetError = InstanceType<typeof InvalidLayerBudgetError>;
export type InvalidStorageKeyError = InstanceType<typeof InvalidStorageKeyError>;
export type StorageObjectNotFoundError = InstanceType<typeof StorageObjectNotFoundError>;
export type StorageRangeError = InstanceType<typeof StorageRangeError>;
export type StorageUnavailableError = InstanceType<typeof StorageUnavailableError>;
export type IntegrityError = InstanceType<typeof IntegrityError>;
export type ShuttingDownError = InstanceType<typeof ShuttingDownError>;
export type OutOfDescriptorsError = InstanceType<typeof OutOfDescriptorsError>;
export type TooManyConnectionsError = InstanceType<typeof TooManyConnectionsError>;
export type ConfigError = InstanceType<typeof ConfigError>;
export type InvalidInputError = InstanceType<typeof InvalidInputError>;
export type InvalidPopularityError = InstanceType<typeof InvalidPopularityError>;
export type InvalidLayersRequestError = InstanceType<typeof InvalidLayersRequestError>;
