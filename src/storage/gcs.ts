// Google Cloud Storage through its JSON API, authenticated by google-auth-library (credentials:
// gcs-credentials.ts): tokens and their refresh (before expiry, and when GCS answers 401), the
// HTTP transport, and V4 signed URLs (gcs-sign.ts builds what is signed). Resumable uploads are
// in gcs-upload.ts.
//
// Why not @google-cloud/storage: its createWriteStream completes the upload, making the object
// visible, when the stream ends, while our ObjectWriter contract keeps a write invisible until
// `commit()` (the producer's pipeline ends the stream before the caller decides to commit or
// abort); adapting it means holding back `end()` and rebuilding the same state machine around
// its stream. Its current major needs Node 22 (we support 20) and the one before pins an older
// google-auth-library and its own HTTP stack. What we need of the JSON API is a handful of
// calls, kept here.
//
// Atomicity: GCS makes an object visible only when its upload completes. Small writes are one
// media upload at commit; large ones are a resumable upload whose chunks go up while the
// producer writes, finalised (total size declared) only by `commit`.
//
// Every request has a deadline (for an answer; a download also for each chunk of its body),
// and repeatable ones are retried a bounded number of times with backoff on 429, 5xx, network
// errors and timeouts. Without a service account to sign as, blob redirects go to public URLs,
// as Nixery did, and `notices` says so.

import { Readable } from 'node:stream';
import { PassThroughClient, gaxios, type AuthClient } from 'google-auth-library';
import { StorageObjectNotFoundError, StorageRangeError, isMoveOntoItself, validateKey, validatePrefix } from './errors.js';
import { GCS_DEFAULT_ENDPOINT, loadGcsCredentials, type GcsCredentials, type GcsSettings, type GcsUrlSigner } from './gcs-credentials.js';
import { encodePath, signV4Url } from './gcs-sign.js';
import { ResumableUpload } from './gcs-upload.js';
import { HttpError, delay, errorMessage, isTransient, readText, requestFailure, watchStalls, withDeadline, type GcsResponse, type RequestOptions } from './gcs-transport.js';
import { ObjectStore } from './object-store.js';
import { checkRangeShape, objectSizeFrom, trimToRange } from './range.js';
import { STORAGE_KEY, type ByteRange, type ObjectInfo, type ObjectWriter, type OpenedObject, type Storage } from './storage.js';

/** Resumable chunks must be multiples of 256 KiB. */
const CHUNK_UNIT = 256 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_ATTEMPTS = 4;

export { GCS_DEFAULT_ENDPOINT, loadGcsCredentials, type GcsCredentials, type GcsSettings, type GcsUrlSigner } from './gcs-credentials.js';

/** The backend's options from its settings: the credentials loaded (a ConfigError if they cannot work). */
export async function gcsOptions(settings: GcsSettings): Promise<GcsStorageOptions> {
  const options: GcsStorageOptions = { bucket: settings.bucket };
  if (settings.endpoint) options.endpoint = settings.endpoint;
  if (settings.prefix) options.prefix = settings.prefix;
  const credentials = await loadGcsCredentials({ keyFile: settings.keyFile, adc: (options.endpoint ?? GCS_DEFAULT_ENDPOINT) === GCS_DEFAULT_ENDPOINT });
  if (credentials) options.credentials = credentials;
  return options;
}

export interface GcsStorageOptions {
  bucket: string;
  /** Base URL of the JSON, upload and XML APIs (default https://storage.googleapis.com). */
  endpoint?: string;
  /** From loadGcsCredentials; absent: anonymous requests (an emulator, a test server). */
  credentials?: GcsCredentials;
  /** Prefix of every object name, e.g. `nixery/`. */
  prefix?: string;
  redirects?: boolean;
  redirectTtlSeconds?: number;
  /** Resumable upload chunk size, a multiple of 256 KiB (default 8 MiB). */
  chunkSize?: number;
  /** How long a request may wait for its answer, and a download for each piece of its body (default 30 s). */
  requestTimeoutMs?: number;
  /** Tries of a repeatable request: the first and the retries (default 4). */
  attempts?: number;
}

