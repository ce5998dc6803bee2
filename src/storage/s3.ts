// S3-compatible object storage (AWS, MinIO, Ceph, R2, GCS's XML interoperability API).
//
// Writes are atomic for readers because S3 makes an object visible only when a PUT or a
// CompleteMultipartUpload finishes. The streaming writer buffers up to one part: a small
// object becomes one PutObject at commit; a large one is a multipart upload whose parts go
// up while the producer writes, completed only by `commit` (lib-storage's Upload completes on
// end-of-stream by itself, which would make an uncommitted object visible, so it is not used).

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Readable } from 'node:stream';
import { displayUrl } from '../secrets.js';
import { StorageObjectNotFoundError, StorageRangeError, isMoveOntoItself, validateKey, validatePrefix } from './errors.js';
import { ObjectStore } from './object-store.js';
import { ObjectStoreWriter } from './object-writer.js';
import { checkRangeShape, objectSizeFrom, trimToRange } from './range.js';
import { STORAGE_KEY, type ByteRange, type ObjectInfo, type ObjectWriter, type OpenedObject, type Storage } from './storage.js';

const MIB = 1024 * 1024;
/** S3's smallest non-final part. */
const MIN_PART_SIZE = 5 * MIB;
const MAX_PARTS = 10_000;
/** Largest object a single CopyObject may copy; larger ones are copied part by part. */
const MAX_SINGLE_COPY = 5 * 1024 * MIB;
const COPY_PART_SIZE = 512 * MIB;

export interface S3StorageOptions {
  bucket: string;
  /** Custom endpoint (MinIO, R2, Ceph, storage.googleapis.com …); AWS when absent. */
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /** Prefix of every object key in the bucket, e.g. `nixery/` (default none). */
  prefix?: string;
  /** Static credentials; the SDK's default provider chain when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Whether redirectUrl hands out signed URLs (default true). */
  redirects?: boolean;
  /** Lifetime of signed URLs in seconds (default 300). */
  redirectTtlSeconds?: number;
  /** First part size of multipart uploads (default 8 MiB; grows for very large objects). */
  partSize?: number;
  /** Parts uploading at once per writer (default 2). */
  partConcurrency?: number;
  /** Attempts per request, retries included (default 4). */
  maxAttempts?: number;
  /** Limit for opening a connection, ms (default 5000). */
  connectTimeoutMs?: number;
  /** Limit for a request that makes no progress, ms (default 30000). */
  idleTimeoutMs?: number;
}

export class S3Storage extends ObjectStore implements Storage {
  readonly name: string;
  /** An ETag names one immutable object version. */
  readonly versionsImmutable = true;
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly redirects: boolean;
  private readonly redirectTtlSeconds: number;
  private readonly partSize: number;
  private readonly partConcurrency: number;

  constructor(options: S3StorageOptions) {
    super();
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? '';
    this.redirects = options.redirects ?? true;
    this.redirectTtlSeconds = options.redirectTtlSeconds ?? 300;
    this.partSize = Math.max(MIN_PART_SIZE, options.partSize ?? 8 * MIB);
    this.partConcurrency = Math.max(1, options.partConcurrency ?? 2);
    const config: S3ClientConfig = {
      region: options.region ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? false,
      // Only when the API demands it: many S3-compatible servers reject the newer default
      // CRC checksums (and aws-chunked uploads) that SDK versions since 2025 send.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Transient failures (5xx, throttling, refused or reset connections, timeouts) are retried
      // with exponential backoff and jitter; every request (our calls are all repeatable: whole
      // buffers, parts, reads) gets a bounded number of attempts.
      maxAttempts: options.maxAttempts ?? 4,
      retryMode: 'standard',
      // A server that accepts nothing, or stops sending, fails the attempt instead of hanging it.
      requestHandler: { connectionTimeout: options.connectTimeoutMs ?? 5000, requestTimeout: options.idleTimeoutMs ?? 30_000 },
    };
    if (options.endpoint) config.endpoint = options.endpoint;
    if (options.credentials) config.credentials = options.credentials;
    this.client = new S3Client(config);
    const where = options.endpoint ? ` at ${displayUrl(options.endpoint)}` : '';
    this.name = `s3 (${this.bucket}${this.prefix ? `/${this.prefix.replace(/\/$/, '')}` : ''}${where})`;
    this.notices = [this.redirects ? `blob GETs redirect to signed URLs valid ${this.redirectTtlSeconds} s` : 'blob redirects are off: blobs stream through the registry'];
  }

