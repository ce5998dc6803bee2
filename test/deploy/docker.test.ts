// The image under docker (issue 19, point 5): `docker run --network host --read-only --user 65532`
// with volumes for /nix and the storage (and a tmpfs /tmp) serves a pull that is then run, and
// `docker stop` (SIGTERM) drains it: it exits 0 well within the grace period, saying it stopped.
// The engine is a private dockerd (test/helpers/docker.ts), stopped by PID; the image is loaded
// into it from the OCI archive scripts/build-image.sh wrote.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildImage, cannotBuild, onPath } from './image.js';
import { startDockerd } from '../helpers/docker.js';
import { freePort } from '../helpers/net.js';

const execFileP = promisify(execFile);
const GRACE_S = 30;

test('docker: read-only, uid 65532, host network: serves a pull that runs; docker stop drains and exits 0', { timeout: 2_400_000 }, async (t) => {
  const reason = cannotBuild() ?? (onPath('dockerd') ? null : 'dockerd is not installed (docker.io)');
  if (reason) return t.skip(`cannot run here: ${reason}`);
  const image = await buildImage();
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-docker-image-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const engine = await startDockerd();
  t.after(() => engine.stop());
  const { docker } = engine;

  // docker 20.10 loads docker archives, not OCI ones.
  const archive = path.join(dir, 'image.tar');
  await execFileP('skopeo', ['copy', '--quiet', `oci-archive:${image.archive}:${image.version}`, `docker-archive:${archive}:${image.ref}`], { timeout: 600_000 });
  await docker(['load', '-i', archive], { timeoutMs: 600_000 });
  await rm(archive);
  const labels = JSON.parse(await docker(['image', 'inspect', '--format', '{{json .Config.Labels}}', image.ref]));
  assert.equal(labels['org.opencontainers.image.version'], image.version);
  assert.match(labels['org.opencontainers.image.revision'], /^[0-9a-f]{40}$|^unknown$/);
  assert.equal((await docker(['image', 'inspect', '--format', '{{.Config.StopSignal}} {{.Config.User}}', image.ref])).trim(), 'SIGTERM 65532:65532');

  const port = await freePort();
  const name = `nixery-${process.pid}`;
  await docker([
    'run', '-d', '--name', name, '--network', 'host', '--read-only', '--user', '65532',
    '-v', `${name}-nix:/nix`, '-v', `${name}-storage:/var/lib/nixery`, '--tmpfs', '/tmp:rw,exec,mode=1777',
    '-e', `PORT=${port}`, '-e', 'NIXERY_HOST=127.0.0.1', '-e', 'NIXERY_PKGS_PATH=/app/examples/pkgs', '-e', 'NIX_CONFIG=substituters =',
    image.ref,
  ]);
  t.after(() => docker(['rm', '-f', '-v', name]).catch(() => {}));
  const base = `http://127.0.0.1:${port}`;
  const until = Date.now() + 180_000;
  while (!(await fetch(`${base}/readyz`).then((r) => r.ok, () => false))) {
    if (Date.now() > until) assert.fail(`not ready:\n${await docker(['logs', name]).catch((e: Error) => e.message)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }

  // Pulled by docker from the registry in the container, then run.
  await docker(['pull', `127.0.0.1:${port}/shell/hello`], { timeoutMs: 900_000 });
  assert.equal((await docker(['run', '--rm', '--network', 'none', `127.0.0.1:${port}/shell/hello`, 'hello'])).trim(), 'Hello, world!');

  const started = Date.now();
  await docker(['stop', '-t', String(GRACE_S), name], { timeoutMs: (GRACE_S + 30) * 1000 });
  const took = (Date.now() - started) / 1000;
  const state = JSON.parse(await docker(['inspect', '--format', '{{json .State}}', name]));
  assert.equal(state.ExitCode, 0, `exit code ${state.ExitCode}`);
  assert.equal(state.OOMKilled, false);
  assert.ok(took < GRACE_S, `stopped in ${took} s, within the ${GRACE_S} s grace`);
  const logs = await docker(['logs', name]);
  assert.match(logs, /"signal":"SIGTERM"/);
  assert.match(logs, /"msg":"stopped"/);
  await docker(['rm', '-v', name]);
  await docker(['volume', 'rm', `${name}-nix`, `${name}-storage`]);
  await docker(['rmi', image.ref, `127.0.0.1:${port}/shell/hello`]);
});
