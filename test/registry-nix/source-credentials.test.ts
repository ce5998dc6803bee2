// Credentials of a git source never sit on a command line (issue 21, point 8): during a build
// from `http://user:password@…`, no process on the machine shows the password (or the header
// made from it) in /proc/*/cmdline, and the build still reaches the repository with them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRegistry } from '../helpers/registry.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { git, initRepo } from '../helpers/git.js';
import { startGitHttpServer } from '../helpers/git-http.js';

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** Every process's command line, as `ps` would show it (NULs as spaces). */
async function commandLines(): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      out.push((await readFile(`/proc/${pid}/cmdline`)).toString('utf8').replace(/\0/g, ' '));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

test('a git source with user:password in its URL builds, and no command line ever shows the password', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-git-credentials-'));
  const user = 'robot';
  const secret = randomBytes(12).toString('hex');
  const header = Buffer.from(`${user}:${secret}`).toString('base64');
  // Slow answers keep git's processes alive while /proc is scanned.
  const server = await startGitHttpServer(dir, user, secret, { delayMs: 300 });
  const host = new URL(server.url).host;
  // A commit new to every run: Nix 2.8 reuses a git input it fetched before by its commit alone
  // (whatever the URL), and the example set's first commit is the same in every test that makes
  // one, so without it Nix may not fetch at all and the test would not see the fetch it watches.
  const repo = `pkgs-${randomBytes(6).toString('hex')}`;
  await initRepo(path.join(dir, repo), EXAMPLE_PKGS);
  await git(path.join(dir, repo), 'commit', '-q', '--allow-empty', '-m', `run ${randomBytes(8).toString('hex')}`);
  const leaks: string[] = [];
  const gitSeen = new Set<string>();
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const line of await commandLines()) {
        if (line.includes(secret) || line.includes(header)) leaks.push(line);
        if (line.includes(host) && /^(git|nix-instantiate|git-remote-http)\b/.test(path.basename(line.split(' ')[0]!))) gitSeen.add(line);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  const r = await startRegistry({ NIXERY_PKGS_PATH: '', NIXERY_PKGS_REPO: `http://${user}:${secret}@${host}/${repo}` });
  try {
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: { Accept: MANIFEST } });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.ok(!body.includes(secret));
    // The repository was reached with the credentials, and git did run against it.
    assert.ok(server.authorizations.includes(`Basic ${header}`), 'git sent the credentials');
  } finally {
    watching = false;
    await watcher;
    await r.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
  assert.deepEqual(leaks, [], 'no command line holds the password');
  // git ls-remote (the registry's), git fetch (Nix's fetchGit) and git-remote-http: URL without credentials.
  assert.ok([...gitSeen].some((l) => / ls-remote /.test(l)), [...gitSeen].join('\n'));
  assert.ok([...gitSeen].some((l) => / fetch /.test(l)), [...gitSeen].join('\n'));
});