  readonly notices: readonly string[];

  async put(key: string, data: Buffer | string, options: { contentType?: string } = {}): Promise<void> {
    validateKey(key);
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    await this.call('put', key, () =>
      this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: body, ContentLength: body.length, ContentType: options.contentType }),
      ),
    );
  }

  async writer(key: string, options: { contentType?: string } = {}): Promise<ObjectWriter> {
    validateKey(key);
    return new StreamingUpload(this, this.objectKey(key), key, options.contentType).asObjectWriter();
  }

  async open(key: string, range?: ByteRange): Promise<OpenedObject | null> {
    validateKey(key);
    if (range) checkRangeShape(key, range);
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
      const body = res.Body as Readable;
      const info: ObjectInfo = { key, size: objectSizeFrom(res.ContentRange, res.ContentLength), modified: res.LastModified?.getTime() ?? 0 };
      if (res.ContentType) info.contentType = res.ContentType;
      if (res.ETag) info.version = res.ETag;
      return { stream: range ? trimToRange(body, range, res.ContentRange) : body, info };
    } catch (err) {
      if (isNotFound(err)) return null;
      if (statusOf(err) === 416 && range) throw new StorageRangeError(key, range.start, range.end);
      throw this.failure('get', key, err);
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    validateKey(key);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      const info: ObjectInfo = { key, size: head.ContentLength ?? 0, modified: head.LastModified?.getTime() ?? 0 };
      if (head.ContentType) info.contentType = head.ContentType;
      if (head.ETag) info.version = head.ETag;
      return info;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.failure('stat', key, err);
    }
  }

  async move(from: string, to: string): Promise<void> {
    if (await isMoveOntoItself(this, from, to)) return;
    const info = await this.stat(from);
    if (!info) throw new StorageObjectNotFoundError(from);
    const source = `${this.bucket}/${this.objectKey(from)}`;
    try {
      if (info.size <= MAX_SINGLE_COPY) {
        // The copy keeps the source's metadata, content type included.
        await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: this.objectKey(to), CopySource: encodeURI(source) }));
      } else {
        await this.copyInParts(source, to, info);
      }
    } catch (err) {
      if (isNotFound(err)) throw new StorageObjectNotFoundError(from);
      throw this.failure('move', `${from} -> ${to}`, err);
    }
    await this.delete(from);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    let token: string | undefined;
    do {
      const page = await this.call('list', prefix || '/', () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token })),
      );
      for (const object of page.Contents ?? []) {
        const key = object.Key?.slice(this.prefix.length);
        // Objects that are not ours (keys we could never address) are not listed.
        if (!key || !object.Key!.startsWith(this.prefix) || !STORAGE_KEY.test(key)) continue;
        yield { key, size: object.Size ?? 0, modified: object.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw this.failure('delete', key, err);
    }
  }

  // Conditional writes: If-None-Match: * and If-Match: <ETag> (AWS S3 honours both on PUT, and
  // If-Match on DELETE). 412 when unmet; 409 when a concurrent conditional write to the key won.
  // If-Match carries the ETag without its quotes: AWS and MinIO accept both forms, Ceph RGW (and
  // DigitalOcean Spaces, built on it) and Cloudflare R2 only the bare one (RGW refuses the quoted
  // one with 412; AWS's own Java SDK sends it bare).

  async createIfAbsent(key: string, data: Buffer | string): Promise<string | null> {
    return this.putIf('create', key, data, { IfNoneMatch: '*' });
  }

  async replaceIfVersion(key: string, data: Buffer | string, version: string): Promise<string | null> {
    return this.putIf('replace', key, data, { IfMatch: bareETag(version) });
  }

  async deleteIfVersion(key: string, version: string): Promise<boolean> {
    validateKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), IfMatch: bareETag(version) }));
      return true;
    } catch (err) {
      if (isNotFound(err) || isConditionUnmet(err)) return false;
      throw this.failure('delete', key, err);
    }
  }

  private async putIf(operation: string, key: string, data: Buffer | string, condition: { IfNoneMatch?: string; IfMatch?: string }): Promise<string | null> {
    validateKey(key);
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    try {
      const res = await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: body, ContentLength: body.length, ...condition }));
      if (!res.ETag) throw new Error('the PUT answer names no ETag');
      return res.ETag;
    } catch (err) {
      if (isNotFound(err) || isConditionUnmet(err)) return null;
      throw this.failure(operation, key, err);
    }
  }

  async redirectUrl(key: string, options: { method: 'GET' | 'HEAD' }): Promise<string | null> {
    validateKey(key);
    if (!this.redirects) return null;
    const input = { Bucket: this.bucket, Key: this.objectKey(key) };
    const command = options.method === 'HEAD' ? new HeadObjectCommand(input) : new GetObjectCommand(input);
    return this.call('sign', key, () => getSignedUrl(this.client, command, { expiresIn: this.redirectTtlSeconds }));
  }

  protected override describeError(err: unknown): unknown {
    return describeS3Error(err);
  }

  /** @internal Used by StreamingUpload. */
  get uploadSettings(): { bucket: string; partSize: number; partConcurrency: number } {
    return { bucket: this.bucket, partSize: this.partSize, partConcurrency: this.partConcurrency };
  }

  private objectKey(key: string): string {
    return this.prefix + key;
  }

  private async copyInParts(source: string, to: string, info: ObjectInfo): Promise<void> {
    const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(info.key) }));
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(to), ContentType: head.ContentType, Metadata: head.Metadata }),
    );
    const parts: Array<{ PartNumber: number; ETag: string }> = [];
    try {
      for (let start = 0, n = 1; start < info.size; start += COPY_PART_SIZE, n++) {
        const end = Math.min(info.size, start + COPY_PART_SIZE) - 1;
        const res = await this.client.send(
          new UploadPartCopyCommand({ Bucket: this.bucket, Key: this.objectKey(to), UploadId, PartNumber: n, CopySource: encodeURI(source), CopySourceRange: `bytes=${start}-${end}` }),
        );
        parts.push({ PartNumber: n, ETag: res.CopyPartResult?.ETag ?? '' });
      }
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(to), UploadId, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(to), UploadId })).catch(() => {});
      throw err;
    }
  }
}

