// HTTP plumbing shared by the registry handlers: OCI JSON errors from the one catalogue,
// common headers, conditional requests and byte ranges.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeError, ERROR_CATALOGUE, logDetail, type ErrorKind } from '../errors.js';
import { redact } from '../secrets.js';

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** Path without the query string. */
  path: string;
  id: string;
  /** The request's log line: handlers add how the answer was produced. */
  log: Record<string, unknown>;
  /** The name of the route the path matched, once it is known (the metrics' label). */
  route?: string;
}

export const API_VERSION_HEADER = ['Docker-Distribution-API-Version', 'registry/2.0'] as const;

/**
 * Every response goes out through here: it adds the headers all responses carry (the API
 * version, the request id, no MIME sniffing: a JSON or HTML answer is never taken for another
 * type) in the one writeHead call, which is cheaper than setHeader on the hot path.
 */
export function writeHead(ctx: RequestContext, status: number, headers: Record<string, string | number>): void {
  headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1];
  headers['X-Request-Id'] = ctx.id;
  headers['X-Content-Type-Options'] = 'nosniff';
  ctx.res.writeHead(status, headers);
}

/** Writes an OCI error body for any thrown value (unknown errors become 500 UNKNOWN). */
export function sendError(ctx: RequestContext, err: unknown): void {
  const { entry, message, detail, retryAfterSeconds, headers: errorHeaders } = describeError(err);
  const headers: Record<string, string> = { ...errorHeaders };
  if (retryAfterSeconds !== undefined) headers['Retry-After'] = String(retryAfterSeconds);
  sendErrorBody(ctx, entry.status, entry.code, message, detail, headers);
  if (entry.status >= 500) ctx.log.err = logDetail(err);
  // Refusals (authentication, access, limits) say why in the request's log line.
  else if (entry.status === 401 || entry.status === 403 || entry.status === 429) ctx.log.refused = message;
}

export function sendCatalogueError(ctx: RequestContext, kind: ErrorKind, message?: string): void {
  const entry = ERROR_CATALOGUE[kind];
  sendErrorBody(ctx, entry.status, entry.code, message ?? entry.message);
}

function sendErrorBody(ctx: RequestContext, status: number, code: string, message: string, detail?: unknown, headers: Record<string, string> = {}): void {
  const error: Record<string, unknown> = { code, message };
  if (detail !== undefined) error.detail = detail;
  // The last stop before a client: whatever an error carries, no configured secret gets out.
  const body = Buffer.from(redact(JSON.stringify({ errors: [error] })));
  writeHead(ctx, status, {
    ...headers,
    'Content-Type': 'application/json',
    'Content-Length': body.length,
  });
  ctx.res.end(body);
}

/** True when an If-None-Match header matches the entity tag (or is `*`). */
export function notModified(req: IncomingMessage, etag: string): boolean {
  const header = req.headers['if-none-match'];
  if (!header) return false;
  return header
    .split(',')
    .map((t) => t.trim().replace(/^W\//, ''))
    .some((t) => t === '*' || t === etag);
}

export type RangeResult = { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' };

/**
 * Parses a Range header for an entity of `size` bytes. Only a single `bytes=` range is
 * honoured; multiple ranges or a malformed header are ignored (full response), per RFC 9110.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return { kind: 'full' };
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'full' };
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return { kind: 'unsatisfiable' };
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return { kind: 'full' };
  }
  if (start >= size || size === 0) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end };
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
