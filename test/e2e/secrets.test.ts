// A token in every URL setting, with every output grepped for it. `nixery serve` runs as a
// process with a distinct token in each of NIXERY_PKGS_REPO, NIXERY_NIXPKGS_REPO,
// NIXERY_NIXPKGS_TARBALL, NIX_POPULARITY_URL, S3_ENDPOINT and GCS_ENDPOINT; loopback servers
// require those tokens, so the real URLs must reach git, Nix and fetch. One package source and
// one storage backend are active per run, hence four runs: a git source (real builds, labels),
// a channel source whose repository and tarball fail (errors), s3 and gcs backends. Every byte
// that leaves the process (stdout, stderr, every HTTP status, header and body) must be free of
// the tokens, and the URLs must show up as `***` where they are shown.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { startS3Server, S3RVER_CREDENTIALS, type S3TestServer } from '../storage/s3-server.js';
import { startFakeGcs, type FakeGcs } from '../storage/gcs-server.js';

const execFileP = promisify(execFile);
const CLI = path.resolve('dist/src/cli.js');

/** One token per setting; each has a stem no other output could contain by chance. */
const TOKENS = {
  NIXERY_PKGS_REPO: 'pkgsRepoTOKEN/8f3a+1', // `/` and `+` are percent-encoded in the URL
  NIXERY_NIXPKGS_REPO: 'nixpkgsRepoTOKEN5b7c',
  NIXERY_NIXPKGS_TARBALL: 'tarballTOKEN2d9e',
  NIX_POPULARITY_URL: 'popularityTOKEN6a1f',
  S3_ENDPOINT: 's3EndpointTOKEN4c8b',
  GCS_ENDPOINT: 'gcsEndpointTOKEN9e2d',
} as const;
type UrlSetting = keyof typeof TOKENS;
const STEMS = Object.values(TOKENS).map((t) => t.slice(0, t.indexOf('TOKEN') + 'TOKEN'.length));

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function git(repo: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('git', ['-C', repo, '-c', 'user.email=t@example.org', '-c', 'user.name=test', ...args]);
  return stdout.trim();
}

/** A bare repository of `files`' contents on `branch`, ready for git's dumb HTTP protocol. */
async function bareRepo(dir: string, name: string, branch: string, files: string): Promise<{ bare: string; commit: string }> {
  const work = path.join(dir, `${name}-work`);
  await cp(files, work, { recursive: true });
  await execFileP('git', ['init', '-q', '-b', branch, work]);
  await git(work, 'add', '.');
  await git(work, 'commit', '-qm', name);
  const bare = path.join(dir, `${name}.git`);
  await execFileP('git', ['clone', '-q', '--bare', work, bare]);
  await git(bare, 'update-server-info');
  return { bare, commit: await git(work, 'rev-parse', 'HEAD') };
}

/**
 * The loopback side of the URL settings: the package set's git repository and nixpkgs' (dumb
 * HTTP, Basic auth), nixpkgs tarballs (token in the query; none exists: 404) and popularity
 * data. Each refuses requests without its token and records the ones that had it.
 */
class Upstream {
  readonly authorized: string[] = [];
  /** While false, the nixpkgs repository refuses everyone. */
  nixpkgsOpen = false;
  private server!: http.Server;
  port = 0;

