// Google Cloud Storage through its JSON API, authenticated by google-auth-library: Application
// Default Credentials (a service-account key, an authorized user, workload identity federation
// with `external_account`, the GCE metadata server), tokens and their refresh (before expiry,
// and when GCS answers 401), the HTTP transport, and the signatures of V4 signed URLs (a local
// key, or IAM signBlob as the service account; gcs-sign.ts builds what is signed).
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

import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { GoogleAuth, JWT, PassThroughClient, gaxios, type AuthClient } from 'google-auth-library';
import { ConfigError, NixeryError } from '../errors.js';
import { StorageObjectNotFoundError, StorageRangeError, isMoveOntoItself, validateKey, validatePrefix } from './errors.js';
import { encodePath, signV4Url, type BlobSigner } from './gcs-sign.js';
import { objectPrefixFromEnv, ObjectStore } from './object-store.js';
import { ObjectStoreWriter } from './object-writer.js';
import { checkRangeShape, objectSizeFrom, trimToRange } from './range.js';
import { STORAGE_KEY, type ByteRange, type ObjectInfo, type ObjectWriter, type OpenedObject, type Storage } from './storage.js';

export const GCS_DEFAULT_ENDPOINT = 'https://storage.googleapis.com';
/** Objects, read and write; and IAM, to sign URLs through signBlob as the service account. */
const SCOPES = ['https://www.googleapis.com/auth/devstorage.read_write', 'https://www.googleapis.com/auth/iam'];
/** Where google-auth-library sends OAuth token requests, whatever the key file says. */
const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
/** The credential files google-auth-library reads that can authorise GCS calls. */
const CREDENTIAL_TYPES = ['service_account', 'authorized_user', 'external_account', 'external_account_authorized_user', 'impersonated_service_account'];
/** Resumable chunks must be multiples of 256 KiB. */
const CHUNK_UNIT = 256 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_ATTEMPTS = 4;

/** How the backend authenticates and signs; from loadGcsCredentials. */
export interface GcsCredentials {
  /** Adds the access token to requests; refreshes it when it expires or GCS answers 401. */
  client: AuthClient;
  /** Signs redirect URLs as a service account; null when there is none to sign as. */
  signer: GcsUrlSigner | null;
}

export interface GcsUrlSigner {
  /** The service account (X-Goog-Credential). */
  email: string;
  /** `key`: with the service account's private key, here; `iam`: by IAM signBlob, a request per URL. */
  via: 'key' | 'iam';
  sign: BlobSigner;
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

/**
 * Reads GCS_BUCKET, GCS_ENDPOINT (or STORAGE_EMULATOR_HOST), GCS_PREFIX and the credentials:
 * GOOGLE_APPLICATION_CREDENTIALS, else, for Google's own endpoint, the rest of Application
 * Default Credentials. With a custom endpoint and no credentials file, requests are anonymous.
 */
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
  const credentials = await loadGcsCredentials({ keyFile, adc: (options.endpoint ?? GCS_DEFAULT_ENDPOINT) === GCS_DEFAULT_ENDPOINT });
  if (credentials) options.credentials = credentials;
  return options;
}

/**
 * Credentials through google-auth-library. `keyFile` (GOOGLE_APPLICATION_CREDENTIALS) is a
 * service-account key, an authorized user (gcloud auth application-default login), an external
 * account (workload identity federation) or an impersonated service account. Without one,
 * `adc` looks where Application Default Credentials look next (gcloud's well-known file, the
 * GCE metadata server); otherwise there are none: undefined. A credential that cannot work, or
 * none found where they are required, is a ConfigError.
 */
