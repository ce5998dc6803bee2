// Errors raised while packing a layer. They are build failures for the registry (HTTP 500),
// with a message that names the file and what went wrong.

import { NixeryError } from '../errors.js';

/** A layer could not be packed: unreadable input, an invalid entry, a failing sink. */
export class ArchiveError extends NixeryError {
  /** The file or entry the error is about, when there is one. */
  readonly path: string | undefined;
  constructor(message: string, options?: { path?: string; cause?: unknown }) {
    super('BUILD_FAILED', message, { detail: options?.path === undefined ? undefined : { path: options.path }, cause: options?.cause });
    this.path = options?.path;
  }
}

/** A file changed (size or type) between the directory walk and the moment it was packed. */
export class FileChangedError extends ArchiveError {
  constructor(path: string, what: string) {
    super(`file changed while it was being packed: ${path}: ${what}`, { path });
  }
}