  constructor(private readonly repos: { pkgs: string; nixpkgs: string }) {}

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization;
    const refuse = () => {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="upstream"' });
      res.end();
    };
    const serveRepo = (root: string, prefix: string) => {
      const file = path.join(root, path.normalize(decodeURIComponent(url.pathname.slice(prefix.length))));
      readFile(file).then(
        (data) => {
          res.writeHead(200);
          res.end(data);
        },
        () => {
          res.writeHead(404);
          res.end();
        },
      );
    };
    if (url.pathname.startsWith('/pkgs.git/')) {
      if (auth !== basic('nixery', TOKENS.NIXERY_PKGS_REPO)) return refuse();
      this.authorized.push(url.pathname);
      return serveRepo(this.repos.pkgs, '/pkgs.git/');
    }
    if (url.pathname.startsWith('/nixpkgs.git/')) {
      // The token is the user name, as in https://TOKEN@github.com/…: git sends no password.
      if (!this.nixpkgsOpen || auth !== basic(TOKENS.NIXERY_NIXPKGS_REPO, '')) return refuse();
      this.authorized.push(url.pathname);
      return serveRepo(this.repos.nixpkgs, '/nixpkgs.git/');
    }
    if (url.pathname.startsWith('/archive/')) {
      if (url.searchParams.get('access_token') !== TOKENS.NIXERY_NIXPKGS_TARBALL) return refuse();
      this.authorized.push(url.pathname);
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('no such tarball\n');
      return;
    }
    if (url.pathname === '/popularity.json') {
      if (auth !== basic('pop', TOKENS.NIX_POPULARITY_URL)) return refuse();
      this.authorized.push(url.pathname);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ 'hello-1.0': 7, 'bash-5.2': 3 }));
      return;
    }
    res.writeHead(404);
    res.end();
  }
}

/** A `nixery serve` process; everything it writes and answers is kept in `outputs`. */
class Served {
  readonly outputs: string[] = [];
  stdout = '';
  stderr = '';
  url = '';
  started: Record<string, unknown> = {};
  private child!: ChildProcess;

