// Package sources through the registry, with real git, real Nix and the example package set:
// a git source that becomes unreachable keeps serving what was built (also after a restart on
// the same storage) while new images get 503; every source kind answers 404 for tags it does
// not have; a channel-style source honours channel names and commits; tags/list pages as the
// distribution spec says; `latest` over git's HTTP protocol builds (Nix 2.8 needs HEAD's branch).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { commitGreeting, git, initRepo } from '../helpers/git.js';
import { collectGarbage } from '../../src/builder/gc.js';

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Pulled {
  status: number;
  digest: string | null;
  revision?: string;
  source?: string;
  body: string;
  headers: Headers;
}

async function pull(url: string, name: string, tag: string): Promise<Pulled> {
  const res = await fetch(`${url}/v2/${name}/manifests/${tag}`);
  const body = await res.text();
  const out: Pulled = { status: res.status, digest: res.headers.get('docker-content-digest'), body, headers: res.headers };
  if (res.status === 200) {
    const m = JSON.parse(body) as { config: { digest: string } };
    const config = JSON.parse(await (await fetch(`${url}/v2/${name}/blobs/${m.config.digest}`)).text()) as { config: { Labels: Record<string, string> } };
    out.revision = config.config.Labels['org.opencontainers.image.revision'];
    out.source = config.config.Labels['dev.nixery.source'];
  }
  return out;
}