export class GcsStorage extends ObjectStore implements Storage {
  readonly name: string;
  /** A generation names one immutable object version. */
  readonly versionsImmutable = true;
  readonly notices: readonly string[];
  /** True when redirect URLs are V4-signed; false means public URLs (or none). */
  readonly signsUrls: boolean;
  private readonly bucket: string;
  private readonly endpoint: string;
  private readonly prefix: string;
  private readonly client: AuthClient;
  /** No credentials: no token to renew on a 401. */
  private readonly anonymous: boolean;
  private readonly signer: GcsUrlSigner | null;
  private readonly redirects: boolean;
  private readonly redirectTtlSeconds: number;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  /** @internal */
  readonly chunkSize: number;

  constructor(options: GcsStorageOptions) {
    super();
    this.bucket = options.bucket;
    this.endpoint = (options.endpoint ?? GCS_DEFAULT_ENDPOINT).replace(/\/+$/, '');
    this.prefix = options.prefix ?? '';
    this.anonymous = !options.credentials;
    this.client = options.credentials?.client ?? new PassThroughClient({ transporter: new gaxios.Gaxios({ fetchImplementation: fetch }) });
    this.signer = options.credentials?.signer ?? null;
    this.redirects = options.redirects ?? true;
    this.redirectTtlSeconds = options.redirectTtlSeconds ?? 300;
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.attempts = Math.max(1, options.attempts ?? DEFAULT_ATTEMPTS);
    const chunk = options.chunkSize ?? 8 * 1024 * 1024;
    this.chunkSize = Math.max(CHUNK_UNIT, Math.floor(chunk / CHUNK_UNIT) * CHUNK_UNIT);
    this.signsUrls = this.redirects && this.signer !== null;
    const where = this.endpoint === GCS_DEFAULT_ENDPOINT ? '' : ` at ${this.endpoint}`;
    this.name = `gcs (${this.bucket}${this.prefix ? `/${this.prefix.replace(/\/$/, '')}` : ''}${where})`;
    if (!this.redirects) this.notices = ['blob redirects are off: blobs stream through the registry'];
    else if (this.signer?.via === 'key') this.notices = [`blob GETs redirect to V4-signed URLs valid ${this.redirectTtlSeconds} s`];
    else if (this.signer) {
      this.notices = [
        `blob GETs redirect to V4-signed URLs valid ${this.redirectTtlSeconds} s, signed by IAM signBlob as ${this.signer.email} (it needs roles/iam.serviceAccountTokenCreator on itself)`,
      ];
    } else {
      this.notices = [
        `no service account to sign URLs as (a service-account key, or workload identity federation with service-account impersonation, in GOOGLE_APPLICATION_CREDENTIALS): blob GETs redirect to public URLs ${this.endpoint}/${this.bucket}/…, so the bucket must be publicly readable`,
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
      this.request<Readable>({
        method: 'GET',
        url: `${this.objectUrl(this.objectName(key))}?alt=media`,
        headers: range ? { Range: `bytes=${range.start}-${range.end}` } : {},
        accept: [404, 416],
        idempotent: true,
        responseType: 'stream',
      }),
    );
    const body = res.data;
    if (res.status === 404) {
      const text = await this.call('get', key, () => readText(body));
      this.checkNotFoundIsObject(text, 'get', key);
      return null;
    }
    if (res.status === 416 && range) {
      body.destroy();
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
    if (!range) return { stream: body, info };
    // A 200 to a Range request carries the whole object: Content-Range absent, cut it here.
    return { stream: trimToRange(body, range, res.status === 206 ? (res.headers.get('content-range') ?? undefined) : undefined), info };
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    validateKey(key);
    const res = await this.call('stat', key, () =>
      this.request<{ size?: string; contentType?: string; updated?: string; generation?: string }>({
        method: 'GET',
        url: this.objectUrl(this.objectName(key)),
        accept: [404],
        idempotent: true,
      }),
    );
    if (res.status === 404) {
      this.checkNotFoundIsObject(res.data, 'stat', key);
      return null;
    }
    const meta = res.data;
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
        this.request<{ done?: boolean; rewriteToken?: string }>({ method: 'POST', url, headers: { 'Content-Type': 'application/json' }, body: '{}', accept: [404], idempotent: true }),
      );
      if (res.status === 404) throw new StorageObjectNotFoundError(from);
      if (res.data.done) break;
      if (!res.data.rewriteToken) throw this.failure('move', `${from} -> ${to}`, new Error('rewrite not done and no rewriteToken given'));
      rewriteToken = res.data.rewriteToken;
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
        this.request<{ items?: Array<{ name: string; size?: string; updated?: string }>; nextPageToken?: string }>({
          method: 'GET',
          url: `${this.endpoint}/storage/v1/b/${encodeURIComponent(this.bucket)}/o?${params}`,
          idempotent: true,
        }),
      );
      for (const item of res.data.items ?? []) {
        if (!item.name.startsWith(this.prefix)) continue;
        const key = item.name.slice(this.prefix.length);
        if (!STORAGE_KEY.test(key)) continue; // not ours: a name we could never address
        yield { key, size: Number(item.size ?? 0), modified: Date.parse(item.updated ?? '') || 0 };
      }
      pageToken = res.data.nextPageToken;
    } while (pageToken);
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    await this.call('delete', key, () => this.request({ method: 'DELETE', url: this.objectUrl(this.objectName(key)), accept: [404], idempotent: true }));
  }

  // Conditional writes: GCS's preconditions on the generation (0: no live object), 412 when unmet.

  async createIfAbsent(key: string, data: Buffer | string): Promise<string | null> {
    return this.uploadIf('create', key, data, '0');
  }

  async replaceIfVersion(key: string, data: Buffer | string, version: string): Promise<string | null> {
    return this.uploadIf('replace', key, data, version);
  }

  async deleteIfVersion(key: string, version: string): Promise<boolean> {
    validateKey(key);
    if (!/^\d+$/.test(version)) return false;
    const url = `${this.objectUrl(this.objectName(key))}?ifGenerationMatch=${version}`;
    const res = await this.call('delete', key, () => this.request({ method: 'DELETE', url, accept: [404, 412], idempotent: true }));
    return res.status !== 404 && res.status !== 412;
  }

  /** A media upload on the condition that the object's generation is `generation`: the new generation, or null. */
  private async uploadIf(operation: string, key: string, data: Buffer | string, generation: string): Promise<string | null> {
    validateKey(key);
    if (!/^\d+$/.test(generation)) return null; // not a generation: no object has it
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    const res = await this.call(operation, key, () => this.mediaUpload(this.objectName(key), body, undefined, generation));
    if (res.status === 412) return null;
    const written = (res.data as { generation?: unknown } | undefined)?.generation;
    if (typeof written !== 'string' && typeof written !== 'number') throw this.failure(operation, key, new Error('the upload answer names no generation'));
    return String(written);
  }

  async redirectUrl(key: string, options: { method: 'GET' | 'HEAD' }): Promise<string | null> {
    validateKey(key);
    if (!this.redirects) return null;
    const name = this.objectName(key);
    const signer = this.signer;
    if (!signer) return `${this.endpoint}/${encodePath(this.bucket)}/${encodePath(name)}`;
    const url = new URL(this.endpoint);
    const request = {
      bucket: this.bucket,
      object: name,
      method: options.method,
      expiresSeconds: this.redirectTtlSeconds,
      clientEmail: signer.email,
      scheme: url.protocol === 'http:' ? ('http' as const) : ('https' as const),
      host: url.host,
    };
    return this.call('sign', key, () => withDeadline(signV4Url(request, signer.sign), this.timeoutMs, 'signing the URL'));
  }

  // --- internals, shared with ResumableUpload ------------------------------------------------

  /**
   * @internal One simple (media) upload: the object appears when it completes. With
   * `ifGenerationMatch`, only if the object is at that generation (412 otherwise).
   */
  async mediaUpload(name: string, body: Buffer, contentType: string | undefined, ifGenerationMatch?: string): Promise<GcsResponse> {
    const params = new URLSearchParams({ uploadType: 'media', name });
    if (ifGenerationMatch !== undefined) params.set('ifGenerationMatch', ifGenerationMatch);
    return this.request({
      method: 'POST',
      url: `${this.endpoint}/upload/storage/v1/b/${encodeURIComponent(this.bucket)}/o?${params}`,
      headers: { 'Content-Type': contentType ?? 'application/octet-stream' },
      body,
      accept: ifGenerationMatch === undefined ? [] : [412],
      // A retried conditional upload that had landed answers 412: the lease module reads back to tell.
      idempotent: true,
    });
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
    const location = res.headers.get('location');
    if (!location) throw new Error('the resumable upload answer has no Location');
    return location;
  }

  /**
   * @internal A request through the auth client, retried with backoff when repeatable and
   * transient, and sent once more with a new token when GCS refuses the one it had.
   */
  async request<T = unknown>(options: RequestOptions): Promise<GcsResponse<T>> {
    const attempts = options.idempotent ? this.attempts : 1;
    let reauthenticated = false;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.attempt<T>(options);
      } catch (err) {
        if (err instanceof HttpError && err.status === 401 && !this.anonymous && !reauthenticated) {
          // Refused before its expiry (revoked, a clock off): mark the token expired, as the
          // library does for a new client, so it fetches another. A 401 did nothing: safe to resend.
          reauthenticated = true;
          this.client.setCredentials({ ...this.client.credentials, expiry_date: 1 });
          attempt--;
          continue;
        }
        if (attempt >= attempts || !isTransient(err)) throw err;
        await delay(200 * 2 ** (attempt - 1) * (0.5 + Math.random() / 2));
      }
    }
  }

  /** One try, with a deadline for the answer (a stream's body: for each piece of it). */
  private async attempt<T>(options: RequestOptions): Promise<GcsResponse<T>> {
    const controller = new AbortController();
    const timedOut = () => controller.abort(new DOMException(`no answer from GCS within ${this.timeoutMs} ms`, 'TimeoutError'));
    const timer = setTimeout(timedOut, this.timeoutMs);
    // The token the client may fetch first is not under the signal: the race bounds it too.
    const aborted = new Promise<never>((_, reject) => controller.signal.addEventListener('abort', () => reject(controller.signal.reason as Error), { once: true }));
    aborted.catch(() => {});
    const accepted = options.accept ?? [];
    try {
      const res = await Promise.race([
        this.client.request<unknown>({
          method: options.method,
          url: options.url,
          headers: options.headers,
          data: options.body,
          responseType: options.responseType ?? 'json',
          validateStatus: (status) => (status >= 200 && status < 300) || accepted.includes(status),
          signal: controller.signal,
          timeout: 0, // our own deadline: the transport's would also cut a long download
          redirect: 'manual',
        }),
        aborted,
      ]);
      const data = options.responseType === 'stream' ? watchStalls(res.data as ReadableStream<Uint8Array> | null, this.timeoutMs, timedOut, controller.signal) : res.data;
      return { status: res.status, headers: res.headers, data: data as T };
    } catch (err) {
      throw requestFailure(err, options.url);
    } finally {
      clearTimeout(timer);
    }
  }

  /** GCS answers 404 for a missing bucket too: that is a configuration error, not a missing key. */
  private checkNotFoundIsObject(answer: unknown, operation: string, key: string): void {
    const message = errorMessage(answer);
    if (/bucket does not exist/i.test(message)) throw this.failure(operation, key, new HttpError(404, message));
  }

  private objectName(key: string): string {
    return this.prefix + key;
  }

  private objectUrl(name: string): string {
    return `${this.endpoint}/storage/v1/b/${encodeURIComponent(this.bucket)}/o/${encodeURIComponent(name)}`;
  }
}