/**
 * One streaming write: bytes are buffered up to a part; the first full part starts a multipart
 * upload. Nothing is visible until commit (PutObject, or CompleteMultipartUpload).
 */
class StreamingUpload extends ObjectStoreWriter {
  private uploadId: string | undefined;
  private readonly parts: Array<{ PartNumber: number; ETag: string }> = [];
  private readonly inFlight = new Set<Promise<void>>();
  private partCounter = 0;
  private readonly settings: { bucket: string; partSize: number; partConcurrency: number };

  constructor(
    private readonly storage: S3Storage,
    private readonly objectKey: string,
    key: string,
    private readonly contentType: string | undefined,
  ) {
    super(key, (operation, k, err) => storage.failure(operation, k, err));
    this.settings = storage.uploadSettings;
  }

  protected async sendFullParts(): Promise<void> {
    if (this.bufferedBytes < this.currentPartSize()) return;
    if (this.uploadId === undefined) {
      const res = await this.storage.client.send(
        new CreateMultipartUploadCommand({ Bucket: this.settings.bucket, Key: this.objectKey, ContentType: this.contentType }),
      );
      this.uploadId = res.UploadId;
      await this.throwIfClosed();
    }
    const part = this.takeBuffered();
    const sending = this.uploadPart(part).catch((err) => {
      this.failure ??= err;
    });
    this.inFlight.add(sending);
    void sending.finally(() => this.inFlight.delete(sending));
    // Backpressure: hold the producer while too many parts are on their way.
    while (this.inFlight.size >= this.settings.partConcurrency) await Promise.race(this.inFlight);
    if (this.failure !== undefined) throw this.failure;
  }

