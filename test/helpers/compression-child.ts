// Run as a process of its own (node dist/test/helpers/compression-child.js '<env JSON>'): starts
// a stand-in registry on a fresh store and storage with the given settings, pulls
// `bigmix/hello` and prints its OCI manifest digest and layer digests as one JSON line. The
// determinism tests compare that with what another process built.

import { COMPRESSION_CATALOGUE, pullImage } from './compression.js';
import { startStandInRegistry } from './registry.js';

const env = JSON.parse(process.argv[2] ?? '{}') as Record<string, string>;
const r = await startStandInRegistry(env, { catalogue: COMPRESSION_CATALOGUE });
try {
  const image = await pullImage(r.url, 'bigmix/hello');
  process.stdout.write(`${JSON.stringify({ digest: image.digest, layers: image.manifest.layers.map((l) => l.digest) })}\n`);
} finally {
  await r.close();
}
