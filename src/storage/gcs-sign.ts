// Google Cloud Storage V4 signed URLs (GOOG4-RSA-SHA256): the canonical request and string to
// sign, checked against Google's published signing conformance vectors. The signature itself
// comes from a BlobSigner, in production google-auth-library's `GoogleAuth.sign` (a local
// service-account key, or IAM signBlob for identities without one).

import { createHash } from 'node:crypto';
import { compareStrings } from '../image/name.js';

export type UrlStyle = 'PATH_STYLE' | 'VIRTUAL_HOSTED_STYLE' | 'BUCKET_BOUND_DOMAIN';

export interface V4SignRequest {
  bucket: string;
  /** Object name; absent to sign a bucket URL. */
  object?: string;
  method: string;
  /** Lifetime in seconds (at most 7 days). */
  expiresSeconds: number;
  /** Signing time (default now). */
  timestamp?: Date;
  /** The service account that signs (X-Goog-Credential). */
  clientEmail: string;
  /** Extra headers the client must send (they are signed). */
  headers?: Record<string, string>;
  queryParameters?: Record<string, string>;
  /** Default https. */
  scheme?: 'http' | 'https';
  urlStyle?: UrlStyle;
  bucketBoundDomain?: string;
  /** Host of the XML API (default storage.googleapis.com), e.g. `127.0.0.1:4443` for a test server. */
  host?: string;
}

/** Signs a string with RSA-SHA256 as the service account; the signature base64-encoded. */
export type BlobSigner = (blob: string) => Promise<string>;

export const MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600;

/** Returns the signed URL. */
export async function signV4Url(req: V4SignRequest, sign: BlobSigner): Promise<string> {
  if (!Number.isInteger(req.expiresSeconds) || req.expiresSeconds < 1 || req.expiresSeconds > MAX_SIGNED_URL_SECONDS) {
    throw new RangeError(`signed URL lifetime must be 1..${MAX_SIGNED_URL_SECONDS} seconds, got ${req.expiresSeconds}`);
  }
  const when = req.timestamp ?? new Date();
  const datetime = when.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, ''); // 20190201T090000Z
  const date = datetime.slice(0, 8);
  const scheme = req.scheme ?? 'https';
  const baseHost = req.host ?? 'storage.googleapis.com';
  const style = req.urlStyle ?? 'PATH_STYLE';
  const objectPath = req.object === undefined ? '' : `/${encodePath(req.object)}`;
  let host: string;
  let path: string;
  if (style === 'VIRTUAL_HOSTED_STYLE') {
    host = `${req.bucket}.${baseHost}`;
    path = objectPath || '/';
  } else if (style === 'BUCKET_BOUND_DOMAIN') {
    if (!req.bucketBoundDomain) throw new Error('BUCKET_BOUND_DOMAIN needs bucketBoundDomain');
    host = req.bucketBoundDomain;
    path = objectPath || '/';
  } else {
    host = baseHost;
    path = `/${encodePath(req.bucket)}${objectPath}`;
  }

  // Canonical headers: names lower-cased, values trimmed with inner whitespace runs collapsed.
  const headers = new Map<string, string>();
  for (const [name, value] of Object.entries(req.headers ?? {})) headers.set(name.toLowerCase(), value.trim().replace(/\s+/g, ' '));
  headers.set('host', host);
  const headerNames = [...headers.keys()].sort(compareStrings);
  const signedHeaders = headerNames.join(';');
  const canonicalHeaders = headerNames.map((n) => `${n}:${headers.get(n)}\n`).join('');

  const scope = `${date}/auto/storage/goog4_request`;
  const query: Array<[string, string]> = [
    ['X-Goog-Algorithm', 'GOOG4-RSA-SHA256'],
    ['X-Goog-Credential', `${req.clientEmail}/${scope}`],
    ['X-Goog-Date', datetime],
    ['X-Goog-Expires', String(req.expiresSeconds)],
    ['X-Goog-SignedHeaders', signedHeaders],
    ...Object.entries(req.queryParameters ?? {}),
  ];
  const canonicalQuery = query
    .map(([k, v]) => [encodeRfc3986(k), encodeRfc3986(v)] as const)
    .sort((a, b) => compareStrings(a[0], b[0]) || compareStrings(a[1], b[1]))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  if (headers.has('x-goog-content-sha256')) throw new Error('signing a payload hash (x-goog-content-sha256) is not supported');
  const payload = 'UNSIGNED-PAYLOAD';
  const canonicalRequest = [req.method.toUpperCase(), path, canonicalQuery, canonicalHeaders, signedHeaders, payload].join('\n');
  const stringToSign = ['GOOG4-RSA-SHA256', datetime, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  const signature = Buffer.from(await sign(stringToSign), 'base64').toString('hex');
  return `${scheme}://${host}${path}?${canonicalQuery}&X-Goog-Signature=${signature}`;
}

/** RFC 3986 percent-encoding: everything but unreserved characters. */
export function encodeRfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Encodes an object name for a URL path, keeping its slashes. */
export function encodePath(name: string): string {
  return name.split('/').map(encodeRfc3986).join('/');
}
