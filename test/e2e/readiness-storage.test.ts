// /readyz must take a replica out of rotation when its blobs cannot be read, not only when the
// storage refuses a write: the probe lists blobs/ and reads a blob. The registry runs as root
// without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (setpriv drops them from its bounding set),
// so `chmod 000` on blobs/ really makes its reads fail with EACCES, as for a registry running as
// an ordinary user; root with those capabilities would ignore the mode.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { waitFor } from '../helpers/slow-pkgs.js';

const MANIFEST_TYPES = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

interface Report {
  ready: boolean;
  checks: Record<string, { ok: boolean; error?: string }>;
}

async function readyz(url: string): Promise<{ status: number; report: Report }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, report: (await res.json()) as Report };
}

test('/readyz is 503 while blobs/ cannot be read (EACCES), and 200 again once it can', async () => {
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-readyz-storage-'));
  const blobs = path.join(storagePath, 'blobs');
  let serve: ServeProcess | undefined;
  try {
    serve = await startServe({
      pkgsPath: EXAMPLE_PKGS,
      storagePath,
      wrapper: ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--'],
    });
    const pulled = await fetch(`${serve.url}/v2/hello/manifests/latest`, { headers: { Accept: MANIFEST_TYPES } });
    assert.equal(pulled.status, 200, await pulled.text());
    const ready = await readyz(serve.url);
    assert.equal(ready.status, 200, JSON.stringify(ready.report));

    await chmod(blobs, 0o000);
    // Readiness is cached for 3 s.
    const unready = await waitFor('/readyz to say unready', async () => {
      const r = await readyz(serve!.url);
      return r.status === 503 ? r : undefined;
    }, 10_000, 250);
    assert.equal(unready.report.ready, false);
    assert.equal(unready.report.checks.storage?.ok, false, JSON.stringify(unready.report));
    assert.equal(unready.report.checks.nix?.ok, true, 'only storage fails');
    // Logs reach stdout within a second.
    await waitFor('the failure in the log', () => /readiness check failed/.test(serve!.output()), 3000, 100);

    await chmod(blobs, 0o755);
    const back = await waitFor('/readyz to say ready again', async () => {
      const r = await readyz(serve!.url);
      return r.status === 200 ? r : undefined;
    }, 10_000, 250);
    assert.equal(back.report.checks.storage?.ok, true);
  } finally {
    await chmod(blobs, 0o755).catch(() => {});
    await serve?.stop('SIGKILL');
    await rm(storagePath, { recursive: true, force: true });
  }
});
