// A Google Cloud Storage test server on loopback, written for these tests because no
// GCS-compatible server can be installed here (fake-gcs-server is Go and in no registry this
// machine reaches; npm has only in-process SDK mocks). It speaks the parts of GCS's HTTP
// interface the backend and google-auth-library use, with Google's documented semantics:
//   - OAuth token endpoint: verifies a service account's RS256 JWT assertion (jwt-bearer grant)
//     or an authorized user's refresh token;
//   - workload identity federation: an STS token exchange (checks the audience and the subject
//     token) and IAM Credentials generateAccessToken (impersonation) and signBlob (signs with
//     the service account's key, as IAM does for accounts without a key of their own);
//   - a GCE metadata server (token and email of the default service account);
//   - preconditions on media uploads and deletes (ifGenerationMatch, 0 for no live object; 412);
//   - JSON API: media and resumable uploads (308 + Range, `bytes */total` finalisation,
//     DELETE cancels with 499), object metadata, alt=media downloads with Range, list with
//     prefix and page tokens (name order), delete, multi-call rewriteTo;
//   - XML API GET/HEAD for V4-signed URLs: the signature is verified with the public key and
//     expiry is enforced; unsigned URLs work only on buckets made public.
// Objects become visible only when an upload completes, as in GCS. Tests can revoke every
// token issued so far (GCS then answers 401), fail or hang the next API requests.

