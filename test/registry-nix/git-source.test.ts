// A git package source through the registry: the image tag picks a branch, a git tag or a
// commit; `latest` follows the default branch, pinned to one commit for NIXERY_RESOLVE_TTL, so
// moving targets are cached too; a new commit shows up once the pin expires.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';

const execFileP = promisify(execFile);

async function git(repo: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('git', ['-C', repo, '-c', 'user.email=t@example.org', '-c', 'user.name=test', ...args]);
  return stdout.trim();
}

describe('registry on a git package source', () => {
  let dir: string;
  let repo: string;
  let r: TestRegistry;
  let first: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-git-source-'));
    repo = path.join(dir, 'pkgs');
    await cp(EXAMPLE_PKGS, repo, { recursive: true });
    await execFileP('git', ['init', '-q', '-b', 'main', repo]);
    await git(repo, 'add', '.');
    await git(repo, 'commit', '-qm', 'first');
    await git(repo, 'tag', 'v1');
    first = await git(repo, 'rev-parse', 'HEAD');
    r = await startRegistry({ NIXERY_PKGS_PATH: '', NIXERY_PKGS_REPO: `file://${repo}`, NIXERY_RESOLVE_TTL: '2' });
  });
  after(async () => {
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const digestOf = async (tag: string) => {
    const res = await fetch(`${r.url}/v2/hello/manifests/${tag}`);
    assert.equal(res.status, 200, await res.clone().text());
    const m = JSON.parse(await res.text()) as { config: { digest: string } };
    const config = JSON.parse(await (await fetch(`${r.url}/v2/hello/blobs/${m.config.digest}`)).text());
    return { digest: res.headers.get('docker-content-digest')!, revision: config.config.Labels['org.opencontainers.image.revision'] as string };
  };

  test('latest, the branch, the git tag and the commit are the same image, labelled with the commit', async () => {
    const latest = await digestOf('latest');
    assert.equal(latest.revision, first);
    for (const tag of ['main', 'v1', first]) assert.deepEqual(await digestOf(tag), latest, tag);
  });

  test('an unknown tag is 404 MANIFEST_UNKNOWN naming it', async () => {
    const res = await fetch(`${r.url}/v2/hello/manifests/no-such-branch`);
    assert.equal(res.status, 404);
    const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(body.errors[0]!.code, 'MANIFEST_UNKNOWN');
    assert.match(body.errors[0]!.message, /no-such-branch/);
  });

  test('latest is pinned for the TTL, then follows a new commit; the git tag stays', async () => {
    const before = await digestOf('latest');
    const file = path.join(repo, 'default.nix');
    await writeFile(file, (await readFile(file, 'utf8')).replace("echo 'Hello, world!'", "echo 'Hello, git!'"));
    await git(repo, 'commit', '-qam', 'second');
    const second = await git(repo, 'rev-parse', 'HEAD');
    assert.deepEqual(await digestOf('latest'), before, 'still pinned within the TTL');
    await new Promise((res) => setTimeout(res, 2100));
    const after = await digestOf('latest');
    assert.equal(after.revision, second);
    assert.notEqual(after.digest, before.digest);
    assert.equal((await digestOf('v1')).digest, before.digest);
  });
});