function errorOf(p: Pulled): { code: string; message: string } {
  return (JSON.parse(p.body) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('a git source that becomes unreachable after a build', () => {
  let dir: string;
  let repo: string;
  let storagePath: string;
  let r: TestRegistry | undefined;
  let first: string;
  const built = new Map<string, string>();
  const env = (): Record<string, string> => ({ NIXERY_PKGS_PATH: '', NIXERY_PKGS_REPO: `file://${repo}`, NIXERY_RESOLVE_TTL: '1' });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-outage-'));
    repo = path.join(dir, 'pkgs');
    first = await initRepo(repo, EXAMPLE_PKGS);
    await git(repo, 'tag', 'v1');
    storagePath = path.join(dir, 'storage');
    await mkdir(storagePath);
    r = await startRegistry(env(), { storagePath });
  });
  after(async () => {
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const tags = () => ['latest', 'main', 'v1', first];

  test('images are built by tag while the source answers', async () => {
    for (const tag of tags()) {
      const p = await pull(r!.url, 'hello', tag);
      assert.equal(p.status, 200, p.body);
      assert.equal(p.revision, first);
      built.set(tag, p.digest!);
    }
  });

  test('unreachable: built images are still served by tag; a new image is 503 naming the source and the cause; /readyz and / say so', async () => {
    await rename(repo, `${repo}-away`);
    const ready = await until('the source check to fail', async () => {
      const res = await fetch(`${r!.url}/readyz`);
      const report = (await res.json()) as { ready: boolean; degraded?: boolean; checks: Record<string, { ok: boolean; error?: string }> };
      return report.checks.source?.ok === false ? { status: res.status, report } : undefined;
    });
    // Still ready: taking the replica out would serve nothing at all.
    assert.equal(ready.status, 200);
    assert.equal(ready.report.ready, true);
    assert.equal(ready.report.degraded, true);
    assert.match(ready.report.checks.source!.error!, new RegExp(`cannot list the references of file://${repo}: .*\\(failing since `));
    const index = await (await fetch(`${r!.url}/`)).text();
    assert.match(index, /class="source-failure"><strong>The package source cannot be reached/);
    assert.ok(index.includes(`cannot list the references of file://${repo}`));

    await sleep(1500); // past the TTL: the pins have expired
    for (const tag of tags()) {
      const p = await pull(r!.url, 'hello', tag);
      assert.equal(p.status, 200, `${tag}: ${p.body}`);
      assert.equal(p.digest, built.get(tag), tag);
      const head = await fetch(`${r!.url}/v2/hello/manifests/${tag}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
    }
    const fresh = await pull(r!.url, 'jq', 'latest');
    assert.equal(fresh.status, 503, fresh.body);
    assert.equal(errorOf(fresh).code, 'UNAVAILABLE');
    assert.match(errorOf(fresh).message, new RegExp(`new images cannot be built .*cannot list the references of file://${repo}: .*does not appear to be a git repository`));
    assert.ok(fresh.headers.get('retry-after'));
    const metrics = await (await fetch(`${r!.url}/metrics`)).text();
    assert.match(metrics, /^nixery_source_failing 1$/m);
  });

  test('garbage collection leaves the persisted pins alone', async () => {
    const pinsBefore = await listKeys(r!, 'pins');
    assert.ok(pinsBefore.length >= 3, pinsBefore.join(' '));
    await collectGarbage(r!.app.storage, { graceSeconds: 0, dryRun: false });
    assert.deepEqual(await listKeys(r!, 'pins'), pinsBefore);
  });

  test('after a restart on the same storage, still unreachable: the same images by tag, without Nix; new images 503', async () => {
    await r!.close();
    r = undefined;
    r = await startRegistry(env(), { storagePath });
    const nixRuns = r.app.metrics.nix.invocations;
    for (const tag of tags()) {
      const p = await pull(r.url, 'hello', tag);
      assert.equal(p.status, 200, `${tag}: ${p.body}`);
      assert.equal(p.digest, built.get(tag), tag);
    }
    assert.equal(r.app.metrics.nix.invocations, nixRuns, 'no Nix ran');
    const fresh = await pull(r.url, 'jq', 'main');
    assert.equal(fresh.status, 503, fresh.body);
    assert.match(errorOf(fresh).message, /new images cannot be built/);
    const unknown = await pull(r.url, 'hello', 'never-pinned');
    assert.equal(unknown.status, 503, 'a tag never pinned cannot be told from a missing one');
  });

  test('the source back: the failure clears', async () => {
    await rename(`${repo}-away`, repo);
    await until('the source check to pass', async () => {
      const report = (await (await fetch(`${r!.url}/readyz`)).json()) as { checks: Record<string, { ok: boolean }> };
      return report.checks.source?.ok ? true : undefined;
    });
    const index = await (await fetch(`${r!.url}/`)).text();
    assert.doesNotMatch(index, /class="source-failure"/);
  });
});

async function listKeys(r: TestRegistry, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of r.app.storage.list(prefix)) keys.push(o.key);
  return keys.sort();
}

describe('tags a source does not have are 404 MANIFEST_UNKNOWN', () => {
  test('path source: only latest', async () => {
    const r = await startRegistry();
    try {
      for (const tag of ['missing-abc123', 'main', 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00']) {
        const p = await pull(r.url, 'hello', tag);
        assert.equal(p.status, 404, `${tag}: ${p.body}`);
        assert.equal(errorOf(p).code, 'MANIFEST_UNKNOWN');
        assert.match(errorOf(p).message, /serves only latest/);
        assert.equal((await fetch(`${r.url}/v2/hello/manifests/${tag}`, { method: 'HEAD' })).status, 404);
      }
      const list = await (await fetch(`${r.url}/v2/hello/tags/list`)).json();
      assert.deepEqual(list, { name: 'hello', tags: ['latest'] });
    } finally {
      await r.close();
    }
  });

  test('git source: a name that is no branch, tag or commit', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nixery-git-404-'));
    const repo = path.join(dir, 'pkgs');
    await initRepo(repo, EXAMPLE_PKGS);
    const r = await startRegistry({ NIXERY_PKGS_PATH: '', NIXERY_PKGS_REPO: `file://${repo}` });
    try {
      const p = await pull(r.url, 'hello', 'missing-abc123');
      assert.equal(p.status, 404, p.body);
      assert.equal(errorOf(p).code, 'MANIFEST_UNKNOWN');
      assert.match(errorOf(p).message, /no branch, tag or commit named missing-abc123/);
    } finally {
      await r.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a channel-style source: a local nixpkgs repository and tarballs', () => {
  let dir: string;
  let r: TestRegistry;
  const commits: Record<string, string> = {};

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-channel-'));
    const repo = path.join(dir, 'nixpkgs');
    commits.test = await initRepo(repo, EXAMPLE_PKGS);
    await git(repo, 'branch', 'nixos-test');
    commits.next = await commitGreeting(repo, 'Hello from nixos-next!');
    await git(repo, 'branch', 'nixos-next');
    // On no channel branch: only its commit names it.
    commits.loose = await commitGreeting(repo, 'Hello from a commit!');
    await git(repo, 'branch', 'staging');
    const tarballs = path.join(dir, 'tarballs');
    await mkdir(tarballs);
    for (const rev of Object.values(commits)) {
      await execFileP('git', ['-C', repo, 'archive', '--format=tar.gz', `--prefix=nixpkgs-${rev}/`, '-o', path.join(tarballs, `${rev}.tar.gz`), rev]);
    }
    r = await startRegistry({
      NIXERY_PKGS_PATH: '',
      NIXERY_CHANNEL: 'nixos-test',
      NIXERY_NIXPKGS_REPO: `file://${repo}`,
      NIXERY_NIXPKGS_TARBALL: `file://${tarballs}/{rev}.tar.gz`,
    });
  });
  after(async () => {
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('latest is the configured channel; a channel name is that channel; a commit is that commit', async () => {
    const latest = await pull(r.url, 'hello', 'latest');
    assert.equal(latest.status, 200, latest.body);
    assert.equal(latest.revision, commits.test);
    assert.equal(latest.source, `nixpkgs ${commits.test} (nixos-test)`);
    assert.equal((await pull(r.url, 'hello', 'nixos-test')).digest, latest.digest);

    const next = await pull(r.url, 'hello', 'nixos-next');
    assert.equal(next.status, 200, next.body);
    assert.equal(next.revision, commits.next);
    assert.notEqual(next.digest, latest.digest);

    const loose = await pull(r.url, 'hello', commits.loose!);
    assert.equal(loose.status, 200, loose.body);
    assert.equal(loose.revision, commits.loose);
    assert.equal(loose.source, `nixpkgs ${commits.loose}`);
    assert.notEqual(loose.digest, next.digest);
    // The commit's package set really is the one built: its greeting is in the image.
    const m = JSON.parse(loose.body) as { layers: Array<{ digest: string }> };
    const layers = await Promise.all(m.layers.map(async (l) => Buffer.from(await (await fetch(`${r.url}/v2/hello/blobs/${l.digest}`)).arrayBuffer())));
    const { gunzipSync } = await import('node:zlib');
    assert.ok(layers.some((l) => gunzipSync(l).includes('Hello from a commit!')));
  });

  test('anything else is 404: not a channel name, a channel that does not exist', async () => {
    for (const tag of ['missing-abc123', 'staging', 'nixos-nope']) {
      const p = await pull(r.url, 'hello', tag);
      assert.equal(p.status, 404, `${tag}: ${p.body}`);
      assert.equal(errorOf(p).code, 'MANIFEST_UNKNOWN');
    }
  });

  test('a commit that does not exist is 404 MANIFEST_UNKNOWN naming it (the request\'s error, not ours)', async () => {
    const commit = '0123456789abcdef0123456789abcdef01234567';
    const p = await pull(r.url, 'hello', commit);
    assert.equal(p.status, 404, p.body);
    assert.equal(errorOf(p).code, 'MANIFEST_UNKNOWN');
    assert.match(errorOf(p).message, new RegExp(`^manifest unknown: no nixpkgs commit ${commit} \\(nothing at file://.*/${commit}\\.tar\\.gz\\)$`));
  });

  test('tags/list: latest and the channels', async () => {
    assert.deepEqual(await (await fetch(`${r.url}/v2/hello/tags/list`)).json(), { name: 'hello', tags: ['latest', 'nixos-next', 'nixos-test'] });
  });
});

describe('tags/list pagination (n, last, Link)', () => {
  let dir: string;
  let r: TestRegistry;
  const all = ['b1', 'b2', 'b3', 'b4', 'b5', 'latest', 'main', 't1', 't2'];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-tags-'));
    const repo = path.join(dir, 'pkgs');
    await initRepo(repo, EXAMPLE_PKGS);
    for (const b of ['b1', 'b2', 'b3', 'b4', 'b5']) await git(repo, 'branch', b);
    await git(repo, 'tag', 't1');
    await git(repo, 'tag', '-a', 't2', '-m', 'annotated');
    // Not an OCI tag: cannot be asked for, so not listed.
    await git(repo, 'branch', 'feature/slash');
    r = await startRegistry({ NIXERY_PKGS_PATH: '', NIXERY_PKGS_REPO: `file://${repo}` });
  });
  after(async () => {
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const list = async (query: string) => {
    const res = await fetch(`${r.url}/v2/hello/tags/list${query}`);
    return { status: res.status, link: res.headers.get('link'), body: (await res.json()) as { name?: string; tags?: string[]; errors?: Array<{ code: string }> } };
  };

  test('without n: every tag, sorted, no Link', async () => {
    const page = await list('');
    assert.equal(page.status, 200);
    assert.deepEqual(page.body, { name: 'hello', tags: all });
    assert.equal(page.link, null);
  });

  test('n pages through everything by following Link; last is exclusive', async () => {
    const seen: string[] = [];
    let next: string | null = '?n=4';
    let pages = 0;
    while (next) {
      const page = await list(next);
      assert.equal(page.status, 200);
      assert.ok(page.body.tags!.length <= 4);
      seen.push(...page.body.tags!);
      pages++;
      if (page.link) {
        const m = /^<\/v2\/hello\/tags\/list(\?n=4&last=[^>]+)>; rel="next"$/.exec(page.link);
        assert.ok(m, page.link);
        next = m[1]!;
      } else {
        next = null;
      }
    }
    assert.deepEqual(seen, all);
    assert.equal(pages, 3);
    assert.deepEqual((await list('?n=2&last=b4')).body.tags, ['b5', 'latest']);
    assert.deepEqual((await list('?last=main')).body.tags, ['t1', 't2']);
    const end = await list('?n=5&last=t2');
    assert.deepEqual(end.body.tags, []);
    assert.equal(end.link, null);
    const exact = await list('?n=2&last=main');
    assert.deepEqual(exact.body.tags, ['t1', 't2']);
    assert.equal(exact.link, null, 'nothing after the last page');
  });

  test('n=0 is an empty list without Link; a bad n is 400 PAGINATION_NUMBER_INVALID', async () => {
    const zero = await list('?n=0');
    assert.deepEqual(zero.body.tags, []);
    assert.equal(zero.link, null);
    for (const bad of ['-1', 'abc', '1.5']) {
      const page = await list(`?n=${bad}`);
      assert.equal(page.status, 400, bad);
      assert.equal(page.body.errors![0]!.code, 'PAGINATION_NUMBER_INVALID');
    }
  });
});

describe('latest on a git source served over HTTP', () => {
  test('builds from the branch HEAD points to (Nix 2.8 would fetch master without it)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nixery-http-git-'));
    const work = path.join(dir, 'work');
    const commit = await initRepo(work, EXAMPLE_PKGS);
    const bare = path.join(dir, 'pkgs.git');
    await execFileP('git', ['clone', '-q', '--bare', work, bare]);
    await git(bare, 'update-server-info');
    // git's dumb HTTP protocol: the repository's files as they are.
    const server = http.createServer((req, res) => {
      const file = path.join(bare, path.normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/pkgs\.git\//, ''))));
      readFile(file).then(
        (data) => res.writeHead(200).end(data),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/pkgs.git`;
    const r = await startRegistry({ NIXERY_PKGS_PATH: '', NIXERY_PKGS_REPO: url });
    try {
      const p = await pull(r.url, 'hello', 'latest');
      assert.equal(p.status, 200, p.body);
      assert.equal(p.revision, commit);
      assert.equal(p.source, `git ${url} at ${commit} (HEAD, refs/heads/main)`);
    } finally {
      await r.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