  async start(env: Record<string, string>): Promise<void> {
    // Only what this run sets: no setting leaks in from the environment the tests run in.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/^(NIXERY_|NIX_POPULARITY|S3_|GCS_|STORAGE_|AWS_|GOOGLE_)/.test(k)),
    );
    this.child = spawn('node', [CLI, 'serve', '--port', '0', '--host', '127.0.0.1'], {
      env: { ...inherited, NIX_CONFIG: 'substituters =', NIXERY_LOG_LEVEL: 'debug', NIX_TIMEOUT: '120', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString('latin1')));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString('latin1')));
    const deadline = Date.now() + 30_000;
    while (!this.stdout.includes('"nixery-ts registry started"')) {
      if (this.child.exitCode !== null) assert.fail(`nixery serve exited with ${this.child.exitCode}: ${this.stdout}${this.stderr}`);
      if (Date.now() > deadline) assert.fail(`nixery serve did not start: ${this.stdout}${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const line = this.stdout.split('\n').find((l) => l.includes('"nixery-ts registry started"'))!;
    this.started = JSON.parse(line) as Record<string, unknown>;
    this.url = `http://${this.started.listen as string}`;
  }

  /** A request whose whole answer (status, headers, body) is kept; redirects are not followed. */
  async get(pathname: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: Buffer; text: string }> {
    const res = await fetch(`${this.url}${pathname}`, { redirect: 'manual', ...init });
    const body = Buffer.from(await res.arrayBuffer());
    const text = body.toString('latin1');
    this.outputs.push(`${res.status} ${res.statusText}\n${[...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n\n${text}`);
    return { status: res.status, headers: res.headers, body, text };
  }

  /** A blob's bytes, following the storage redirect (the Location header is kept as output). */
  async blob(digest: string): Promise<Buffer> {
    const r = await this.get(`/v2/hello/blobs/${digest}`);
    if (r.status === 200) return r.body;
    assert.equal(r.status, 307, r.text);
    const res = await fetch(r.headers.get('location')!);
    assert.equal(res.status, 200);
    return Buffer.from(await res.arrayBuffer());
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      await exited;
    }
    this.outputs.push(this.stdout, this.stderr);
  }

  /** The parsed JSON log lines written so far. */
  logLines(): Array<Record<string, unknown>> {
    return this.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

function assertNoToken(outputs: string[], run: string): void {
  for (const output of outputs) {
    for (const stem of STEMS) {
      const at = output.indexOf(stem);
      assert.equal(at, -1, `${run}: token ${stem}… leaked: ${JSON.stringify(output.slice(Math.max(0, at - 200), at + 100))}`);
    }
  }
}

/** The startup log shows every URL setting of the run, with `***` for its credentials. */
function assertConfigRedacted(served: Served, expected: Partial<Record<UrlSetting, string>>): void {
  const config = served.started.config as Record<string, string>;
  for (const [name, shown] of Object.entries(expected)) assert.equal(config[name], shown, name);
}

/** The outputs every run goes through: index page, metrics, the API root, bad names, 404s. */
async function commonRequests(served: Served, tag: string, missingStatus = 404): Promise<void> {
  assert.equal((await served.get('/metrics')).status, 200);
  assert.equal((await served.get('/v2/')).status, 200);
  const missing = await served.get(`/v2/no-such-package-xyz/manifests/${tag}`);
  assert.equal(missing.status, missingStatus, missing.text);
  assert.equal((await served.get('/v2/Bad..Name/manifests/latest')).status, 400);
  assert.equal((await served.get(`/v2/hello/manifests/${tag}`, { method: 'HEAD' })).status < 600, true);
  assert.equal((await served.get('/no/such/endpoint')).status, 404);
}

describe('a token in every URL setting, with every output grepped for it', () => {
  let dir: string;
  let upstream: Upstream;
  let s3: S3TestServer;
  let gcs: FakeGcs;
  let pkgsCommit: string;
  let urls: Record<UrlSetting, string>;
  let shown: Record<UrlSetting, string>;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-secrets-e2e-'));
    const pkgs = await bareRepo(dir, 'pkgs', 'main', EXAMPLE_PKGS);
    pkgsCommit = pkgs.commit;
    const nixpkgsFiles = path.join(dir, 'nixpkgs-files');
    await cp(path.join(EXAMPLE_PKGS, 'README.md'), path.join(nixpkgsFiles, 'README.md'), { recursive: true });
    const nixpkgs = await bareRepo(dir, 'nixpkgs', 'nixos-test', nixpkgsFiles);
    upstream = new Upstream({ pkgs: pkgs.bare, nixpkgs: nixpkgs.bare });
    await upstream.start();
    [s3, gcs] = await Promise.all([startS3Server(), startFakeGcs()]);
    const local = `127.0.0.1:${upstream.port}`;
    const s3Host = new URL(s3.endpoint).host;
    const gcsHost = new URL(gcs.endpoint).host;
    urls = {
      NIXERY_PKGS_REPO: `http://nixery:${encodeURIComponent(TOKENS.NIXERY_PKGS_REPO)}@${local}/pkgs.git`,
      NIXERY_NIXPKGS_REPO: `http://${TOKENS.NIXERY_NIXPKGS_REPO}@${local}/nixpkgs.git`,
      NIXERY_NIXPKGS_TARBALL: `http://${local}/archive/{rev}.tar.gz?access_token=${TOKENS.NIXERY_NIXPKGS_TARBALL}`,
      NIX_POPULARITY_URL: `http://pop:${TOKENS.NIX_POPULARITY_URL}@${local}/popularity.json`,
      S3_ENDPOINT: `http://s3user:${TOKENS.S3_ENDPOINT}@${s3Host}`,
      GCS_ENDPOINT: `http://${gcsHost}/?access_token=${TOKENS.GCS_ENDPOINT}`,
    };
    shown = {
      NIXERY_PKGS_REPO: `http://***@${local}/pkgs.git`,
      NIXERY_NIXPKGS_REPO: `http://***@${local}/nixpkgs.git`,
      NIXERY_NIXPKGS_TARBALL: `http://${local}/archive/{rev}.tar.gz?access_token=***`,
      NIX_POPULARITY_URL: `http://***@${local}/popularity.json`,
      S3_ENDPOINT: `http://***@${s3Host}`,
      GCS_ENDPOINT: `http://${gcsHost}/?access_token=***`,
    };
  });

  after(async () => {
    await Promise.all([upstream?.stop(), s3?.stop(), gcs?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  const storageDir = async (name: string) => mkdtemp(path.join(dir, `${name}-storage-`));

  test('git source: builds through the token-protected repository; label, index page, errors and logs show ***', async () => {
    const served = new Served();
    await served.start({ ...urls, STORAGE_PATH: await storageDir('git') });
    try {
      assertConfigRedacted(served, shown);
      const source = `git http://***@127.0.0.1:${upstream.port}/pkgs.git at ${pkgsCommit} (refs/heads/main)`;

      const manifest = await served.get('/v2/hello/manifests/main');
      assert.equal(manifest.status, 200, manifest.text);
      const m = JSON.parse(manifest.text) as { config: { digest: string }; layers: Array<{ digest: string }> };
      const config = JSON.parse((await served.blob(m.config.digest)).toString('utf8')) as { config: { Labels: Record<string, string> } };
      assert.equal(config.config.Labels['dev.nixery.source'], source);
      served.outputs.push((await served.blob(m.layers.at(-1)!.digest)).toString('latin1'));
      // Nix fetched the package set with the token; popularity was fetched with its own.
      assert.ok(upstream.authorized.some((p) => p.startsWith('/pkgs.git/objects/')), upstream.authorized.join(' '));
      assert.ok(upstream.authorized.includes('/popularity.json'));

      const unknown = await served.get('/v2/hello/manifests/no-such-branch');
      assert.equal(unknown.status, 404);
      assert.match(unknown.text, new RegExp(`no-such-branch in http://\\*\\*\\*@127\\.0\\.0\\.1:${upstream.port}/pkgs\\.git`));
      // A build failure: Nix's stderr goes to the client, the log and the index page.
      const broken = await served.get('/v2/broken/manifests/main');
      assert.equal(broken.status, 500, broken.text);
      assert.match(broken.text, /this package is broken on purpose/);
      // `latest` (the remote's HEAD) too, whatever becomes of it.
      await served.get('/v2/shell/manifests/latest');
      await commonRequests(served, 'main');

      const index = await served.get('/');
      assert.ok(index.text.includes(`git repository http://***@127.0.0.1:${upstream.port}/pkgs.git`), index.text);
      assert.match(index.text, /broken on purpose/);
    } finally {
      await served.stop();
    }
    assert.ok(served.logLines().some((l) => l.msg === 'request' && l.status === 500));
    assertNoToken(served.outputs, 'git source');
  });

  test('channel source: the repository refusing, then the tarball failing; errors show ***', async () => {
    const served = new Served();
    // Popularity data that is not there: the warning names the URL, and only the log's own
    // redaction stands between it and the token.
    const popularity = urls.NIX_POPULARITY_URL.replace('popularity.json', 'popularity-gone.json');
    await served.start({ ...urls, NIX_POPULARITY_URL: popularity, NIXERY_CHANNEL: 'nixos-test', STORAGE_PATH: await storageDir('channel') });
    try {
      assertConfigRedacted(served, { ...shown, NIX_POPULARITY_URL: shown.NIX_POPULARITY_URL.replace('popularity.json', 'popularity-gone.json') });
      const warning = served.logLines().find((l) => String(l.msg).startsWith('popularity data from'));
      assert.equal(warning?.popularity, `http://***@127.0.0.1:${upstream.port}/popularity-gone.json`);
      assert.match(String(warning?.msg), /^popularity data from http:\/\/\*\*\*@127\.0\.0\.1:\d+\/popularity-gone\.json is unusable, layering without it: HTTP 404/);
      const repo = `http://\\*\\*\\*@127\\.0\\.0\\.1:${upstream.port}`;

      upstream.nixpkgsOpen = false;
      const refused = await served.get('/v2/hello/manifests/latest');
      assert.equal(refused.status, 503, refused.text);
      // git gets the token as a header (never in its arguments), so its refusal names no user.
      assert.match(refused.text, new RegExp(`cannot list the references of ${repo}/nixpkgs\\.git: .*could not read Username for 'http://127\\.0\\.0\\.1:${upstream.port}'`));

      upstream.nixpkgsOpen = true;
      const failed = await served.get('/v2/hello/manifests/latest');
      assert.equal(failed.status, 500, failed.text);
      // Nix names the tarball URL, with the commit filled in.
      assert.match(failed.text, new RegExp(`/archive/[0-9a-f]{40}\\.tar\\.gz\\?access_token=\\*\\*\\*`));
      assert.ok(upstream.authorized.some((p) => p.startsWith('/nixpkgs.git/')));
      assert.ok(upstream.authorized.some((p) => p.startsWith('/archive/')), 'Nix downloaded with the token');
      // Without a package set, an unknown package is a build failure too.
      await commonRequests(served, 'latest', 500);

      const index = await served.get('/');
      assert.ok(index.text.includes(`nixpkgs channel nixos-test from http://***@127.0.0.1:${upstream.port}/nixpkgs.git`), index.text);
      assert.match(index.text, /access_token=\*\*\*/);
      assert.match((await served.get('/metrics')).text, /^nixery_image_build_failures_total [1-9]/m);
    } finally {
      await served.stop();
    }
    assertNoToken(served.outputs, 'channel source');
  });

  test('s3 backend: an endpoint with credentials; startup log, redirects and responses are clean', async () => {
    const bucket = await s3.createBucket();
    const served = new Served();
    const { NIXERY_PKGS_REPO: _git, ...others } = urls;
    await served.start({
      ...others,
      NIXERY_PKGS_PATH: EXAMPLE_PKGS,
      NIXERY_STORAGE_BACKEND: 's3',
      S3_BUCKET: bucket,
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    });
    try {
      const { NIXERY_PKGS_REPO: _shownGit, ...othersShown } = shown;
      assertConfigRedacted(served, othersShown);
      assert.match(served.started.storage as string, new RegExp(`^s3 \\(${bucket} at http://\\*\\*\\*@127\\.0\\.0\\.1:\\d+\\)$`));
      const manifest = await served.get('/v2/hello/manifests/latest');
      assert.equal(manifest.status, 200, manifest.text);
      const m = JSON.parse(manifest.text) as { config: { digest: string } };
      const configBlob = await served.get(`/v2/hello/blobs/${m.config.digest}`);
      assert.equal(configBlob.status, 307, 'blobs come from S3 by redirect');
      await served.blob(m.config.digest);
      await commonRequests(served, 'latest');
      await served.get('/');
    } finally {
      await served.stop();
    }
    assertNoToken(served.outputs, 's3 backend');
  });

  test('gcs backend: an endpoint with a token query; startup log, redirects and responses are clean', async () => {
    const bucket = gcs.createBucket({ public: true });
    const served = new Served();
    const { NIXERY_PKGS_REPO: _git, ...others } = urls;
    await served.start({ ...others, NIXERY_PKGS_PATH: EXAMPLE_PKGS, NIXERY_STORAGE_BACKEND: 'gcs', GCS_BUCKET: bucket });
    try {
      const { NIXERY_PKGS_REPO: _shownGit, ...othersShown } = shown;
      assertConfigRedacted(served, othersShown);
      const manifest = await served.get('/v2/hello/manifests/latest');
      assert.equal(manifest.status, 200, manifest.text);
      const m = JSON.parse(manifest.text) as { config: { digest: string } };
      await served.blob(m.config.digest);
      await commonRequests(served, 'latest');
      await served.get('/');
    } finally {
      await served.stop();
    }
    assert.ok(served.logLines().some((l) => l.level === 40 && String(l.msg).includes('public URLs')), 'the gcs notice was logged');
    assertNoToken(served.outputs, 'gcs backend');
  });
});
