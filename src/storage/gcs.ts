// Google Cloud Storage through its JSON API, with a small hand-written client (fetch +
// node:crypto) instead of the SDK's large dependency tree.
//
// Atomicity: GCS makes an object visible only when its upload completes. Small writes are one
// media upload at commit; large ones are a resumable upload whose chunks go up while the
// producer writes, finalised (total size declared) only by `commit`.
//
// Credentials: a service-account key (GOOGLE_APPLICATION_CREDENTIALS) gives OAuth tokens and
// V4 signed URLs; an authorized-user key gives tokens only; with no key, tokens come from the
// GCE metadata server, and with neither (or a test endpoint) requests are anonymous. Without a
// service-account key, blob redirects go to public URLs, as Nixery did, and `notices` says so.

import { createSign, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { ConfigError, NixeryError } from '../errors.js';
import { StorageUnavailableError, StorageObjectNotFoundError, StorageRangeError, isMoveOntoItself, validateKey, validatePrefix } from './errors.js';
import { encodePath, signV4Url } from './gcs-sign.js';
import { objectPrefixFromEnv, ObjectStore } from './object-store.js';
import { ObjectStoreWriter } from './object-writer.js';
import { checkRangeShape, objectSizeFrom, trimToRange } from './range.js';
import { STORAGE_KEY, type ByteRange, type ObjectInfo, type ObjectWriter, type OpenedObject, type Storage } from './storage.js';

export const GCS_DEFAULT_ENDPOINT = 'https://storage.googleapis.com';
const SCOPE = 'https://www.googleapis.com/auth/devstorage.read_write';
const METADATA_TOKEN_URL = 'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token';
/** Resumable chunks must be multiples of 256 KiB. */
const CHUNK_UNIT = 256 * 1024;

export type GcsCredentials =
  | { type: 'service_account'; clientEmail: string; privateKey: string; privateKeyId?: string; tokenUri: string }
  | { type: 'authorized_user'; clientId: string; clientSecret: string; refreshToken: string; tokenUri: string };

export interface GcsStorageOptions {
  bucket: string;
  /** Base URL of the JSON, upload and XML APIs (default https://storage.googleapis.com). */
  endpoint?: string;
  credentials?: GcsCredentials;
  /** Without credentials, ask the GCE metadata server for tokens (default: only for the real endpoint). */
  useMetadataServer?: boolean;
  /** Prefix of every object name, e.g. `nixery/`. */
  prefix?: string;
  redirects?: boolean;
  redirectTtlSeconds?: number;
  /** Resumable upload chunk size, a multiple of 256 KiB (default 8 MiB). */
  chunkSize?: number;
}

/** Reads GCS_BUCKET, GOOGLE_APPLICATION_CREDENTIALS, GCS_ENDPOINT (or STORAGE_EMULATOR_HOST), GCS_PREFIX. */
export async function gcsOptionsFromEnv(env: NodeJS.ProcessEnv): Promise<GcsStorageOptions> {
  const bucket = env.GCS_BUCKET?.trim();
  if (!bucket) throw new ConfigError('the gcs storage backend needs GCS_BUCKET (the bucket to keep blobs and caches in)');
  if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(bucket)) throw new ConfigError(`invalid GCS_BUCKET: ${JSON.stringify(bucket)} is not a valid bucket name`);
  const options: GcsStorageOptions = { bucket };
  const endpointRaw = env.GCS_ENDPOINT?.trim() || env.STORAGE_EMULATOR_HOST?.trim();
  if (endpointRaw) {
    const withScheme = /^https?:\/\//.test(endpointRaw) ? endpointRaw : `http://${endpointRaw}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch {
      throw new ConfigError(`invalid GCS_ENDPOINT: ${JSON.stringify(endpointRaw)} is not a URL`);
    }
    options.endpoint = url.origin;
  }
  const prefix = objectPrefixFromEnv(env, 'GCS_PREFIX');
  if (prefix) options.prefix = prefix;
  const keyFile = env.GOOGLE_APPLICATION_CREDENTIALS?.trim();
  if (keyFile) options.credentials = await loadCredentials(keyFile);
  return options;
}

