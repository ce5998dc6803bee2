// A loopback proxy in front of s3rver that enforces S3's conditional writes, which s3rver ignores:
// PUT with `If-None-Match: *` or `If-Match: <ETag>` and DELETE with `If-Match`, as AWS documents
// them (412 PreconditionFailed when the condition does not hold; 404 NoSuchKey for If-Match on a
// missing key). Ceph RGW 16 (s3-rgw.test.ts) honours the conditions on PUT but ignores If-Match
// on DELETE, and MinIO is a Go binary in no registry this machine reaches: this proxy is what runs
// the s3 backend's conditional DELETE, and its reading of the answers, against a server. Checks
// and writes of one key are serialised, so a condition and the write it guards are atomic, as on
// S3. Everything else passes through untouched.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ConditionalS3Proxy {
  endpoint: string;
  /** Conditional requests answered 412 or 404 for an unmet condition. */
  refused: number;
  stop(): Promise<void>;
}

interface Answer {
  status: number;
  headers: http.OutgoingHttpHeaders;
  body: Buffer;
}

export async function startConditionalS3Proxy(upstream: string): Promise<ConditionalS3Proxy> {
  const target = new URL(upstream);
  const locks = new Map<string, Promise<void>>();
  const state = { refused: 0 };

  const forward = (req: http.IncomingMessage, body: Buffer, method = req.method!): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { ...req.headers, host: target.host };
      delete headers['if-none-match'];
      delete headers['if-match'];
      if (method === 'HEAD') {
        delete headers['content-length'];
        delete headers['content-md5'];
      }
      const out = http.request({ host: target.hostname, port: target.port, method, path: req.url, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      out.on('error', reject);
      out.end(method === 'HEAD' ? undefined : body);
    });

  const server = http.createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      const ifNoneMatch = req.headers['if-none-match'];
      const ifMatch = req.headers['if-match'];
      const conditional = (req.method === 'PUT' || req.method === 'DELETE') && (ifNoneMatch !== undefined || ifMatch !== undefined) && !/[?&](uploadId|partNumber)=/.test(req.url ?? '');
      const answer = conditional ? await serialised(req.url!.split('?')[0]!, () => guarded(req, body, ifNoneMatch, ifMatch)) : await forward(req, body);
      const { 'transfer-encoding': _chunked, connection: _connection, ...headers } = answer.headers;
      res.writeHead(answer.status, { ...headers, 'content-length': String(answer.body.length) }).end(req.method === 'HEAD' ? undefined : answer.body);
    })().catch((err: unknown) => res.writeHead(500).end(String(err)));
  });

  async function guarded(req: http.IncomingMessage, body: Buffer, ifNoneMatch: string | undefined, ifMatch: string | undefined) {
    const head = await forward(req, body, 'HEAD');
    const etag = head.status === 200 ? String(head.headers.etag ?? '') : null;
    if (ifMatch !== undefined && etag === null) return refuse(404, 'NoSuchKey', 'The specified key does not exist.');
    // AWS compares ETags with or without their quotes (the s3 backend sends them bare).
    const unmet = (ifNoneMatch === '*' && etag !== null) || (ifMatch !== undefined && bare(ifMatch) !== bare(etag ?? ''));
    if (unmet) return refuse(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
    return forward(req, body);
  }

  const bare = (etag: string) => etag.replace(/^"(.*)"$/, '$1');

  function refuse(status: number, code: string, message: string): Answer {
    state.refused++;
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
    return { status, headers: { 'content-type': 'application/xml' }, body: Buffer.from(xml) };
  }

  async function serialised<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = locks.get(key) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    const chained = previous.then(() => mine);
    locks.set(key, chained);
    await previous;
    try {
      return await fn();
    } finally {
      done();
      if (locks.get(key) === chained) locks.delete(key);
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get refused() {
      return state.refused;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