  protected override async settleParts(): Promise<void> {
    await Promise.all(this.inFlight);
  }

  protected async complete(rest: Buffer): Promise<void> {
    const { bucket } = this.settings;
    if (this.uploadId === undefined) {
      await this.storage.client.send(new PutObjectCommand({ Bucket: bucket, Key: this.objectKey, Body: rest, ContentLength: rest.length, ContentType: this.contentType }));
      return;
    }
    if (rest.length > 0 || this.parts.length === 0) await this.uploadPart(rest);
    const parts = [...this.parts].sort((a, b) => a.PartNumber - b.PartNumber);
    await this.storage.client.send(
      new CompleteMultipartUploadCommand({ Bucket: bucket, Key: this.objectKey, UploadId: this.uploadId, MultipartUpload: { Parts: parts } }),
    );
  }

  /** Drops the unfinished multipart upload; it was never visible. */
  protected async cancelUpload(): Promise<void> {
    await Promise.allSettled(this.inFlight);
    const uploadId = this.uploadId;
    this.uploadId = undefined;
    if (uploadId !== undefined) {
      // Best effort: an unfinished upload is invisible either way, and a bucket lifecycle rule
      // (AbortIncompleteMultipartUpload) reclaims what a failed abort leaves behind.
      await this.storage.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.settings.bucket, Key: this.objectKey, UploadId: uploadId }))
        .catch(() => {});
    }
  }

  /** Parts grow by doubling every 1000 parts, so 10,000 parts reach far beyond any layer. */
  private currentPartSize(): number {
    return this.settings.partSize * 2 ** Math.floor(this.parts.length / 1000);
  }

  private async uploadPart(body: Buffer): Promise<void> {
    const PartNumber = ++this.partCounter;
    if (PartNumber > MAX_PARTS) throw new Error(`object exceeds ${MAX_PARTS} parts`);
    const res = await this.storage.client.send(
      new UploadPartCommand({ Bucket: this.settings.bucket, Key: this.objectKey, UploadId: this.uploadId, PartNumber, Body: body, ContentLength: body.length }),
    );
    this.parts.push({ PartNumber, ETag: res.ETag ?? '' });
  }
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

function isNotFound(err: unknown): boolean {
  const name = (err as { name?: string; Code?: string } | undefined)?.name;
  // Not any 404: a missing bucket (NoSuchBucket) is a configuration error, not a missing key.
  return name === 'NoSuchKey' || name === 'NotFound';
}

/** A precondition that did not hold (412), or a concurrent conditional write that won (409). */
function isConditionUnmet(err: unknown): boolean {
  const status = statusOf(err);
  return status === 412 || (status === 409 && (err as { name?: string }).name === 'ConditionalRequestConflict');
}

/** `"abc"` → `abc`; a version that is no quoted ETag stays as it is. */
function bareETag(version: string): string {
  return /^"[^"]*"$/.test(version) ? version.slice(1, -1) : version;
}

function describeS3Error(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  const status = statusOf(err);
  const message = err.message && err.message !== 'UnknownError' ? err.message : err.name;
  return new Error(`${err.name}${status ? ` (HTTP ${status})` : ''}: ${message}`, { cause: err });
}