/** Reads a service-account or authorized-user JSON key; ConfigError saying what is wrong. */
export async function loadCredentials(file: string): Promise<GcsCredentials> {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: cannot read ${file}: ${(err as Error).message}`);
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file} is not JSON`);
  }
  const str = (k: string): string | undefined => (typeof json[k] === 'string' && json[k] !== '' ? (json[k] as string) : undefined);
  const tokenUri = str('token_uri') ?? 'https://oauth2.googleapis.com/token';
  if (json.type === 'service_account') {
    const clientEmail = str('client_email');
    const privateKey = str('private_key');
    if (!clientEmail || !privateKey) throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file} lacks client_email or private_key`);
    try {
      createSign('RSA-SHA256').update('probe').sign(privateKey);
    } catch {
      throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: the private_key in ${file} is not a usable RSA key`);
    }
    const creds: GcsCredentials = { type: 'service_account', clientEmail, privateKey, tokenUri };
    const kid = str('private_key_id');
    if (kid) creds.privateKeyId = kid;
    return creds;
  }
  if (json.type === 'authorized_user') {
    const clientId = str('client_id');
    const clientSecret = str('client_secret');
    const refreshToken = str('refresh_token');
    if (!clientId || !clientSecret || !refreshToken) throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file} lacks client_id, client_secret or refresh_token`);
    return { type: 'authorized_user', clientId, clientSecret, refreshToken, tokenUri };
  }
  throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file} has type ${JSON.stringify(json.type)}; expected service_account or authorized_user`);
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(`HTTP ${status}: ${message}`);
  }
}

interface RequestOptions {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Statuses that are answers, not errors (besides 2xx). */
  accept?: number[];
  /** Safe to repeat on 429/5xx/network errors. */
  idempotent?: boolean;
}

export class GcsStorage extends ObjectStore implements Storage {
  readonly name: string;
  readonly notices: readonly string[];
  /** True when redirect URLs are V4-signed; false means public URLs (or none). */
  readonly signsUrls: boolean;
  private readonly bucket: string;
  private readonly endpoint: string;
  private readonly prefix: string;
  private readonly credentials: GcsCredentials | undefined;
  private readonly useMetadataServer: boolean;
  private readonly redirects: boolean;
  private readonly redirectTtlSeconds: number;
  /** @internal */
  readonly chunkSize: number;
  private token: { value: string; expiresAt: number } | undefined;
  private tokenRequest: Promise<string> | undefined;

  constructor(options: GcsStorageOptions) {
    super();
    this.bucket = options.bucket;
    this.endpoint = (options.endpoint ?? GCS_DEFAULT_ENDPOINT).replace(/\/+$/, '');
    this.prefix = options.prefix ?? '';
    this.credentials = options.credentials;
    this.useMetadataServer = options.useMetadataServer ?? (!options.credentials && this.endpoint === GCS_DEFAULT_ENDPOINT);
    this.redirects = options.redirects ?? true;
    this.redirectTtlSeconds = options.redirectTtlSeconds ?? 300;
    const chunk = options.chunkSize ?? 8 * 1024 * 1024;
    this.chunkSize = Math.max(CHUNK_UNIT, Math.floor(chunk / CHUNK_UNIT) * CHUNK_UNIT);
    this.signsUrls = this.redirects && this.credentials?.type === 'service_account';
    const where = this.endpoint === GCS_DEFAULT_ENDPOINT ? '' : ` at ${this.endpoint}`;
    this.name = `gcs (${this.bucket}${this.prefix ? `/${this.prefix.replace(/\/$/, '')}` : ''}${where})`;
    if (!this.redirects) this.notices = ['blob redirects are off: blobs stream through the registry'];
    else if (this.signsUrls) this.notices = [`blob GETs redirect to V4-signed URLs valid ${this.redirectTtlSeconds} s`];
    else {
      this.notices = [
        `no service-account key to sign URLs with (GOOGLE_APPLICATION_CREDENTIALS): blob GETs redirect to public URLs ${this.endpoint}/${this.bucket}/…, so the bucket must be publicly readable`,
      ];
    }
  }

  async put(key: string, data: Buffer | string, options: { contentType?: string } = {}): Promise<void> {
    validateKey(key);
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    await this.call('put', key, () => this.mediaUpload(this.objectName(key), body, options.contentType));
  }

  async writer(key: string, options: { contentType?: string } = {}): Promise<ObjectWriter> {
    validateKey(key);
    return new ResumableUpload(this, this.objectName(key), key, options.contentType).asObjectWriter();
  }

