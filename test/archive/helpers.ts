// Helpers for the archive tests: temp dirs, packing to a file, and reading archives back with
// real readers (GNU tar, gzip, Python's tarfile).

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packEntries, type LayerDigests } from '../../src/archive/pack.js';
import type { TarEntry } from '../../src/archive/tar.js';

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'nixery-archive-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs a command; throws with its stderr unless it exits 0. Returns stdout. */
export function run(cmd: string, args: string[], input?: Buffer): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr?.toString()}`);
  return r.stdout;
}

export async function packToFile(
  entries: Iterable<TarEntry> | AsyncIterable<TarEntry>,
  file: string,
  pack: (sink: NodeJS.WritableStream) => Promise<LayerDigests> = (sink) => packEntries(entries, sink),
): Promise<{ digests: LayerDigests; gz: Buffer; tar: Buffer }> {
  const out = createWriteStream(file);
  let digests: LayerDigests;
  try {
    digests = await pack(out);
  } finally {
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
  const gz = await readFile(file);
  const tar = run('gzip', ['-dc', file]);
  return { digests, gz, tar };
}

export const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface PyMember {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
  size: number;
  linkname: string;
  pax: Record<string, string>;
}

const PY_LIST = `
import sys, tarfile, json
out = []
with tarfile.open(sys.argv[1], 'r:*', encoding='utf-8', errors='surrogateescape') as t:
    for m in t:
        out.append(dict(name=m.name.encode('utf-8','surrogateescape').decode('latin-1'), type=m.type.decode('latin-1'), mode=m.mode, uid=m.uid, gid=m.gid,
            uname=m.uname, gname=m.gname, mtime=m.mtime, size=m.size, linkname=m.linkname.encode('utf-8','surrogateescape').decode('latin-1'),
            pax={k: v.encode('utf-8','surrogateescape').decode('latin-1') for k, v in m.pax_headers.items()}))
print(json.dumps(out))
`;

/** Members as Python's tarfile reads them; names are latin-1 strings of the raw bytes. */
export function pythonList(file: string): PyMember[] {
  return JSON.parse(run('python3', ['-c', PY_LIST, file]).toString()) as PyMember[];
}

/** Raw bytes of a name as a latin-1 string, to compare with pythonList's names. */
export const raw = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

/** Writes a one-layer OCI image layout around a packed layer, tagged `test`, for umoci. */
export async function ociLayout(layout: string, layerFile: string, digests: LayerDigests): Promise<string> {
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
  const putBlob = async (bytes: Buffer): Promise<string> => {
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(layout, 'blobs', 'sha256', hex), bytes);
    return `sha256:${hex}`;
  };
  await putBlob(await readFile(layerFile));
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [digests.diffId] } }));
  const configDigest = await putBlob(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digests.digest, size: digests.size }],
    }),
  );
  const manifestDigest = await putBlob(manifest);
  await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'test' } }],
    }),
  );
  return `${layout}:test`;
}

/** Deterministic mixed data: runs of text-like bytes and noise. */
export function sample(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = (i >> 12) % 3 === 0 ? x & 0xff : 97 + ((x >>> 8) % 6);
  }
  return out;
}
