// Why an operation on a file or a remote service failed, in words a client may see: read from
// the error's code (errno, undici) or the HTTP status a service answered, never from its text,
// so no path, URL or credential can leak through it.

const ERRNO_REASONS: Record<string, string> = {
  ENOSPC: 'the storage device is full',
  EDQUOT: 'the storage quota is exhausted',
  EROFS: 'the storage is read-only',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOTDIR: 'the storage directory is not a directory',
  EISDIR: 'a stored object is a directory',
  EIO: 'an I/O error',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  ECONNREFUSED: 'the connection was refused',
  ECONNRESET: 'the connection was reset',
  ETIMEDOUT: 'the request timed out',
  ENOTFOUND: 'the host was not found',
  EAI_AGAIN: 'the host name could not be resolved',
  EPIPE: 'the connection was closed',
  UND_ERR_CONNECT_TIMEOUT: 'the connection timed out',
  UND_ERR_SOCKET: 'the connection failed',
};

/** A client-safe description of a storage failure's cause (walks `cause` chains a few deep). */
export function describeStorageCause(cause: unknown): string {
  for (let e: unknown = cause, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && ERRNO_REASONS[code]) return `${ERRNO_REASONS[code]} (${code})`;
    const status = (e as { $metadata?: { httpStatusCode?: number }; status?: unknown }).$metadata?.httpStatusCode ?? (e as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400) {
      if (status === 429 || status === 503) return `the object store is throttling or unavailable (HTTP ${status})`;
      if (status >= 500) return `the object store answered HTTP ${status}`;
      if (status === 401 || status === 403) return `the object store denied access (HTTP ${status})`;
      return `the object store answered HTTP ${status}`;
    }
    const name = (e as { name?: unknown }).name;
    if (name === 'TimeoutError' || name === 'AbortError' || name === 'RequestTimeout') return 'the request timed out';
  }
  return 'an unexpected storage error';
}

/** The raw message of a cause, for the log only. */
export function causeMessage(cause: unknown): string {
  if (cause instanceof Error) return cause.message || cause.name;
  return String(cause);
}