  async open(key: string, range?: ByteRange): Promise<OpenedObject | null> {
    validateKey(key);
    if (range) checkRangeShape(key, range);
    const res = await this.call('get', key, () =>
      this.request({
        method: 'GET',
        url: `${this.objectUrl(this.objectName(key))}?alt=media`,
        headers: range ? { Range: `bytes=${range.start}-${range.end}` } : {},
        accept: [404, 416],
        idempotent: true,
      }),
    );
    if (res.status === 404) {
      await this.checkNotFoundIsObject(res, 'get', key);
      return null;
    }
    if (res.status === 416 && range) {
      await res.body?.cancel();
      throw new StorageRangeError(key, range.start, range.end);
    }
    const length = res.headers.get('content-length');
    const info: ObjectInfo = {
      key,
      size: objectSizeFrom(res.headers.get('content-range'), length === null ? undefined : Number(length)),
      modified: Date.parse(res.headers.get('last-modified') ?? '') || 0,
    };
    const contentType = res.headers.get('content-type');
    if (contentType) info.contentType = contentType;
    const generation = res.headers.get('x-goog-generation');
    if (generation) info.version = generation;
    const body = res.body ? Readable.fromWeb(res.body as unknown as NodeReadableStream) : Readable.from([]);
    if (!range) return { stream: body, info };
    // A 200 to a Range request carries the whole object: Content-Range absent, cut it here.
    return { stream: trimToRange(body, range, res.status === 206 ? (res.headers.get('content-range') ?? undefined) : undefined), info };
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    validateKey(key);
    const meta = await this.metadata(key, 'stat');
    if (!meta) return null;
    const info: ObjectInfo = { key, size: Number(meta.size ?? 0), modified: Date.parse(meta.updated ?? '') || 0 };
    if (meta.contentType) info.contentType = meta.contentType;
    if (meta.generation) info.version = meta.generation;
    return info;
  }

