// The explorer's side of the registry, in process on the example package set: its pages (with a
// strict Content-Security-Policy, no inline code, everything escaped), its assets (hashed names,
// cached for good, gzip), and the image API (GET /api/v1/images[/<name>:<tag>]) against what a
// pull serves: layer digests, sizes, diffIds, store paths and shared runtimes.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { gunzipSync } from 'node:zlib';
import { startStandInRegistry as startRegistry, type StandInRegistry as TestRegistry } from '../helpers/registry.js';
import { CONTENT_SECURITY_POLICY } from '../../src/registry/explorer.js';
import type { ImageDetails, RecentImagesResponse } from '../../src/service/explorer-types.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';
import { decodeRecord, encodeRecord } from '../../src/builder/records.js';

type Details = ImageDetails;

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  return ((await res.json()) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
}

describe('the explorer: pages, assets and the image API', () => {
  let r: TestRegistry;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-explorer-'));
    // busybox (every example package's interpreter) and zlib are the package set's runtimes.
    const popularity = path.join(dir, 'popularity.json');
    await writeFile(popularity, JSON.stringify({ 'busybox-static': 5000, 'zlib-1.3.1': 3000, 'openssl-3.0.14': 200, 'hello-2.12.1': 1 }));
    r = await startRegistry({ NIX_POPULARITY_URL: popularity });
  });
  after(async () => {
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('/ carries a strict CSP, nosniff, no inline script or style, and the hashed assets', async () => {
    const res = await fetch(`${r.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/html; charset=utf-8/);
    const csp = res.headers.get('content-security-policy')!;
    assert.equal(csp, CONTENT_SECURITY_POLICY);
    for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'", "frame-ancestors 'none'"]) assert.ok(csp.split('; ').includes(directive), directive);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*|https?:/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const html = await res.text();
    // Every script is an external file of this origin; no inline style either.
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    assert.equal(scripts.length, 1);
    assert.match(scripts[0]![1]!, /src="\/assets\/explorer\.[0-9a-f]{16}\.js"/);
    assert.equal(scripts[0]![2], '');
    assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=|javascript:/i);
    assert.doesNotMatch(html, /https?:\/\/(?!127\.0\.0\.1)/, 'nothing from another origin');
    // The index page's content is kept: how to pull, the package source.
    assert.match(html, /Pull an image/);
    assert.match(html, /Package source/);
    assert.match(html, /<div id="app"><\/div>/);
  });

  test('assets: content-hashed, immutable, ETag and 304, gzip when accepted; unknown ones 404', async () => {
    const html = await (await fetch(`${r.url}/`)).text();
    const paths = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    assert.deepEqual(paths.map((p) => p.replace(/\.[0-9a-f]{16}\./, '.*.')).sort(), ['/assets/explorer.*.css', '/assets/explorer.*.js', '/assets/favicon.*.svg']);
    const types: Record<string, RegExp> = { js: /^text\/javascript/, css: /^text\/css/, svg: /^image\/svg\+xml/ };
    for (const p of paths) {
      // fetch() asks for gzip and inflates it; the hash in the name is of the plain bytes.
      const res = await fetch(`${r.url}${p}`);
      assert.equal(res.status, 200, p);
      assert.match(res.headers.get('content-type')!, types[p.split('.').at(-1)!]!, p);
      assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      const body = Buffer.from(await res.arrayBuffer());
      const hash = createHash('sha256').update(body).digest('hex');
      assert.ok(p.includes(`.${hash.slice(0, 16)}.`), `${p} is named by its content`);
      assert.equal(res.headers.get('etag'), `"${hash}"`);
      const again = await fetch(`${r.url}${p}`, { headers: { 'If-None-Match': `"${hash}"` } });
      assert.equal(again.status, 304);
    }
    const script = paths.find((p) => p.endsWith('.js'))!;
    const gz = await rawGet(`${r.url}${script}`, { 'Accept-Encoding': 'gzip' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    const plain = await rawGet(`${r.url}${script}`, {});
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.deepEqual(gunzipSync(gz.body), plain.body);
    assert.ok(plain.body.length < 64 * 1024, `the bundle is small (${plain.body.length} bytes)`);
    const missing = await fetch(`${r.url}/assets/explorer.0000000000000000.js`);
    assert.equal(missing.status, 404);
    assert.equal((await errorOf(missing)).code, 'NOT_FOUND');
  });

  test('an image that is not built is a 404 and nothing is built; bad names and tags are refused', async () => {
    const nixBefore = r.nix.stats.invocations;
    const buildsBefore = r.app.service.builder.buildsRun;
    const res = await fetch(`${r.url}/api/v1/images/shell/htop:latest`);
    assert.equal(res.status, 404);
    const err = await errorOf(res);
    assert.equal(err.code, 'MANIFEST_UNKNOWN');
    assert.match(err.message, /^shell\/htop:latest is not built yet/);
    assert.equal(r.app.service.builder.buildsRun, buildsBefore, 'looking never builds');
    assert.equal(r.nix.stats.invocations, nixBefore, 'looking runs no Nix');

    const badName = await fetch(`${r.url}/api/v1/images/Hello:latest`);
    assert.equal(badName.status, 400);
    assert.equal((await errorOf(badName)).code, 'NAME_INVALID');
    const badTag = await fetch(`${r.url}/api/v1/images/hello:-bad`);
    assert.equal(badTag.status, 404);
    assert.equal((await errorOf(badTag)).code, 'MANIFEST_UNKNOWN');
    const page = await fetch(`${r.url}/explore/%3Cscript%3E:latest`);
    assert.equal(page.status, 400);
  });

  test('after a pull: every layer as the manifest has it, with uncompressed sizes, store paths and shared runtimes', async () => {
    const pulled = await fetch(`${r.url}/v2/curl/hello/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
    assert.equal(pulled.status, 200);
    const manifestBytes = Buffer.from(await pulled.arrayBuffer());
    const manifest = JSON.parse(manifestBytes.toString()) as { config: { digest: string }; layers: Array<{ digest: string; size: number }> };
    const config = JSON.parse(Buffer.from(await (await fetch(`${r.url}/v2/curl/hello/blobs/${manifest.config.digest}`)).arrayBuffer()).toString()) as { rootfs: { diff_ids: string[] } };

    const nixBefore = r.nix.stats.invocations;
    // The name as spelled in any order is the same image.
    const res = await fetch(`${r.url}/api/v1/images/hello/curl:latest`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const d = (await res.json()) as Details;
    assert.equal(r.nix.stats.invocations, nixBefore);
    assert.equal(d.image, 'curl/hello:latest');
    assert.deepEqual(d.packages, ['cacert', 'curl', 'hello', 'iana-etc']);
    assert.equal(d.manifest.digest, pulled.headers.get('docker-content-digest'));
    assert.equal(d.config.digest, manifest.config.digest);
    assert.deepEqual(
      d.layers.map((l) => [l.digest, l.size]),
      manifest.layers.map((l) => [l.digest, l.size]),
    );
    assert.deepEqual(
      d.layers.map((l) => l.diffId),
      config.rootfs.diff_ids,
    );
    assert.deepEqual(
      d.layers.map((l) => l.kind),
      [...Array(d.layers.length - 1).fill('store-paths'), 'customisation'],
    );
    // Uncompressed sizes are those of the blobs' tar streams.
    for (const l of d.layers) {
      const blob = Buffer.from(await (await fetch(`${r.url}/v2/curl/hello/blobs/${l.digest}`)).arrayBuffer());
      assert.equal(sha256(blob), l.digest);
      assert.equal(gunzipSync(blob).length, l.uncompressedSize, `layer ${l.index}`);
    }
    assert.equal(d.totals.size, manifest.layers.reduce((s, l) => s + l.size, 0));
    assert.equal(d.totals.uncompressedSize, d.layers.reduce((s, l) => s + l.uncompressedSize!, 0));

    // Store paths: every path of the closure once, with its NAR size; the customisation layer links the packages.
    const storeLayers = d.layers.filter((l) => l.kind === 'store-paths');
    const all = storeLayers.flatMap((l) => l.storePaths!.map((p) => p.path));
    assert.equal(new Set(all).size, all.length);
    assert.equal(all.length, d.totals.storePaths);
    for (const l of storeLayers) {
      assert.equal(l.storePaths!.length, l.paths);
      for (const p of l.storePaths!) {
        assert.match(p.path, /^\/nix\/store\/[a-z0-9]{32}-/);
        assert.ok(p.narSize > 0, p.path);
      }
    }
    for (const name of ['busybox-static', 'zlib-1.3.1', 'openssl-3.0.14', 'curl-8.9.1', 'hello-2.12.1', 'nss-cacert-3.101', 'iana-etc-20240318']) {
      assert.ok(all.some((p) => p.endsWith(`-${name}`)), name);
    }
    const custom = d.layers.at(-1)!;
    assert.deepEqual(custom.storePaths, []);
    assert.equal(custom.links!.length, 4);
    assert.ok(custom.links!.some((p) => p.endsWith('-hello-2.12.1')));

    // Sharing: the layers holding busybox and zlib (popularity ≥ 5000 / 8) are shared runtimes; the rest not.
    const holding = (name: string) => storeLayers.find((l) => l.storePaths!.some((p) => p.path.endsWith(`-${name}`)))!;
    assert.equal(holding('busybox-static').runtime, 'busybox-static');
    assert.equal(holding('busybox-static').shared, true);
    assert.equal(holding('zlib-1.3.1').shared, true);
    assert.equal(holding('hello-2.12.1').shared, false);
    assert.equal(holding('hello-2.12.1').runtime, null);
    assert.equal(holding('openssl-3.0.14').popularity! >= 200, true);
    assert.equal(custom.shared, false);

    // The JSON documents, byte for byte, as JSON a browser shows.
    for (const [part, digest] of [
      ['manifest', d.manifest.digest],
      ['config', d.config.digest],
    ] as const) {
      const doc = await fetch(`${r.url}${d.links[part]}`);
      assert.equal(doc.status, 200, part);
      assert.equal(doc.headers.get('content-type'), 'application/json');
      assert.equal(doc.headers.get('docker-content-digest'), digest);
      assert.equal(sha256(Buffer.from(await doc.arrayBuffer())), digest, part);
    }
    assert.deepEqual(Buffer.from(await (await fetch(`${r.url}${d.links.manifest}`)).arrayBuffer()), manifestBytes);
    const docker = await fetch(`${r.url}${d.links.dockerManifest}`);
    assert.equal(JSON.parse(await docker.text()).mediaType, MEDIA_TYPES.dockerManifest);
    assert.equal(d.links.registryManifest, `/v2/curl/hello/manifests/${d.manifest.digest}`);

    // The explore page is the shell the script fills, with the same policy.
    const page = await fetch(`${r.url}/explore/curl/hello:latest`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
    const html = await page.text();
    assert.match(html, /<body data-view="explore">/);
    assert.match(html, /<h1 class="image-title">curl\/hello:latest<\/h1>/);
  });

  test('what images share: the layers two manifests both list, the bytes a client that has one skips, the most shared layers', async () => {
    const manifestOf = async (name: string) => {
      const res = await fetch(`${r.url}/v2/${name}/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
      assert.equal(res.status, 200);
      return (await res.json()) as { layers: Array<{ digest: string; size: number }> };
    };
    const shell = await manifestOf('shell/hello');
    const curl = await manifestOf('curl/hello');
    const hello = await manifestOf('hello');
    // From the manifests alone: what curl/hello has in common with each of the others.
    const digests = (m: typeof curl) => new Set(m.layers.map((l) => l.digest));
    const inShell = digests(shell);
    const inHello = digests(hello);
    const common = curl.layers.filter((l) => inShell.has(l.digest) || inHello.has(l.digest));
    assert.ok(common.length >= 2, 'the example images share layers (busybox, cacert…)');
    assert.ok(common.length < curl.layers.length, 'and not all of them');

    // The name in any order is the same image, and the page's heading is canonical.
    const d = (await (await fetch(`${r.url}/api/v1/images/hello/curl:latest`)).json()) as Details;
    const s = d.sharing;
    assert.equal(s.compared, 2);
    assert.deepEqual(
      s.layers.map((l) => [l.digest, l.size, l.index]),
      common.map((l) => [l.digest, l.size, curl.layers.indexOf(l) + 1]),
    );
    for (const l of s.layers) {
      assert.deepEqual([...l.images].sort(), ['hello:latest', 'shell/hello:latest'].filter((i) => (i === 'hello:latest' ? inHello : inShell).has(l.digest)));
    }
    assert.equal(s.totalBytes, curl.layers.reduce((n, l) => n + l.size, 0));
    assert.equal(s.skippedBytes, common.reduce((n, l) => n + l.size, 0));
    const withHello = curl.layers.filter((l) => inHello.has(l.digest));
    assert.deepEqual(
      s.images.find((i) => i.image === 'hello:latest'),
      { image: 'hello:latest', name: 'hello', tag: 'latest', layers: withHello.length, bytes: withHello.reduce((n, l) => n + l.size, 0) },
    );
    assert.ok(s.layers.some((l) => l.label === 'busybox-static'), JSON.stringify(s.layers.map((l) => l.label)));
    const page = await (await fetch(`${r.url}/explore/hello/curl:latest`)).text();
    assert.match(page, /<h1 class="image-title">curl\/hello:latest<\/h1>/);

    // The front page's most shared layers: in all three, first; each at least in two.
    const { sharedLayers } = (await (await fetch(`${r.url}/api/v1/images`)).json()) as RecentImagesResponse;
    const everywhere = curl.layers.filter((l) => inShell.has(l.digest) && inHello.has(l.digest)).map((l) => l.digest);
    assert.ok(everywhere.length >= 1);
    assert.deepEqual(sharedLayers.slice(0, everywhere.length).map((l) => l.digest).sort(), [...everywhere].sort());
    for (const l of sharedLayers) {
      const holders = [['curl/hello:latest', curl], ['shell/hello:latest', shell], ['hello:latest', hello]] as const;
      assert.deepEqual([...l.images].sort(), holders.filter(([, m]) => digests(m).has(l.digest)).map(([n]) => n).sort(), l.digest);
      assert.ok(l.images.length >= 2);
    }
    // Only images the client may pull are compared with or named (access.ts mayPull decides).
    const built = await r.app.service.findImage('curl/hello', 'latest');
    const hidden = r.app.service.recent.sharing(built, (name) => name !== 'hello');
    assert.equal(hidden.compared, 1);
    assert.ok(hidden.layers.length > 0 && hidden.layers.every((l) => !l.images.includes('hello:latest')));
    assert.ok(r.app.service.recent.sharedLayers((name) => name !== 'hello').every((l) => !l.images.includes('hello:latest')));
  });

  test('recently built images: newest first, one entry per image, bounded', async () => {
    await fetch(`${r.url}/v2/hello/manifests/latest`);
    const res = await fetch(`${r.url}/api/v1/images`);
    assert.equal(res.status, 200);
    const { images } = (await res.json()) as { images: Array<{ image: string; manifestDigest: string; layers: number; compressedSize: number; uncompressedSize: number; built: boolean; at: string }> };
    assert.equal(images[0]!.image, 'hello:latest');
    assert.equal(images[0]!.built, true);
    const curl = images.find((i) => i.image === 'curl/hello:latest')!;
    const details = (await (await fetch(`${r.url}/api/v1/images/curl/hello:latest`)).json()) as Details;
    assert.equal(curl.manifestDigest, details.manifest.digest);
    assert.equal(curl.layers, details.layers.length);
    assert.equal(curl.compressedSize, details.totals.size);
    assert.equal(curl.uncompressedSize, details.totals.uncompressedSize);
    assert.equal(images.filter((i) => i.image === 'hello:latest').length, 1);

    const ring = r.app.service.recent;
    const built = r.app.service.builder;
    const hello = await built.find((await import('../../src/image/name.js')).parseImageName('hello'));
    for (let i = 0; i < ring.capacity + 5; i++) ring.add({ ...hello!, image: { ...hello!.image, tag: `t${i}` } });
    const list = ring.list();
    assert.equal(list.length, ring.capacity);
    assert.equal(list[0]!.image, `hello:t${ring.capacity + 4}`);
  });

  test('hostile text from outside (an error message, the Host header) is shown escaped', async () => {
    r.app.service.errors.add('evil:latest', '<script>window.pwned = 1</script><img src=x onerror=alert(1)>');
    const page = await rawGet(`${r.url}/`, { Host: '"><script>alert(2)</script>' });
    const html = page.body.toString();
    assert.doesNotMatch(html, /<script>window\.pwned|<img src=x|<script>alert\(2\)/);
    assert.match(html, /&lt;script&gt;window\.pwned = 1&lt;\/script&gt;&lt;img src=x onerror=alert\(1\)&gt;/);
    assert.match(html, /&quot;&gt;&lt;script&gt;alert\(2\)&lt;\/script&gt;\/shell\/hello/);
    assert.equal(page.headers['content-security-policy'], CONTENT_SECURITY_POLICY);
  });
});

describe('the explorer behind authentication: open exactly where pulls are', () => {
  let dir: string;
  let htpasswd: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-explorer-auth-'));
    htpasswd = path.join(dir, 'htpasswd');
    execFileSync('htpasswd', ['-B', '-b', '-c', htpasswd, 'alice', 'wonderland']);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const assetOf = async (url: string, auth: Record<string, string>) => /src="(\/assets\/[^"]+)"/.exec(await (await fetch(`${url}/`, { headers: auth })).text())![1]!;

  test('htpasswd: pages, assets and the image API ask for the password (the browser prompts), and serve with it', async () => {
    const r = await startRegistry({ NIXERY_HTPASSWD: htpasswd });
    try {
      const auth = { Authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` };
      const script = await assetOf(r.url, auth);
      for (const p of ['/', '/explore/hello:latest', script, '/api/v1/images', '/api/v1/images/hello:latest']) {
        const res = await fetch(`${r.url}${p}`);
        assert.equal(res.status, 401, p);
        assert.equal(res.headers.get('www-authenticate'), 'Basic realm="nixery-ts", charset="UTF-8"', p);
        const ok = await fetch(`${r.url}${p}`, { headers: auth });
        assert.equal(ok.status, p === '/api/v1/images/hello:latest' ? 404 : 200, p);
      }
    } finally {
      await r.close();
    }
  });

  test('anonymous pulls: the explorer is open too', async () => {
    const r = await startRegistry({ NIXERY_HTPASSWD: htpasswd, NIXERY_ANONYMOUS_PULL: 'true' });
    try {
      const script = await assetOf(r.url, {});
      for (const p of ['/', '/explore/hello:latest', script, '/api/v1/images']) assert.equal((await fetch(`${r.url}${p}`)).status, 200, p);
    } finally {
      await r.close();
    }
  });
});

test('images recorded before the explorer: served with what their records have, the rest null, and no rebuild', async () => {
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-explorer-legacy-'));
  try {
    const first = await startRegistry({}, { storagePath });
    const pulled = await fetch(`${first.url}/v2/hello/manifests/latest`);
    assert.equal(pulled.status, 200);
    const digest = pulled.headers.get('docker-content-digest');
    await first.close();
    // Rewrite the image's record as a version without the new fields wrote it.
    const dir = path.join(storagePath, 'manifests');
    const files = await readdir(dir);
    assert.equal(files.length, 1);
    const decoded = decodeRecord<{ layers: Array<Record<string, unknown>> }>(await readFile(path.join(dir, files[0]!)));
    assert.ok(decoded.ok);
    const record = decoded.record;
    record.layers = record.layers.map(({ digest, size, diffId, paths }) => ({ digest, size, diffId, paths }));
    await writeFile(path.join(dir, files[0]!), encodeRecord(record));

    const second = await startRegistry({}, { storagePath });
    try {
      const nixBefore = second.nix.stats.invocations;
      const res = await fetch(`${second.url}/api/v1/images/hello:latest`);
      assert.equal(res.status, 200);
      const d = (await res.json()) as Details;
      assert.equal(d.manifest.digest, digest);
      assert.equal(second.nix.stats.invocations, nixBefore, 'served from the record, nothing rebuilt');
      for (const l of d.layers) {
        assert.equal(l.uncompressedSize, null);
        assert.equal(l.storePaths, null);
        assert.equal(l.runtime, null);
        assert.equal(l.shared, false);
        assert.ok(l.paths > 0);
      }
      assert.equal(d.totals.uncompressedSize, null);
      assert.equal(d.layers.at(-1)!.kind, 'customisation');
    } finally {
      await second.close();
    }
  } finally {
    await rm(storagePath, { recursive: true, force: true });
  }
});

/** A GET with exactly these headers (fetch adds Accept-Encoding and may not send Host). */
async function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string | undefined>; body: Buffer }> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers as Record<string, string | undefined>, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}
