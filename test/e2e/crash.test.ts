// `kill -9` of a real `nixery serve` in the middle of builds — one waiting on a builder that
// sleeps, one packing a large layer into storage — leaves temporary files in storage, a GC-root
// directory and Nix processes (builders run as build users in sessions of their own and outlive
// nix-store). A registry on the same storage removes all of it: a restarted one at start, a
// replica that was already running at its next periodic clean-up.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseGroupRecord } from '../../src/nix/processes.js';
import { descendantsOf } from '../../src/nix/run.js';
import { currentOwner, formatOwner, ownerOfName } from '../../src/util/owner.js';
import { readProcStat } from '../../src/util/proc.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { identify, killIfRunning, makeTestPackageSet, processesMentioning, stillRunning, waitFor, type ProcessId } from '../helpers/slow-pkgs.js';

const CLEANUP_INTERVAL_MS = '500';

async function temporaryFiles(storagePath: string): Promise<string[]> {
  return readdir(path.join(storagePath, '.tmp')).catch(() => []);
}

for (const variant of ['restart', 'running replica without parent-death signal'] as const) {
  test(`kill -9 during builds, then ${variant === 'restart' ? 'a restart on the same storage' : 'a running replica (NIXERY_PDEATHSIG=off)'}: no temporary files, GC roots or Nix processes are left`, async (t) => {
    const pkgs = await makeTestPackageSet({ sleeps: [300], bigMegabytes: 32 });
    const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-crash-storage-'));
    // A temp dir of their own for the registries' runtime directories: no other registry on this
    // machine (tests running at the same time) reaps them first.
    const runtimeBase = await mkdtemp(path.join(tmpdir(), 'nixery-crash-tmp-'));
    const env = { TMPDIR: runtimeBase, NIXERY_CLEANUP_INTERVAL_MS: CLEANUP_INTERVAL_MS };
    const fallback = variant !== 'restart';
    let a: ServeProcess | undefined;
    let b: ServeProcess | undefined;
    let tree: ProcessId[] = [];
    try {
      if (fallback) b = await startServe({ pkgsPath: pkgs.dir, storagePath, env });
      a = await startServe({ pkgsPath: pkgs.dir, storagePath, env: fallback ? { ...env, NIXERY_PDEATHSIG: 'off' } : env });
      const aStart = readProcStat(a.pid)!.startTime;
      const aOwner = formatOwner({ ...currentOwner(), pid: a.pid, startTime: aStart });
      const runDir = path.join(runtimeBase, `nixery-run-${aOwner}`);

      // A build whose builder sleeps (in a child of its shell), then one that packs a large layer.
      const requests = [fetch(`${a.url}/v2/slow300/manifests/latest`).catch((e: unknown) => e)];
      const builder = await waitFor('the slow builder', () => processesMentioning(`${pkgs.marker}: sleeping 300`)[0], 60_000);
      await waitFor("the builder's sleep", () => descendantsOf(builder.pid).length > 0, 10_000);
      requests.push(fetch(`${a.url}/v2/big/manifests/latest`).catch((e: unknown) => e));
      const tmpNames = await waitFor('a temporary file of the layer being packed', async () => {
        const names = await temporaryFiles(storagePath);
        return names.length > 0 ? names : undefined;
      }, 60_000, 5);

      // The builder runs in a session of its own: the registry records its group within a poll.
      await waitFor("the builder's group in the record", () => parseGroupRecord(readFileSync(path.join(runDir, 'process-groups'), 'utf8')).some((g) => g.pgid === builder.pid), 5000);
      tree = identify(descendantsOf(a.pid));
      const nixStores = tree.filter((p) => /nix-store/.test(p.command));
      assert.ok(nixStores.length >= 1, `nix-store runs: ${tree.map((p) => p.command).join(' | ')}`);
      assert.ok(stillRunning([builder]).length === 1);
      for (const name of tmpNames) assert.equal(ownerOfName(name)?.pid, a.pid, `${name} is named after its writer`);
      assert.ok(readdirSync(runDir).some((n) => n.startsWith('gcroots-')), 'the slow build holds GC roots in the runtime directory');
      assert.ok(readdirSync(path.join(runDir, 'tmp')).some((n) => n.startsWith('nix-build-')), "Nix's build directory is in the runtime directory too");

      // The running replica is paused while we look, so that its clean-up cannot come first.
      if (fallback) process.kill(b!.pid, 'SIGSTOP');
      await a.stop('SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      // First line: with setpriv the kernel kills nix-store with us; without it, it lives on.
      if (fallback) assert.equal(stillRunning(nixStores).length, nixStores.length, 'without the parent-death signal nix-store outlives the registry');
      else assert.deepEqual(stillRunning(nixStores), [], 'nix-store died with the registry');
      // Builders run as build users, which clears their parent-death signal: they outlive nix-store.
      t.diagnostic(`still running right after kill -9: ${stillRunning(tree).map((p) => p.command.slice(0, 60)).join(' | ')}`);

      if (fallback) process.kill(b!.pid, 'SIGCONT');
      else b = await startServe({ pkgsPath: pkgs.dir, storagePath, env });
      await waitFor('the clean-up', async () => {
        const leftovers = (await temporaryFiles(storagePath)).filter((n) => ownerOfName(n)?.pid === a!.pid);
        const logged = /removed what processes that are gone left behind/.test(b!.output());
        return logged && leftovers.length === 0 && !existsSync(runDir) && stillRunning(tree).length === 0 && processesMentioning(pkgs.marker).length === 0;
      }, 10_000, 100).catch(() => undefined);

      assert.deepEqual(await temporaryFiles(storagePath), [], 'no temporary files are left');
      assert.equal(existsSync(runDir), false, "the dead registry's GC-root directory (and Nix's build directory in it) is gone");
      assert.deepEqual(stillRunning(tree), [], 'no process of the dead registry runs');
      assert.deepEqual(processesMentioning(pkgs.marker), [], 'no builder of the dead registry runs');
      assert.match(b!.output(), /removed what processes that are gone left behind/);

      // The storage is sound: the other registry builds and serves the image.
      const res = await fetch(`${b!.url}/v2/hello/manifests/latest`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      await Promise.all(requests);
    } finally {
      await a?.stop('SIGKILL');
      if (b) process.kill(b.pid, 'SIGCONT');
      await b?.stop('SIGTERM');
      killIfRunning(tree);
      killIfRunning(processesMentioning(pkgs.marker));
      await rm(storagePath, { recursive: true, force: true });
      await rm(runtimeBase, { recursive: true, force: true });
      await pkgs.remove();
    }
  });
}