  async move(from: string, to: string): Promise<void> {
    if (await isMoveOntoItself(this, from, to)) return;
    const base = `${this.objectUrl(this.objectName(from))}/rewriteTo/b/${encodeURIComponent(this.bucket)}/o/${encodeURIComponent(this.objectName(to))}`;
    let rewriteToken: string | undefined;
    // Large or cross-location rewrites take several calls; each returns a token to go on.
    for (;;) {
      const url = rewriteToken ? `${base}?rewriteToken=${encodeURIComponent(rewriteToken)}` : base;
      const res = await this.call('move', `${from} -> ${to}`, () =>
        this.request({ method: 'POST', url, headers: { 'Content-Type': 'application/json' }, body: '{}', accept: [404], idempotent: true }),
      );
      if (res.status === 404) {
        await res.body?.cancel();
        throw new StorageObjectNotFoundError(from);
      }
      const answer = (await res.json()) as { done?: boolean; rewriteToken?: string };
      if (answer.done) break;
      if (!answer.rewriteToken) throw this.failure('move', `${from} -> ${to}`, new Error('rewrite not done and no rewriteToken given'));
      rewriteToken = answer.rewriteToken;
    }
    await this.delete(from);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    let pageToken: string | undefined;
    do {
      const params = new URLSearchParams({ prefix: this.prefix + prefix, fields: 'items(name,size,updated),nextPageToken' });
      if (pageToken) params.set('pageToken', pageToken);
      const res = await this.call('list', prefix || '/', () =>
        this.request({ method: 'GET', url: `${this.endpoint}/storage/v1/b/${encodeURIComponent(this.bucket)}/o?${params}`, idempotent: true }),
      );
      const page = (await res.json()) as { items?: Array<{ name: string; size?: string; updated?: string }>; nextPageToken?: string };
      for (const item of page.items ?? []) {
        if (!item.name.startsWith(this.prefix)) continue;
        const key = item.name.slice(this.prefix.length);
        if (!STORAGE_KEY.test(key)) continue; // not ours: a name we could never address
        yield { key, size: Number(item.size ?? 0), modified: Date.parse(item.updated ?? '') || 0 };
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    const res = await this.call('delete', key, () =>
      this.request({ method: 'DELETE', url: this.objectUrl(this.objectName(key)), accept: [404], idempotent: true }),
    );
    await res.body?.cancel();
  }

  async redirectUrl(key: string, options: { method: 'GET' | 'HEAD' }): Promise<string | null> {
    validateKey(key);
    if (!this.redirects) return null;
    const name = this.objectName(key);
    const creds = this.credentials;
    if (creds?.type !== 'service_account') return `${this.endpoint}/${encodePath(this.bucket)}/${encodePath(name)}`;
    const url = new URL(this.endpoint);
    return signV4Url({
      bucket: this.bucket,
      object: name,
      method: options.method,
      expiresSeconds: this.redirectTtlSeconds,
      clientEmail: creds.clientEmail,
      privateKey: creds.privateKey,
      scheme: url.protocol === 'http:' ? 'http' : 'https',
      host: url.host,
    });
  }

  // --- internals, shared with ResumableUpload ------------------------------------------------

  /** @internal One simple (media) upload: the object appears when it completes. */
  async mediaUpload(name: string, body: Buffer, contentType: string | undefined): Promise<void> {
    const params = new URLSearchParams({ uploadType: 'media', name });
    const res = await this.request({
      method: 'POST',
      url: `${this.endpoint}/upload/storage/v1/b/${encodeURIComponent(this.bucket)}/o?${params}`,
      headers: { 'Content-Type': contentType ?? 'application/octet-stream' },
      body,
      idempotent: true,
    });
    await res.body?.cancel();
  }

  /** @internal Starts a resumable upload; returns its session URL. */
  async startResumable(name: string, contentType: string | undefined): Promise<string> {
    const params = new URLSearchParams({ uploadType: 'resumable', name });
    const headers: Record<string, string> = { 'Content-Type': 'application/json; charset=UTF-8' };
    if (contentType) headers['X-Upload-Content-Type'] = contentType;
    const res = await this.request({
      method: 'POST',
      url: `${this.endpoint}/upload/storage/v1/b/${encodeURIComponent(this.bucket)}/o?${params}`,
      headers,
      body: JSON.stringify(contentType ? { name, contentType } : { name }),
      idempotent: true,
    });
    await res.body?.cancel();
    const location = res.headers.get('location');
    if (!location) throw new Error('the resumable upload answer has no Location');
    return location;
  }

  /** @internal */
  async request(options: RequestOptions): Promise<Response> {
    const attempts = options.idempotent ? 3 : 1;
    for (let attempt = 1; ; attempt++) {
      try {
        const headers: Record<string, string> = { ...options.headers };
        const token = await this.accessToken();
        if (token) headers.Authorization = `Bearer ${token}`;
        const body = options.body as RequestInit['body'];
        const res = await fetch(options.url, { method: options.method, headers, body, redirect: 'manual' });
        if (res.ok || res.status === 308 || options.accept?.includes(res.status)) return res;
        const text = await res.text().catch(() => '');
        const err = new HttpError(res.status, errorMessage(text) || res.statusText);
        if (res.status === 401) this.token = undefined; // refresh next time
        if (attempt < attempts && (res.status === 429 || res.status >= 500 || res.status === 401)) {
          await delay(200 * 2 ** (attempt - 1));
          continue;
        }
        throw err;
      } catch (err) {
        if (err instanceof HttpError || err instanceof NixeryError || attempt >= attempts) throw err;
        await delay(200 * 2 ** (attempt - 1)); // network error
      }
    }
  }

  private async metadata(key: string, operation: string): Promise<{ size?: string; contentType?: string; updated?: string; generation?: string } | null> {
    const res = await this.call(operation, key, () => this.request({ method: 'GET', url: this.objectUrl(this.objectName(key)), accept: [404], idempotent: true }));
    if (res.status === 404) {
      await this.checkNotFoundIsObject(res, operation, key);
      return null;
    }
    return (await res.json()) as { size?: string; contentType?: string; updated?: string; generation?: string };
  }

  /** GCS answers 404 for a missing bucket too: that is a configuration error, not a missing key. */
  private async checkNotFoundIsObject(res: Response, operation: string, key: string): Promise<void> {
    const message = errorMessage(await res.text().catch(() => ''));
    if (/bucket does not exist/i.test(message)) throw this.failure(operation, key, new HttpError(404, message));
  }

  private objectName(key: string): string {
    return this.prefix + key;
  }

  private objectUrl(name: string): string {
    return `${this.endpoint}/storage/v1/b/${encodeURIComponent(this.bucket)}/o/${encodeURIComponent(name)}`;
  }

  /** An OAuth access token (cached until a minute before it expires), or null when anonymous. */
  private async accessToken(): Promise<string | null> {
    if (!this.credentials && !this.useMetadataServer) return null;
    if (this.token && Date.now() < this.token.expiresAt) return this.token.value;
    this.tokenRequest ??= this.fetchToken().finally(() => (this.tokenRequest = undefined));
    return this.tokenRequest;
  }

  private async fetchToken(): Promise<string> {
    const creds = this.credentials;
    let res: Response;
    if (creds?.type === 'service_account') {
      const now = Math.floor(Date.now() / 1000);
      const header = { alg: 'RS256', typ: 'JWT', ...(creds.privateKeyId ? { kid: creds.privateKeyId } : {}) };
      const claims = { iss: creds.clientEmail, scope: SCOPE, aud: creds.tokenUri, iat: now, exp: now + 3600, jti: randomUUID() };
      const unsigned = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
      const signature = createSign('RSA-SHA256').update(unsigned).sign(creds.privateKey).toString('base64url');
      const form = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: `${unsigned}.${signature}` });
      res = await fetch(creds.tokenUri, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form.toString() });
    } else if (creds?.type === 'authorized_user') {
      const form = new URLSearchParams({ grant_type: 'refresh_token', client_id: creds.clientId, client_secret: creds.clientSecret, refresh_token: creds.refreshToken });
      res = await fetch(creds.tokenUri, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form.toString() });
    } else {
      res = await fetch(METADATA_TOKEN_URL, { headers: { 'Metadata-Flavor': 'Google' } });
    }
    const text = await res.text();
    if (!res.ok) throw new StorageUnavailableError(this.name, 'authenticate', this.bucket, new HttpError(res.status, errorMessage(text) || res.statusText));
    const answer = JSON.parse(text) as { access_token?: string; expires_in?: number };
    if (!answer.access_token) throw new StorageUnavailableError(this.name, 'authenticate', this.bucket, new Error('the token answer has no access_token'));
    this.token = { value: answer.access_token, expiresAt: Date.now() + Math.max(0, (answer.expires_in ?? 3600) - 60) * 1000 };
    return answer.access_token;
  }
}

