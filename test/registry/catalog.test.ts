// /v2/_catalog lists the repositories whose images storage holds: a registry started on storage
// another one filled (a replica, or itself before a restart) lists them too, sorted and paged.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStandInRegistry } from '../helpers/registry.js';
import { StandInNix } from '../helpers/stand-in-nix.js';

const pull = async (url: string, name: string) => {
  const res = await fetch(`${url}/v2/${name}/manifests/latest`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(res.status, 200, `${name}: ${await res.clone().text()}`);
  await res.arrayBuffer();
};

test('the catalog of a registry that built nothing itself lists what storage holds', async () => {
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-catalog-'));
  const nix = new StandInNix();
  try {
    const builder = await startStandInRegistry({}, { storagePath, nix });
    try {
      await pull(builder.url, 'hello');
      await pull(builder.url, 'shell/hello');
    } finally {
      await builder.close();
    }
    const other = await startStandInRegistry({}, { storagePath, nix });
    try {
      const all = await fetch(`${other.url}/v2/_catalog`);
      assert.equal(all.status, 200);
      assert.deepEqual(await all.json(), { repositories: ['hello', 'shell/hello'] });
      const first = await fetch(`${other.url}/v2/_catalog?n=1`);
      assert.deepEqual(await first.json(), { repositories: ['hello'] });
      assert.equal(first.headers.get('link'), '</v2/_catalog?n=1&last=hello>; rel="next"');
    } finally {
      await other.close();
    }
  } finally {
    await nix.remove();
    await rm(storagePath, { recursive: true, force: true });
  }
});