import { createHash, createPublicKey, createSign, randomUUID, verify, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

interface StoredObject {
  data: Buffer;
  contentType: string;
  updated: Date;
  generation: number;
}

interface Session {
  bucket: string;
  name: string;
  contentType: string;
  chunks: Buffer[];
  received: number;
}

/** The audience google-auth-library signs service-account assertions for, whatever the key's token_uri. */
export const GOOGLE_TOKEN_AUDIENCE = 'https://oauth2.googleapis.com/token';
const STORAGE_SCOPE = 'https://www.googleapis.com/auth/devstorage.read_write';

export interface FakeGcsOptions {
  /**
   * Service account whose tokens and signatures are accepted; API requests need a token when
   * it is given, and are anonymous otherwise. It is also the account workload identity
   * impersonates and the GCE metadata server hands tokens for.
   */
  serviceAccount?: { client_email: string; private_key: string };
  /** An authorized user (refresh-token grant) the token endpoint accepts. */
  authorizedUser?: { client_id: string; client_secret: string; refresh_token: string };
  /** A workload identity pool provider the STS endpoint exchanges `subjectToken` for. */
  workloadIdentity?: { audience: string; subjectToken: string };
  /** Items per list page (default 1000, as GCS). */
  pageSize?: number;
  /** Bytes rewriteTo copies per call; smaller objects are done in one call (default unlimited). */
  rewriteBytesPerCall?: number;
  /** Persist this many bytes less than sent of each non-final resumable chunk (default 0). */
  resumableShortfall?: number;
}

export interface FakeGcs {
  endpoint: string;
  /** OAuth token endpoint (a key's token_uri). */
  tokenUri: string;
  /** STS token exchange endpoint (an external account's token_url). */
  stsUri: string;
  /** IAM Credentials URL that impersonates `email` (service_account_impersonation_url). */
  impersonationUrl(email: string): string;
  /** Host (and port) of the GCE metadata server (GCE_METADATA_HOST). */
  metadataHost: string;
  createBucket(options?: { public?: boolean }): string;
  /** Counters the tests read. */
  stats: {
    /** Access tokens issued, by any endpoint. */
    tokens: number;
    stsExchanges: number;
    impersonations: number;
    signBlobs: number;
    metadataTokens: number;
    resumableSessions: number;
    rewriteCalls: number;
    /** API requests answered with an injected failure, or left hanging. */
    failed: number;
    hung: number;
  };
  /** The in-flight resumable sessions (for checking that aborts cancel them). */
  openSessions(): number;
  /** The next `count` API requests fail with `status` (transient failures); Infinity for an outage, 0 ends it. */
  failNext(count: number, status?: number): void;
  /**
   * The next `count` API requests hang: never answered (`headers`), or answered with headers
   * and half the body of a download, then nothing (`body`). 0 ends it.
   */
  hangNext(count: number, where?: 'headers' | 'body'): void;
  /** Forgets every access token issued so far: GCS answers 401 until a new one is fetched. */
  revokeTokens(): void;
  stop(): Promise<void>;
}

export async function startFakeGcs(options: FakeGcsOptions = {}): Promise<FakeGcs> {
  const buckets = new Map<string, { objects: Map<string, StoredObject>; public: boolean }>();
  const sessions = new Map<string, Session>();
  /** Access tokens issued, with what they may be used for. */
  const tokens = new Map<string, 'storage' | 'federated'>();
  const stats = { tokens: 0, stsExchanges: 0, impersonations: 0, signBlobs: 0, metadataTokens: 0, resumableSessions: 0, rewriteCalls: 0, failed: 0, hung: 0 };
  const publicKey: KeyObject | undefined = options.serviceAccount ? createPublicKey(options.serviceAccount.private_key) : undefined;
  let generation = 0;
  let endpoint = '';
  let failures = { count: 0, status: 503 };
  let hangs = { count: 0, where: 'headers' as 'headers' | 'body' };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => send(res, 500, { error: { code: 500, message: String(err) } }));
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);
    const body = await readBody(req);

    if (req.method === 'POST' && url.pathname === '/token') return token(body, res);
    if (req.method === 'POST' && url.pathname === '/sts/v1/token') return sts(body, res);
    const iam = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):(generateAccessToken|signBlob)$/.exec(url.pathname);
    if (req.method === 'POST' && iam) return iamCredentials(decodeURIComponent(iam[1]!), iam[2]!, req, body, res);
    if (req.method === 'GET' && url.pathname.startsWith('/computeMetadata/v1/')) return metadata(url.pathname.slice('/computeMetadata/v1/'.length), req, res);

    const api = segments[0] === 'storage' || segments[0] === 'upload';
    /** A download to answer with half its body, then nothing. */
    let stall = false;
    if (api && hangs.count > 0) {
      hangs.count--;
      stats.hung++;
      if (hangs.where === 'headers' || url.searchParams.get('alt') !== 'media') return; // never answered
      stall = true;
    } else if (api && failures.count > 0) {
      failures.count--;
      stats.failed++;
      return send(res, failures.status, { error: { code: failures.status, message: 'Backend Error (injected)' } });
    }
    if (api && publicKey && !bearer(req)) return send(res, 401, { error: { code: 401, message: 'Invalid Credentials' } });

    // /upload/storage/v1/b/<bucket>/o
    if (segments[0] === 'upload' && segments[3] === 'b' && segments[5] === 'o' && segments.length === 6) {
      const bucket = getBucket(segments[4]!, res);
      if (!bucket) return;
      const uploadId = url.searchParams.get('upload_id');
      if (req.method === 'POST' && url.searchParams.get('uploadType') === 'media') {
        const name = url.searchParams.get('name');
        if (!name) return send(res, 400, { error: { code: 400, message: 'Required parameter: name' } });
        if (unmet(bucket.objects.get(name), url)) return preconditionFailed(res);
        const stored = store(bucket.objects, name, body, req.headers['content-type'] ?? 'application/octet-stream');
        return send(res, 200, resource(segments[4]!, name, stored));
      }
      if (req.method === 'POST' && url.searchParams.get('uploadType') === 'resumable') {
        const meta = body.length ? (JSON.parse(body.toString()) as { name?: string; contentType?: string }) : {};
        const name = url.searchParams.get('name') ?? meta.name;
        if (!name) return send(res, 400, { error: { code: 400, message: 'Required parameter: name' } });
        const id = randomUUID();
        const contentType = meta.contentType ?? (req.headers['x-upload-content-type'] as string | undefined) ?? 'application/octet-stream';
        sessions.set(id, { bucket: segments[4]!, name, contentType, chunks: [], received: 0 });
        stats.resumableSessions++;
        res.setHeader('Location', `${endpoint}/upload/storage/v1/b/${encodeURIComponent(segments[4]!)}/o?uploadType=resumable&upload_id=${id}`);
        return send(res, 200, {});
      }
      if (uploadId && req.method === 'DELETE') {
        sessions.delete(uploadId);
        res.writeHead(499).end();
        return;
      }
      if (uploadId && req.method === 'PUT') {
        const session = sessions.get(uploadId);
        if (!session) return send(res, 404, { error: { code: 404, message: 'No such upload' } });
        const m = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(req.headers['content-range'] ?? '');
        if (!m) return send(res, 400, { error: { code: 400, message: 'bad Content-Range' } });
        const total = m[3] === '*' ? undefined : Number(m[3]);
        if (m[1] !== undefined) {
          const start = Number(m[1]);
          const end = Number(m[2]);
          if (start !== session.received || end - start + 1 !== body.length) {
            return send(res, 400, { error: { code: 400, message: `chunk ${start}-${end} does not follow byte ${session.received}` } });
          }
          if (total === undefined && body.length % (256 * 1024) !== 0) {
            return send(res, 400, { error: { code: 400, message: 'non-final chunks must be multiples of 256 KiB' } });
          }
          const keep = total === undefined ? body.length - Math.min(options.resumableShortfall ?? 0, body.length) : body.length;
          session.chunks.push(body.subarray(0, keep));
          session.received += keep;
        }
        if (total !== undefined && session.received === total) {
          sessions.delete(uploadId);
          const bucket2 = buckets.get(session.bucket)!;
          const stored = store(bucket2.objects, session.name, Buffer.concat(session.chunks), session.contentType);
          return send(res, 200, resource(session.bucket, session.name, stored));
        }
        if (total !== undefined && session.received > total) return send(res, 400, { error: { code: 400, message: 'more bytes than the declared total' } });
        if (session.received > 0) res.setHeader('Range', `bytes=0-${session.received - 1}`);
        res.writeHead(308).end();
        return;
      }
    }

    // /storage/v1/b/<bucket>/o[/<object>[/rewriteTo/b/<bucket>/o/<object>]]
    if (segments[0] === 'storage' && segments[2] === 'b' && segments[4] === 'o') {
      const bucketName = segments[3]!;
      const bucket = getBucket(bucketName, res);
      if (!bucket) return;
      if (segments.length === 5 && req.method === 'GET') return list(bucket.objects, url, res);
      const name = segments[5];
      if (name === undefined) return send(res, 404, { error: { code: 404, message: 'Not Found' } });
      if (segments.length === 6) {
        const object = bucket.objects.get(name);
        if (req.method === 'DELETE') {
          if (!object) return send(res, 404, { error: { code: 404, message: `No such object: ${bucketName}/${name}` } });
          if (unmet(object, url)) return preconditionFailed(res);
          bucket.objects.delete(name);
          res.writeHead(204).end();
          return;
        }
        if (req.method === 'GET') {
          if (!object) return send(res, 404, { error: { code: 404, message: `No such object: ${bucketName}/${name}` } });
          if (url.searchParams.get('alt') === 'media') return media(object, req, res, false, stall);
          return send(res, 200, resource(bucketName, name, object));
        }
      }
      if (segments.length === 11 && segments[6] === 'rewriteTo' && req.method === 'POST') {
        stats.rewriteCalls++;
        const target = getBucket(segments[8]!, res);
        if (!target) return;
        const source = bucket.objects.get(name);
        if (!source) return send(res, 404, { error: { code: 404, message: `No such object: ${bucketName}/${name}` } });
        const done = Number(url.searchParams.get('rewriteToken') ?? '0');
        const step = options.rewriteBytesPerCall ?? Infinity;
        const progress = Math.min(source.data.length, done + step);
        if (progress < source.data.length) {
          return send(res, 200, { kind: 'storage#rewriteResponse', totalBytesRewritten: String(progress), objectSize: String(source.data.length), done: false, rewriteToken: String(progress) });
        }
        const stored = store(target.objects, segments[10]!, source.data, source.contentType);
        return send(res, 200, { kind: 'storage#rewriteResponse', done: true, objectSize: String(source.data.length), resource: resource(segments[8]!, segments[10]!, stored) });
      }
    }

    // XML API: /<bucket>/<object...>, for signed (or public) GET and HEAD.
    if ((req.method === 'GET' || req.method === 'HEAD') && segments.length >= 2 && buckets.has(segments[0]!)) {
      const bucket = buckets.get(segments[0]!)!;
      const hasSignature = [...url.searchParams.keys()].some((k) => k.toLowerCase() === 'x-goog-signature');
      if (hasSignature) {
        const problem = checkSignature(req, url);
        if (problem) return xmlError(res, problem.status, problem.code, problem.message);
      } else if (!bucket.public) {
        return xmlError(res, 403, 'AccessDenied', 'Anonymous caller does not have storage.objects.get access.');
      }
      const object = bucket.objects.get(segments.slice(1).join('/'));
      if (!object) return xmlError(res, 404, 'NoSuchKey', 'The specified key does not exist.');
      return media(object, req, res, req.method === 'HEAD');
    }

    send(res, 404, { error: { code: 404, message: `no route for ${req.method} ${url.pathname}` } });
  }

  function issue(kind: 'storage' | 'federated'): string {
    const value = `ya29.test-${randomUUID()}`;
    tokens.set(value, kind);
    stats.tokens++;
    return value;
  }

  /** What the request's bearer token may be used for, if it is one we issued. */
  function bearer(req: http.IncomingMessage): 'storage' | 'federated' | undefined {
    const auth = req.headers.authorization ?? '';
    return auth.startsWith('Bearer ') ? tokens.get(auth.slice(7)) : undefined;
  }

  function token(body: Buffer, res: http.ServerResponse): void {
    const form = new URLSearchParams(body.toString());
    const user = options.authorizedUser;
    if (form.get('grant_type') === 'refresh_token') {
      if (!user || form.get('client_id') !== user.client_id || form.get('client_secret') !== user.client_secret || form.get('refresh_token') !== user.refresh_token) {
        return send(res, 400, { error: 'invalid_grant', error_description: 'Bad Request' });
      }
      return send(res, 200, { access_token: issue('storage'), expires_in: 3599, token_type: 'Bearer', scope: STORAGE_SCOPE });
    }
    const assertion = form.get('assertion') ?? '';
    const [h, c, s] = assertion.split('.');
    if (!publicKey || form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer' || !h || !c || !s) {
      return send(res, 400, { error: 'invalid_grant', error_description: 'bad assertion' });
    }
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { alg?: string };
    const claims = JSON.parse(Buffer.from(c, 'base64url').toString()) as { iss?: string; aud?: string; scope?: string; exp?: number; iat?: number };
    const now = Date.now() / 1000;
    const valid =
      header.alg === 'RS256' &&
      verify('RSA-SHA256', Buffer.from(`${h}.${c}`), publicKey, Buffer.from(s, 'base64url')) &&
      claims.iss === options.serviceAccount!.client_email &&
      claims.aud === GOOGLE_TOKEN_AUDIENCE &&
      (claims.scope ?? '').split(' ').includes(STORAGE_SCOPE) &&
      typeof claims.exp === 'number' &&
      claims.exp > now &&
      (claims.iat ?? 0) <= now + 60;
    if (!valid) return send(res, 400, { error: 'invalid_grant', error_description: 'Invalid JWT Signature or claims.' });
    send(res, 200, { access_token: issue('storage'), expires_in: 3599, token_type: 'Bearer' });
  }

  /** RFC 8693 token exchange, as Google's STS does it for a workload identity pool provider. */
  function sts(body: Buffer, res: http.ServerResponse): void {
    const form = new URLSearchParams(body.toString());
    const wi = options.workloadIdentity;
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange' || form.get('requested_token_type') !== 'urn:ietf:params:oauth:token-type:access_token') {
      return send(res, 400, { error: 'invalid_request', error_description: 'unsupported grant or token type' });
    }
    if (!wi || form.get('audience') !== wi.audience) return send(res, 400, { error: 'invalid_target', error_description: 'The target service indicated by the "audience" parameters is invalid.' });
    if (form.get('subject_token') !== wi.subjectToken || !form.get('subject_token_type')) return send(res, 400, { error: 'invalid_grant', error_description: 'The subject token is invalid.' });
    stats.stsExchanges++;
    // A federated token works for GCS directly, or to impersonate a service account.
    send(res, 200, { access_token: issue('federated'), issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 3600 });
  }

  /** IAM Credentials: generateAccessToken (with a federated token) and signBlob, for the service account. */
  function iamCredentials(email: string, method: string, req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): void {
    const account = options.serviceAccount;
    const kind = bearer(req);
    if (!kind) return send(res, 401, { error: { code: 401, message: 'Request had invalid authentication credentials.', status: 'UNAUTHENTICATED' } });
    if (!account || email !== account.client_email) return send(res, 404, { error: { code: 404, message: `Not found; Gaia id not found for email ${email}`, status: 'NOT_FOUND' } });
    const request = JSON.parse(body.toString() || '{}') as { scope?: string[]; payload?: string };
    if (method === 'generateAccessToken') {
      if (kind !== 'federated') return send(res, 403, { error: { code: 403, message: 'Permission iam.serviceAccounts.getAccessToken denied', status: 'PERMISSION_DENIED' } });
      if (!request.scope?.includes(STORAGE_SCOPE)) return send(res, 400, { error: { code: 400, message: 'scope must include the storage scope', status: 'INVALID_ARGUMENT' } });
      stats.impersonations++;
      return send(res, 200, { accessToken: issue('storage'), expireTime: new Date(Date.now() + 3600_000).toISOString() });
    }
    if (kind !== 'storage') return send(res, 403, { error: { code: 403, message: 'Permission iam.serviceAccounts.signBlob denied', status: 'PERMISSION_DENIED' } });
    if (typeof request.payload !== 'string') return send(res, 400, { error: { code: 400, message: 'payload is required', status: 'INVALID_ARGUMENT' } });
    stats.signBlobs++;
    const signedBlob = createSign('RSA-SHA256').update(Buffer.from(request.payload, 'base64')).sign(account.private_key, 'base64');
    send(res, 200, { keyId: 'fake-iam-key', signedBlob });
  }

  /** The GCE metadata server, for the default service account (the configured one). */
  function metadata(path: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    const flavor = { 'Metadata-Flavor': 'Google' };
    if (req.headers['metadata-flavor'] !== 'Google') return void res.writeHead(403, flavor).end('Missing Metadata-Flavor:Google header.');
    const account = options.serviceAccount;
    if (account && path === 'instance/service-accounts/default/token') {
      stats.metadataTokens++;
      const text = JSON.stringify({ access_token: issue('storage'), expires_in: 3599, token_type: 'Bearer' });
      return void res.writeHead(200, { ...flavor, 'Content-Type': 'application/json' }).end(text);
    }
    if (account && path === 'instance/service-accounts/default/email') return void res.writeHead(200, { ...flavor, 'Content-Type': 'application/text' }).end(account.client_email);
    if (path === 'project/project-id') return void res.writeHead(200, { ...flavor, 'Content-Type': 'application/text' }).end('test-project');
    res.writeHead(404, { ...flavor, 'Content-Type': 'text/html' }).end('Not Found');
  }

  /** Verifies a V4 signed URL from the request as received. */
  function checkSignature(req: http.IncomingMessage, url: URL): { status: number; code: string; message: string } | null {
    if (!publicKey) return { status: 403, code: 'AccessDenied', message: 'signed URLs need a service account' };
    const rawQuery = (req.url ?? '').split('?')[1] ?? '';
    const pairs = rawQuery.split('&').filter(Boolean).map((p) => {
      const i = p.indexOf('=');
      return [decodeURIComponent(i < 0 ? p : p.slice(0, i)), decodeURIComponent(i < 0 ? '' : p.slice(i + 1))] as [string, string];
    });
    const get = (name: string) => pairs.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
    const signature = get('X-Goog-Signature') ?? '';
    const credential = get('X-Goog-Credential') ?? '';
    const date = get('X-Goog-Date') ?? '';
    const expires = Number(get('X-Goog-Expires'));
    const signedHeaders = get('X-Goog-SignedHeaders') ?? '';
    if (get('X-Goog-Algorithm') !== 'GOOG4-RSA-SHA256') return { status: 400, code: 'InvalidArgument', message: 'unsupported algorithm' };
    const [email, ...scopeParts] = credential.split('/');
    if (email !== options.serviceAccount!.client_email) return { status: 403, code: 'AccessDenied', message: 'unknown signer' };
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(date);
    if (!m) return { status: 400, code: 'InvalidArgument', message: 'bad X-Goog-Date' };
    const signedAt = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
    if (Date.now() > signedAt + expires * 1000) return { status: 400, code: 'ExpiredToken', message: 'Invalid argument: the signed URL has expired.' };
    const encode = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
    const canonicalQuery = pairs
      .filter(([k]) => k.toLowerCase() !== 'x-goog-signature')
      .map(([k, v]) => [encode(k), encode(v)])
      .sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : a[1]! < b[1]! ? -1 : 1))
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    const canonicalHeaders = signedHeaders
      .split(';')
      .map((h) => `${h}:${String(req.headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`)
      .join('');
    const canonicalRequest = [req.method, url.pathname, canonicalQuery, canonicalHeaders, signedHeaders, 'UNSIGNED-PAYLOAD'].join('\n');
    const stringToSign = ['GOOG4-RSA-SHA256', date, scopeParts.join('/'), createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
    if (!verify('RSA-SHA256', Buffer.from(stringToSign), publicKey, Buffer.from(signature, 'hex'))) {
      return { status: 403, code: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided.' };
    }
    return null;
  }

  function list(objects: Map<string, StoredObject>, url: URL, res: http.ServerResponse): void {
    const prefix = url.searchParams.get('prefix') ?? '';
    const after = url.searchParams.get('pageToken');
    const pageSize = Math.min(Number(url.searchParams.get('maxResults') ?? Infinity), options.pageSize ?? 1000);
    const names = [...objects.keys()].filter((n) => n.startsWith(prefix) && (after === null || n > after)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const page = names.slice(0, pageSize);
    const answer: Record<string, unknown> = { kind: 'storage#objects', items: page.map((n) => resource('', n, objects.get(n)!)) };
    if (names.length > page.length) answer.nextPageToken = page[page.length - 1];
    send(res, 200, answer);
  }

  function media(object: StoredObject, req: http.IncomingMessage, res: http.ServerResponse, headOnly: boolean, stall = false): void {
    const size = object.data.length;
    const headers: Record<string, string> = { 'Content-Type': object.contentType, 'Accept-Ranges': 'bytes', 'Last-Modified': object.updated.toUTCString(), 'X-Goog-Generation': String(object.generation) };
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m) {
      const start = Number(m[1]);
      const end = Math.min(m[2] ? Number(m[2]) : size - 1, size - 1);
      if (start >= size || end < start) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': String(end - start + 1) });
      res.end(headOnly ? undefined : object.data.subarray(start, end + 1));
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Length': String(size) });
    if (stall) {
      res.write(object.data.subarray(0, Math.floor(size / 2))); // and nothing more
      return;
    }
    res.end(headOnly ? undefined : object.data);
  }

  function store(objects: Map<string, StoredObject>, name: string, data: Buffer, contentType: string): StoredObject {
    const stored = { data, contentType, updated: new Date(), generation: ++generation };
    objects.set(name, stored); // one assignment: the whole object appears at once
    return stored;
  }

  function resource(bucket: string, name: string, o: StoredObject): Record<string, unknown> {
    return { kind: 'storage#object', bucket, name, size: String(o.data.length), contentType: o.contentType, updated: o.updated.toISOString(), generation: String(o.generation) };
  }

  function getBucket(name: string, res: http.ServerResponse) {
    const bucket = buckets.get(name);
    if (!bucket) send(res, 404, { error: { code: 404, message: `The specified bucket does not exist: ${name}` } });
    return bucket;
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let count = 0;
  return {
    endpoint,
    tokenUri: `${endpoint}/token`,
    stsUri: `${endpoint}/sts/v1/token`,
    impersonationUrl: (email) => `${endpoint}/v1/projects/-/serviceAccounts/${email}:generateAccessToken`,
    metadataHost: endpoint.slice('http://'.length),
    stats,
    createBucket(opts = {}) {
      const name = `nixery-gcs-test-${++count}`;
      buckets.set(name, { objects: new Map(), public: opts.public ?? false });
      return name;
    },
    openSessions: () => sessions.size,
    failNext(count, status = 503) {
      failures = { count, status };
    },
    hangNext(count, where = 'headers') {
      hangs = { count, where };
    },
    revokeTokens() {
      tokens.clear();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': String(Buffer.byteLength(text)) }).end(text);
}

/** Whether the request's ifGenerationMatch (0: no live object) does not hold; checked and acted on in one tick. */
function unmet(object: StoredObject | undefined, url: URL): boolean {
  const want = url.searchParams.get('ifGenerationMatch');
  return want !== null && (object?.generation ?? 0) !== Number(want);
}

function preconditionFailed(res: http.ServerResponse): void {
  send(res, 412, { error: { code: 412, message: 'At least one of the pre-conditions you specified did not hold.', errors: [{ reason: 'conditionNotMet' }] } });
}

function xmlError(res: http.ServerResponse, status: number, code: string, message: string): void {
  const text = `<?xml version='1.0' encoding='UTF-8'?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  res.writeHead(status, { 'Content-Type': 'application/xml; charset=UTF-8' }).end(text);
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
