// The gcs backend's HTTP plumbing: what a request and an answer are, which failures are worth
// another try, deadlines for answers and for each piece of a download's body.

import { Readable } from 'node:stream';
import { gaxios } from 'google-auth-library';
import { NixeryError } from '../errors.js';

/** GCS answered with an error status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`HTTP ${status}: ${message}`, options);
  }
}

export interface RequestOptions {
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

export interface GcsResponse<T = unknown> {
  status: number;
  headers: Headers;
  /** The parsed JSON (or text), or a Readable for `responseType: 'stream'`. */
  data: T;
}

/**
 * What a failed try becomes: a TimeoutError; an HttpError for GCS's error answers; for a
 * failure getting the token, an error saying so (its cause keeps the status); the rest as is.
 */
export function requestFailure(err: unknown, url: string): unknown {
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
export function isTransient(err: unknown): boolean {
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
export function chainMessage(err: unknown): string {
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
export function watchStalls(body: ReadableStream<Uint8Array> | null, ms: number, onStall: () => void, signal: AbortSignal): Readable {
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

export async function readText(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs `work` with a deadline: a TimeoutError when it takes longer. */
export async function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
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
export function errorMessage(answer: unknown): string {
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

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