export async function loadGcsCredentials(source: { keyFile?: string; adc?: boolean; timeoutMs?: number }): Promise<GcsCredentials | undefined> {
  // The library's own requests (tokens, token exchange, impersonation, signBlob) get a deadline too.
  const transporter = new gaxios.Gaxios({ fetchImplementation: fetch, timeout: source.timeoutMs ?? DEFAULT_TIMEOUT_MS });
  const clientOptions = { transporter };
  let auth: GoogleAuth;
  let iamEndpoint: string | undefined;
  const file = source.keyFile;
  if (file) {
    const json = await readCredentialFile(file);
    honourTokenUri(transporter, json.token_uri, file);
    iamEndpoint = iamEndpointOf(json.service_account_impersonation_url);
    auth = new GoogleAuth({ credentials: json, scopes: SCOPES, clientOptions });
  } else if (source.adc) {
    auth = new GoogleAuth({ scopes: SCOPES, clientOptions });
  } else {
    return undefined;
  }
  let client: AuthClient;
  try {
    client = await auth.getClient();
  } catch (err) {
    const message = oneLine(err);
    if (file) throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file}: ${message}`);
    throw new ConfigError(
      `the gcs storage backend found no Google credentials (${message.split('. ')[0]}): set GOOGLE_APPLICATION_CREDENTIALS to a service-account key or a workload identity federation configuration, or run on Google Cloud with a service account`,
    );
  }
  let email: string | undefined;
  try {
    email = (await auth.getCredentials()).client_email ?? undefined;
  } catch (err) {
    throw new ConfigError(`the gcs storage backend cannot tell which service account it runs as: ${oneLine(err)}`);
  }
  if (!email) return { client, signer: null };
  const via = client instanceof JWT && client.key ? 'key' : 'iam';
  const signer: GcsUrlSigner = { email, via, sign: (blob) => auth.sign(blob, iamEndpoint) };
  if (via === 'key') {
    try {
      await signer.sign('probe');
    } catch {
      const where = file ? `GOOGLE_APPLICATION_CREDENTIALS: the private_key in ${file}` : 'Application Default Credentials: their private_key';
      throw new ConfigError(`invalid ${where} is not a usable RSA key`);
    }
  }
  return { client, signer };
}

async function readCredentialFile(file: string): Promise<Record<string, unknown>> {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: cannot read ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file} is not JSON`);
  }
  const type = (json as { type?: unknown } | null)?.type;
  if (typeof type !== 'string' || !CREDENTIAL_TYPES.includes(type)) {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file} has type ${JSON.stringify(type)}; expected one of ${CREDENTIAL_TYPES.join(', ')}`);
  }
  return json as Record<string, unknown>;
}

/**
 * google-auth-library sends every OAuth token request (service-account assertions, refresh
 * tokens) to Google's endpoint and ignores the file's token_uri, which Google's Python, Go and
 * Java libraries honour; send them where the file says.
 */
function honourTokenUri(transporter: gaxios.Gaxios, tokenUri: unknown, file: string): void {
  if (tokenUri === undefined || tokenUri === GOOGLE_TOKEN_URL) return;
  let target: URL;
  try {
    target = new URL(String(tokenUri));
  } catch {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: the token_uri in ${file} is not a URL`);
  }
  transporter.interceptors.request.add({
    resolved: async (config) => {
      if (config.url.href === GOOGLE_TOKEN_URL) config.url = new URL(target);
      return config;
    },
  });
}

/** The IAM Credentials endpoint a federation configuration impersonates through: signBlob goes there too. */
function iamEndpointOf(impersonationUrl: unknown): string | undefined {
  if (typeof impersonationUrl !== 'string') return undefined;
  return /^(https?:\/\/[^/]+\/v1\/projects\/-\/serviceAccounts\/)[^/]+:generateAccessToken$/.exec(impersonationUrl)?.[1];
}

/** GCS answered with an error status. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`HTTP ${status}: ${message}`, options);
  }
}

interface RequestOptions {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Statuses that are answers, not errors (besides 2xx). */
  accept?: number[];
  /** Safe to repeat on 429/5xx, network errors and timeouts. */
  idempotent?: boolean;
  /** How the body is read (default json); a stream's body is watched for stalls. */
  responseType?: 'json' | 'stream';
}

interface GcsResponse<T = unknown> {
  status: number;
  headers: Headers;
  /** The parsed JSON (or text), or a Readable for `responseType: 'stream'`. */
  data: T;
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

