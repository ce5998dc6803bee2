// Every error the product raises on purpose, and the one table that maps each kind to the
// OCI error code, HTTP status and default message a registry client sees.

export interface CatalogueEntry {
  /** OCI / distribution error code sent in the JSON body. */
  code: string;
  status: number;
  message: string;
}

export const ERROR_CATALOGUE = {
  BLOB_UNKNOWN: { code: 'BLOB_UNKNOWN', status: 404, message: 'blob unknown to registry' },
  MANIFEST_UNKNOWN: { code: 'MANIFEST_UNKNOWN', status: 404, message: 'manifest unknown' },
  PACKAGES_NOT_FOUND: { code: 'MANIFEST_UNKNOWN', status: 404, message: 'could not find Nix packages' },
  NAME_INVALID: { code: 'NAME_INVALID', status: 400, message: 'invalid repository name' },
  // The conformance suite expects 404 for a reference that is not a valid tag (oci.md §3.9).
  TAG_INVALID: { code: 'MANIFEST_UNKNOWN', status: 404, message: 'invalid tag' },
  DIGEST_INVALID: { code: 'DIGEST_INVALID', status: 400, message: 'provided digest did not match uploaded content' },
  NOT_FOUND: { code: 'NOT_FOUND', status: 404, message: 'no such endpoint' },
  UNSUPPORTED: { code: 'UNSUPPORTED', status: 405, message: 'the operation is unsupported' },
  RANGE_INVALID: { code: 'RANGE_INVALID', status: 416, message: 'invalid content range' },
  TOOMANYREQUESTS: { code: 'TOOMANYREQUESTS', status: 429, message: 'too many requests' },
  BUILD_TIMEOUT: { code: 'UNAVAILABLE', status: 504, message: 'image build timed out' },
  BUILD_FAILED: { code: 'UNKNOWN', status: 500, message: 'image build failure' },
  STORAGE_FAILED: { code: 'UNKNOWN', status: 500, message: 'storage failure' },
  UNKNOWN: { code: 'UNKNOWN', status: 500, message: 'unknown error' },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorKind = keyof typeof ERROR_CATALOGUE;

/** Base class: an error whose kind decides how it is reported. */
export class NixeryError extends Error {
  readonly kind: ErrorKind;
  readonly detail: unknown;
  constructor(kind: ErrorKind, message?: string, options?: { detail?: unknown; cause?: unknown }) {
    super(message ?? ERROR_CATALOGUE[kind].message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.detail = options?.detail;
    this.name = new.target.name;
  }
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

export class InvalidDigestError extends NixeryError {
  constructor(message: string) {
    super('DIGEST_INVALID', message);
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

/** A Nix invocation that ran past NIX_TIMEOUT and was killed. */
export class NixTimeoutError extends NixeryError {
  readonly seconds: number;
  constructor(what: string, seconds: number) {
    super('BUILD_TIMEOUT', `${what}: Nix timed out after ${seconds} seconds (NIX_TIMEOUT)`, { detail: { timeoutSeconds: seconds } });
    this.seconds = seconds;
  }
}

/** Nix exited non-zero; the message carries the first lines of its stderr. */
export class NixFailedError extends NixeryError {
  readonly stderr: string;
  constructor(what: string, stderr: string, exitCode: number | null) {
    const head = firstLines(stderr, 12);
    super('BUILD_FAILED', `${what}: Nix failed${exitCode === null ? '' : ` (exit ${exitCode})`}${head ? `: ${head}` : ''}`);
    this.stderr = stderr;
  }
}

/** A missing or invalid configuration value; stops startup with one clear line. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
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

/** Keeps the first `n` non-empty lines of a (Nix) error output. */
export function firstLines(text: string, n: number): string {
  return text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '')
    .slice(0, n)
    .join('\n');
}

/** The catalogue entry for any thrown value; unexpected errors are UNKNOWN. */
export function describeError(err: unknown): { entry: CatalogueEntry; message: string; detail?: unknown } {
  if (err instanceof NixeryError) {
    return { entry: ERROR_CATALOGUE[err.kind], message: err.message, detail: err.detail };
  }
  return { entry: ERROR_CATALOGUE.UNKNOWN, message: ERROR_CATALOGUE.UNKNOWN.message };
}
