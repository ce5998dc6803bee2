// The wrong protocol on a port: plain HTTP sent to the HTTPS port gets a one-line 400 saying to
// use https (as nginx answers), not a closed connection that docker reports as "EOF"; HTTPS still
// works on that port. On a plain port, the TLS handshake docker, podman and skopeo try first (then
// falling back to plain HTTP) is counted under its own reason, not as a protocol error.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { startStandInRegistry as startRegistry, type StandInRegistry as TestRegistry } from '../helpers/registry.js';
import { makeTestPki } from '../helpers/tls.js';
import { parsePrometheusText } from '../helpers/prometheus.js';

const run = promisify(execFile);

/** Sends raw bytes and collects what the server answers until it closes. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
    socket.write(request);
  });
}

/** nixery_http_protocol_errors_total by reason, from /metrics (over HTTPS trusting `ca`). */
async function protocolErrors(url: string, ca?: string): Promise<Record<string, number>> {
  const text = ca
    ? await new Promise<string>((resolve, reject) => {
        https
          .get(`${url}/metrics`, { ca }, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve(body));
          })
          .on('error', reject);
      })
    : await (await fetch(`${url}/metrics`)).text();
  const family = parsePrometheusText(text).get('nixery_http_protocol_errors_total');
  const out: Record<string, number> = {};
  for (const sample of family?.samples ?? []) out[sample.labels.reason ?? ''] = sample.value;
  return out;
}

describe('HTTPS port', () => {
  let dir: string;
  let r: TestRegistry;
  let ca: string;
  let port: number;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-tls-ports-'));
    const pki = makeTestPki(dir);
    ca = readFileSync(pki.caCert, 'utf8');
    r = await startRegistry({ NIXERY_TLS_CERT: pki.serverCert, NIXERY_TLS_KEY: pki.serverKey });
    port = Number(new URL(r.url).port);
  });
  after(async () => {
    await r.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('plain HTTP gets a 400 saying to use https, and the connection is closed', async () => {
    const answer = await raw(port, 'GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    assert.match(answer, /^HTTP\/1.1 400 Bad Request\r\n/);
    assert.match(answer, /Connection: close\r\n/);
    const body = answer.slice(answer.indexOf('\r\n\r\n') + 4);
    assert.equal(body.split('\n').filter(Boolean).length, 1, 'one line');
    assert.match(body, /use https:\/\//);
    // curl, a real client, shows the status and the line.
    const curl = await run('curl', ['-sS', '-w', '\n%{http_code}', `http://127.0.0.1:${port}/v2/`]);
    const lines = curl.stdout.trim().split('\n');
    assert.equal(lines.at(-1), '400');
    assert.match(lines[0]!, /use https:\/\//);
  });

  test('HTTPS on the same port still works, and plain HTTP counts as http_on_tls_port', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      https.get(`https://127.0.0.1:${port}/v2/`, { ca }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      }).on('error', reject);
    });
    assert.equal(status, 200);
    const curl = await run('curl', ['-sS', '--cacert', path.join(dir, 'ca.crt'), '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${port}/v2/`]);
    assert.equal(curl.stdout, '200');
    const counts = await protocolErrors(`https://127.0.0.1:${port}`, ca);
    assert.ok((counts.http_on_tls_port ?? 0) >= 2, JSON.stringify(counts));
  });
});

describe('plain port', () => {
  let r: TestRegistry;
  before(async () => {
    r = await startRegistry();
  });
  after(() => r.close());

  test('a TLS handshake (the probe of docker, podman and skopeo) counts as tls_on_plain_port, not as a protocol error', async () => {
    const port = Number(new URL(r.url).port);
    const before = await protocolErrors(r.url);
    // Node's TLS client and skopeo's (Go's): each sends a ClientHello, gets no TLS answer.
    const handshake = await new Promise<string>((resolve) => {
      const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      socket.on('secureConnect', () => resolve('connected'));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    assert.notEqual(handshake, 'connected');
    // skopeo with --tls-verify=false tries HTTPS first, then plain HTTP: listing tags works.
    const skopeo = await run('skopeo', ['list-tags', '--tls-verify=false', `docker://127.0.0.1:${port}/hello`], { timeout: 60_000 });
    assert.match(skopeo.stdout, /"latest"/);
    const after = await protocolErrors(r.url);
    assert.ok((after.tls_on_plain_port ?? 0) - (before.tls_on_plain_port ?? 0) >= 2, JSON.stringify(after));
    assert.equal(after.http ?? 0, before.http ?? 0, 'no protocol error counted');
    assert.equal(r.registry.metrics().nixery_http_protocol_errors_total, 0);
    assert.equal(r.registry.metrics().nixery_http_errors_total ?? 0, 0, 'no request counted as an error');
  });
});