  /** @internal One simple (media) upload: the object appears when it completes. */
  async mediaUpload(name: string, body: Buffer, contentType: string | undefined): Promise<void> {
    const params = new URLSearchParams({ uploadType: 'media', name });
    await this.request({
      method: 'POST',
      url: `${this.endpoint}/upload/storage/v1/b/${encodeURIComponent(this.bucket)}/o?${params}`,
      headers: { 'Content-Type': contentType ?? 'application/octet-stream' },
      body,
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
    if (session) await this.storage.request({ method: 'DELETE', url: session, accept: [499] }).catch(() => {});
  }

  /** PUTs bytes at the current offset; `total` given only for the final request. */
  private async sendChunk(body: Buffer, total: number | undefined): Promise<void> {
    const end = this.offset + body.length - 1;
    const range = body.length === 0 ? `bytes */${total ?? '*'}` : `bytes ${this.offset}-${end}/${total ?? '*'}`;
    // Not repeated: after a failure the server may hold part of the chunk.
    const res = await this.storage.request({ method: 'PUT', url: this.session!, headers: { 'Content-Range': range }, body, accept: [308] });
    if (res.status === 308) {
      const persisted = /bytes=0-(\d+)/.exec(res.headers.get('range') ?? '');
      this.offset = persisted ? Number(persisted[1]) + 1 : 0;
    } else {
      this.offset = total ?? end + 1;
    }
  }
}

/**
 * What a failed try becomes: a TimeoutError; an HttpError for GCS's error answers; for a
 * failure getting the token, an error saying so (its cause keeps the status); the rest as is.
 */
function requestFailure(err: unknown, url: string): unknown {
  if (err instanceof NixeryError) return err;
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { name?: unknown }).name === 'TimeoutError') return e;
  }
  if (!(err instanceof gaxios.GaxiosError)) return new Error(`authentication failed: ${chainMessage(err)}`, { cause: err });
  const target = new URL(url);
  const failed = err.config?.url ? new URL(String(err.config.url)) : target;
  const fromGcs = failed.origin === target.origin && failed.pathname === target.pathname;
  if (!fromGcs) return new Error(`authentication failed: ${err.status ? `HTTP ${err.status}: ` : ''}${chainMessage(err)}`, { cause: err });
  if (err.response) return new HttpError(err.response.status, errorMessage(err.response.data) || err.message, { cause: err });
  return new Error(chainMessage(err), { cause: err });
}

/** Worth another try: a timeout, throttling, a server error, or no answer at all. */
function isTransient(err: unknown): boolean {
  if (err instanceof NixeryError) return false;
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { name?: unknown }).name === 'TimeoutError') return true;
    if (e instanceof gaxios.GaxiosError) {
      const status = e.response?.status;
      return status === undefined || status === 408 || status === 429 || status >= 500;
    }
  }
  return false;
}

/** An error's message and its causes' (a network error's reason is in its cause). */
function chainMessage(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const message = e instanceof Error ? e.message : String(e);
    if (message && !parts.includes(message)) parts.push(message);
  }
  return parts.join(': ');
}

/**
 * The body of a download as a Readable whose every read must bring data within `ms`, else
 * `onStall` aborts the request. Time spent while the consumer is not reading does not count.
 */
function watchStalls(body: ReadableStream<Uint8Array> | null, ms: number, onStall: () => void, signal: AbortSignal): Readable {
  if (!body) return Readable.from([]);
  const reader = body.getReader();
  return new Readable({
    read() {
      const timer = setTimeout(onStall, ms);
      reader.read().then(
        ({ done, value }) => {
          clearTimeout(timer);
          this.push(done ? null : Buffer.from(value.buffer, value.byteOffset, value.byteLength));
        },
        (err: unknown) => {
          clearTimeout(timer);
          this.destroy((signal.aborted ? signal.reason : err) as Error);
        },
      );
    },
    destroy(err, callback) {
      reader.cancel(err ?? undefined).catch(() => {});
      callback(err);
    },
  });
}

async function readText(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs `work` with a deadline: a TimeoutError when it takes longer. */
async function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DOMException(`${what} took longer than ${ms} ms`, 'TimeoutError')), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The message of a Google API error answer (JSON or text). */
function errorMessage(answer: unknown): string {
  let json: unknown = answer;
  if (typeof answer === 'string') {
    try {
      json = JSON.parse(answer);
    } catch {
      return answer.slice(0, 300).trim();
    }
  }
  const e = json as { error?: { message?: string } | string; error_description?: string } | null;
  if (typeof e?.error === 'object' && e.error?.message) return e.error.message;
  if (e?.error_description) return e.error_description;
  if (typeof e?.error === 'string') return e.error;
  return '';
}

/** A library error's message for a one-line ConfigError. */
function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
