// Shared by the layer compression tests: a catalogue with a package big enough for several
// compression chunks, and a pull that checks every blob against its digest.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { EXAMPLE_CATALOGUE, incompressible, type Catalogue } from './stand-in-nix.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Text that compresses (a counter in words), `n` bytes. */
function text(n: number): string {
  let out = '';
  for (let i = 0; out.length < n; i++) out += `line ${i} of the manual: ${(i * 7919) % 1000} options and ${(i * 104729) % 97} examples\n`;
  return out.slice(0, n);
}

/** The example catalogue plus `bigmix`: 8.5 MiB of text and noise, so its layer spans three 4 MiB chunks. */
export const COMPRESSION_CATALOGUE: Catalogue = {
  ...EXAMPLE_CATALOGUE,
  bigmix: {
    name: 'bigmix-1.0',
    files: {
      'share/doc/manual.txt': text(4 * 1024 * 1024 + 12345),
      'lib/libnoise.so': incompressible(4 * 1024 * 1024 + 777, 'bigmix'),
      'share/doc/more.txt': text(512 * 1024),
    },
  },
};

export interface PulledImage {
  digest: string;
  manifest: { layers: Array<{ digest: string; size: number; mediaType: string }>; config: { digest: string } };
  config: { rootfs: { diff_ids: string[] } };
  layers: Buffer[];
}

/** The OCI manifest of `name:latest`, its config and layers, each checked against its digest. */
export async function pullImage(url: string, name: string): Promise<PulledImage> {
  const res = await fetch(`${url}/v2/${name}/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
  assert.equal(res.status, 200, await res.clone().text());
  const bytes = Buffer.from(await res.arrayBuffer());
  const manifest = JSON.parse(bytes.toString()) as PulledImage['manifest'];
  const blob = async (digest: string): Promise<Buffer> => {
    const b = await fetch(`${url}/v2/${name}/blobs/${digest}`);
    assert.equal(b.status, 200);
    const body = Buffer.from(await b.arrayBuffer());
    assert.equal(sha256(body), digest, 'a blob is the bytes its digest names');
    return body;
  };
  const config = JSON.parse((await blob(manifest.config.digest)).toString()) as PulledImage['config'];
  const layers = [];
  for (const l of manifest.layers) layers.push(await blob(l.digest));
  return { digest: sha256(bytes), manifest, config, layers };
}
