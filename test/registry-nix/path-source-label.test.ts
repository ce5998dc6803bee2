// Two copies of one package set at different paths build the same image, byte for byte: the
// `dev.nixery.source` label names the set by its identity (issue 21, point 12).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRegistry } from '../helpers/registry.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function pullFrom(pkgsPath: string): Promise<{ digest: string; label: string }> {
  const r = await startRegistry({ NIXERY_PKGS_PATH: pkgsPath });
  try {
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: { Accept: MANIFEST } });
    assert.equal(res.status, 200);
    const manifest = (await res.json()) as { config: { digest: string } };
    const config = (await (await fetch(`${r.url}/v2/hello/blobs/${manifest.config.digest}`)).json()) as { config: { Labels: Record<string, string> } };
    return { digest: res.headers.get('docker-content-digest')!, label: config.config.Labels['dev.nixery.source']! };
  } finally {
    await r.close();
  }
}

test('copies of a package set at different paths give the same manifest digest; the label holds no path', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-path-label-'));
  try {
    const a = path.join(dir, 'first', 'pkgs');
    const b = path.join(dir, 'second-copy', 'elsewhere', 'pkgs');
    await cp(EXAMPLE_PKGS, a, { recursive: true });
    await cp(EXAMPLE_PKGS, b, { recursive: true });
    const first = await pullFrom(a);
    const second = await pullFrom(b);
    assert.equal(first.label, second.label);
    assert.match(first.label, /^local directory \(content hash: sha256:[0-9a-f]{64}\)$/);
    assert.ok(!first.label.includes(dir), first.label);
    assert.equal(first.digest, second.digest);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
