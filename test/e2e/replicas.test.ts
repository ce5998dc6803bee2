// Three registry replicas sharing one S3 bucket (a real S3-compatible server on loopback) behind
// nginx (round robin). containerd pulls through the load balancer and follows the 307s to
// signed URLs; cold builds on every replica give the same digests; what one replica built is
// served by another; a replica stopped during a pull does not fail the client's retry.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/net.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { metric } from '../helpers/registry.js';
import { startContainerd, ctrRun, type Containerd } from '../helpers/containerd.js';
import { startS3Server, S3RVER_CREDENTIALS, type S3TestServer } from '../storage/s3-server.js';

const CLI = path.resolve('dist/src/cli.js');

async function waitUp(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`process exited: ${log()}`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > until) throw new Error(`${url} not up: ${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Replica {
  port: number;
  url: string;
  child: ChildProcess;
}

function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

describe('replicas sharing one bucket behind a load balancer', () => {
  let s3: S3TestServer;
  let dir: string;
  let replicas: Replica[] = [];
  let nginx: ChildProcess;
  let lb: string;
  let c: Containerd;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-replicas-'));
    s3 = await startS3Server();
    const bucket = await s3.createBucket();
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      let log = '';
      const child = spawn('node', [CLI, 'serve'], {
        env: {
          ...process.env,
          NIX_CONFIG: 'substituters =',
          NIXERY_PKGS_PATH: EXAMPLE_PKGS,
          NIXERY_STORAGE_BACKEND: 's3',
          S3_BUCKET: bucket,
          S3_ENDPOINT: s3.endpoint,
          S3_FORCE_PATH_STYLE: 'true',
          AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
          PORT: String(port),
          NIXERY_HOST: '127.0.0.1',
          NIXERY_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-5000)));
      child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-5000)));
      const url = `http://127.0.0.1:${port}`;
      await waitUp(`${url}/v2/`, child, () => log);
      replicas.push({ port, url, child });
    }
    const lbPort = await freePort();
    await writeFile(
      path.join(dir, 'nginx.conf'),
      `user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream nixery { ${replicas.map((r) => `server 127.0.0.1:${r.port} max_fails=1 fail_timeout=5s;`).join(' ')} }
  server {
    listen 127.0.0.1:${lbPort};
    location / {
      proxy_pass http://nixery;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_read_timeout 300s;
      proxy_next_upstream error timeout http_502;
    }
  }
}
`,
    );
    nginx = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let nginxLog = '';
    nginx.stderr!.on('data', (d: Buffer) => (nginxLog += d.toString()));
    lb = `127.0.0.1:${lbPort}`;
    await waitUp(`http://${lb}/v2/`, nginx, () => nginxLog);
    c = await startContainerd();
  });

  after(async () => {
    await c?.stop();
    if (nginx) await stop(nginx, 'SIGQUIT');
    await Promise.all(replicas.map((r) => stop(r.child)));
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('the same cold image requested at once through every replica gives identical digests', async () => {
    const answers = await Promise.all(
      replicas.map(async (r) => {
        const res = await fetch(`${r.url}/v2/shell/hello/manifests/latest`);
        assert.equal(res.status, 200, await res.clone().text());
        return { digest: res.headers.get('docker-content-digest'), body: await res.text() };
      }),
    );
    assert.equal(new Set(answers.map((a) => a.digest)).size, 1);
    assert.equal(new Set(answers.map((a) => a.body)).size, 1);
  });

  test('a manifest built by one replica is served by digest, and by tag without building, by the others', async () => {
    const [first, second, third] = replicas as [Replica, Replica, Replica];
    const res = await fetch(`${first.url}/v2/git/manifests/latest`);
    assert.equal(res.status, 200);
    const bytes = await res.text();
    const digest = res.headers.get('docker-content-digest')!;
    for (const r of [second, third]) {
      const byDigest = await fetch(`${r.url}/v2/git/manifests/${digest}`);
      assert.equal(byDigest.status, 200);
      assert.equal(await byDigest.text(), bytes);
      const before = await metric(r.url, 'nixery_nix_invocations_total');
      const byTag = await fetch(`${r.url}/v2/git/manifests/latest`);
      assert.equal(await byTag.text(), bytes);
      assert.equal(await metric(r.url, 'nixery_nix_invocations_total'), before, 'no Nix ran on the other replica');
    }
  });

  test('blob GETs answer 307 to a signed URL; Range and HEAD are answered directly', async () => {
    const m = JSON.parse(await (await fetch(`http://${lb}/v2/shell/hello/manifests/latest`)).text()) as { layers: Array<{ digest: string; size: number }> };
    const layer = m.layers[0]!;
    const res = await fetch(`http://${lb}/v2/shell/hello/blobs/${layer.digest}`, { redirect: 'manual' });
    assert.equal(res.status, 307);
    assert.equal(res.headers.get('docker-content-digest'), layer.digest);
    const signed = res.headers.get('location')!;
    assert.ok(signed.startsWith(s3.endpoint), signed);
    // Signing is not repeated for every request: a fresh URL is reused (same replica, same URL).
    const replica = replicas[0]!;
    const first = (await fetch(`${replica.url}/v2/shell/hello/blobs/${layer.digest}`, { redirect: 'manual' })).headers.get('location');
    const second = (await fetch(`${replica.url}/v2/shell/hello/blobs/${layer.digest}`, { redirect: 'manual' })).headers.get('location');
    assert.equal(first, second);
    const fetched = await fetch(signed);
    assert.equal(fetched.status, 200);
    assert.equal((await fetched.arrayBuffer()).byteLength, layer.size);
    const head = await fetch(`http://${lb}/v2/shell/hello/blobs/${layer.digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200, 'HEAD follows the redirect to a signed HEAD URL');
    assert.equal(Number(head.headers.get('content-length')), layer.size);
    const ranged = await fetch(`http://${lb}/v2/shell/hello/blobs/${layer.digest}`, { headers: { Range: 'bytes=0-9' }, redirect: 'manual' });
    assert.equal(ranged.status, 206);
    assert.equal((await ranged.arrayBuffer()).byteLength, 10);
  });

  test('containerd pulls through the load balancer, following redirects, and runs the image', async () => {
    const ref = `${lb}/shell/hello:latest`;
    await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
    assert.equal((await ctrRun(c, ref, ['hello'])).trim(), 'Hello, world!');
  });

  test('stopping a replica during a pull does not fail the client retry', async () => {
    const ref = `${lb}/shell/jq:latest`;
    const pull = c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
    await new Promise((r) => setTimeout(r, 150));
    await stop(replicas[1]!.child, 'SIGKILL');
    try {
      await pull;
    } catch {
      // The request in flight on the stopped replica may fail; the client's retry must not.
      await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
    }
    const out = await ctrRun(c, ref, ['bash', '-c', 'echo ok']);
    assert.equal(out.trim(), 'ok');
  });
});