/**
 * One streaming write. Bytes are buffered up to a chunk; the first full chunk opens a
 * resumable session and chunks go up as they fill. The final request, which declares the
 * total size and so completes the object, is sent only by commit.
 */
class ResumableUpload extends ObjectStoreWriter {
  private session: string | undefined;
  /** Bytes the server has persisted. */
  private offset = 0;
  private stalls = 0;

  constructor(
    private readonly storage: GcsStorage,
    private readonly name: string,
    key: string,
    private readonly contentType: string | undefined,
  ) {
    super(key, (operation, k, err) => storage.failure(operation, k, err));
  }

  protected async sendFullParts(): Promise<void> {
    const size = this.storage.chunkSize;
    while (this.bufferedBytes >= size) {
      if (this.session === undefined) {
        this.session = await this.storage.startResumable(this.name, this.contentType);
        await this.throwIfClosed();
      }
      const all = this.takeBuffered();
      const sent = all.subarray(0, size);
      const before = this.offset;
      await this.sendChunk(sent, undefined);
      if (this.offset === before && ++this.stalls > 5) throw new Error(`the server persisted none of 6 chunks at byte ${before}`);
      // The server may persist less than it was sent: keep what it has not.
      this.rebuffer(Buffer.concat([sent.subarray(this.offset - before), all.subarray(size)]));
    }
  }

  protected async complete(rest: Buffer): Promise<void> {
    if (this.session === undefined) {
      await this.storage.mediaUpload(this.name, rest, this.contentType);
      return;
    }
    const total = this.offset + rest.length;
    await this.sendChunk(rest, total);
    if (this.offset !== total) throw new Error(`the upload ended at byte ${this.offset} of ${total}`);
  }

  /** Cancels the session (best effort: an unfinished upload is never visible and expires). */
  protected async cancelUpload(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (session) {
      await this.storage
        .request({ method: 'DELETE', url: session, accept: [499] })
        .then((res) => res.body?.cancel())
        .catch(() => {});
    }
  }

  /** PUTs bytes at the current offset; `total` given only for the final request. */
  private async sendChunk(body: Buffer, total: number | undefined): Promise<void> {
    const end = this.offset + body.length - 1;
    const range = body.length === 0 ? `bytes */${total ?? '*'}` : `bytes ${this.offset}-${end}/${total ?? '*'}`;
    const res = await this.storage.request({ method: 'PUT', url: this.session!, headers: { 'Content-Range': range }, body });
    await res.body?.cancel();
    if (res.status === 308) {
      const persisted = /bytes=0-(\d+)/.exec(res.headers.get('range') ?? '');
      this.offset = persisted ? Number(persisted[1]) + 1 : 0;
    } else {
      this.offset = total ?? end + 1;
    }
  }
}

function errorMessage(text: string): string {
  try {
    const json = JSON.parse(text) as { error?: { message?: string } | string; error_description?: string };
    if (typeof json.error === 'object' && json.error?.message) return json.error.message;
    if (json.error_description) return json.error_description;
    if (typeof json.error === 'string') return json.error;
  } catch {
    // not JSON
  }
  return text.slice(0, 300).trim();
}

function base64url(s: string): string {
  return Buffer.from(s).toString('base64url');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
