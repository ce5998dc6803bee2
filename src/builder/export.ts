// Writes a built image out of storage: an OCI image layout directory (`oci:DIR`) or a
// docker-archive tarball (`docker-archive:FILE`) that `docker load` and `ctr images import`
// accept. The archive holds both an OCI layout and Docker's manifest.json, as `docker save` does.
// A multi-platform image goes to an OCI layout whose tag names the image index (`exportIndex`).
// Both name the image as it was asked for (`nixery build shell/hello` loads as shell/hello), not
// by the canonical name, which sorts the components (hello/shell would ask for a package "shell").
// With `--sbom DIR` the SBOMs and provenance are written to DIR (`exportAttestations`) and go
// into an OCI layout as referrers of their manifests.

import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BlobNotFoundError, ConfigError } from '../errors.js';
import type { Storage } from '../storage/storage.js';
import { blobKey, digestHex } from './layout.js';
import { MEDIA_TYPES } from '../manifest/manifest.js';
import type { BuiltImage } from './builder.js';
import type { ImageIndex } from '../manifest/image-index.js';
import { writeTar } from '../archive/tar.js';
import { ARTIFACT_TYPES, artifactDigests } from './attest.js';
import type { TarEntry } from '../archive/tar.js';
import { pullName } from '../image/name.js';

export interface OutputTarget {
  kind: 'oci' | 'docker-archive';
  path: string;
}

export function parseOutputTarget(spec: string): OutputTarget {
  const m = /^(oci|docker-archive):(.+)$/.exec(spec);
  if (!m) throw new ConfigError(`invalid --output ${JSON.stringify(spec)}: expected oci:DIR or docker-archive:FILE`);
  return { kind: m[1] as OutputTarget['kind'], path: path.resolve(m[2]!) };
}

/** The name an exported image carries: the one asked for, else one that pulls it (meta-packages first). */
function exportName(built: BuiltImage, name: string | undefined): string {
  return `${name ?? pullName(built.image)}:${built.image.tag}`;
}

/** What goes into an OCI layout besides the image: its SBOMs and provenance as referrers (OCI 1.1). */
export interface LayoutOptions {
  referrers?: boolean;
}

/** `name`: the image name as requested (validated), which `docker load` and `ctr images import` list. */
export async function exportImage(built: BuiltImage, storage: Storage, target: OutputTarget, name?: string, options: LayoutOptions = {}): Promise<void> {
  const ref = exportName(built, name);
  if (target.kind === 'oci') {
    await writeOciLayout(built, storage, target.path, ref, undefined, undefined, options.referrers ? [built] : []);
    return;
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-export-'));
  try {
    await writeOciLayout(built, storage, dir, ref);
    const layers = built.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`);
    const dockerManifest = [
      {
        Config: `blobs/sha256/${digestHex(built.manifests.config.digest)}`,
        RepoTags: [ref],
        Layers: layers,
      },
    ];
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(dockerManifest));
    await writeTarOfDirectory(dir, target.path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A multi-platform image as an OCI image layout: every platform's OCI manifest, config and
 * layers, the OCI image index over them, and index.json naming that index with the tag.
 */
export async function exportIndex(built: readonly BuiltImage[], index: ImageIndex, storage: Storage, target: OutputTarget, name?: string, options: LayoutOptions = {}): Promise<void> {
  if (target.kind !== 'oci') throw new ConfigError(`${target.kind}:FILE holds one platform: write several platforms to oci:DIR, or build one --platform`);
  const digests = [index.oci.digest, ...built.flatMap((b) => [b.manifests.oci.digest, b.manifests.config.digest, ...b.layers.map((l) => l.digest)])];
  await writeOciLayout(built[0]!, storage, target.path, exportName(built[0]!, name), digests, index.oci, options.referrers ? built : []);
}

/** File names of the documents `--sbom DIR` writes, by artifact type. */
const DOCUMENT_FILES: Record<string, string> = {
  [ARTIFACT_TYPES.cyclonedx]: 'cdx.json',
  [ARTIFACT_TYPES.spdx]: 'spdx.json',
  [ARTIFACT_TYPES.provenance]: 'provenance.intoto.json',
};

/**
 * Writes each image's SBOMs (CycloneDX, SPDX) and provenance into `dir`, as they are stored:
 * `sbom.cdx.json`, `sbom.spdx.json`, `sbom.provenance.intoto.json` for one platform,
 * `<os>-<arch>.cdx.json` … for several. Returns the files written.
 */
export async function exportAttestations(built: readonly BuiltImage[], storage: Storage, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const b of built) {
    if (!b.artifacts?.length) throw new ConfigError(`${b.image.name}:${b.image.tag} (${b.image.arch.platform}) has no SBOM: it was recorded by an older version; build it again with an empty storage`);
    const stem = built.length === 1 ? 'sbom' : b.image.arch.platform.replaceAll('/', '-');
    for (const a of b.artifacts) {
      const bytes = await storage.read(blobKey(a.document.digest));
      if (!bytes) throw new BlobNotFoundError(a.document.digest);
      const file = path.join(dir, `${stem}.${DOCUMENT_FILES[a.artifactType] ?? `${digestHex(a.document.digest)}.json`}`);
      await writeFile(file, bytes);
      written.push(file);
    }
  }
  return written;
}

/**
 * An OCI image layout: oci-layout, every blob, and index.json naming `top` (the image's OCI
 * manifest, or a multi-platform index) with the tag as ref.name and `ref` (name:tag) for containerd.
 */
async function writeOciLayout(
  built: BuiltImage,
  storage: Storage,
  dir: string,
  ref: string,
  digests = [built.manifests.oci.digest, built.manifests.config.digest, ...built.layers.map((l) => l.digest)],
  top: { mediaType: string; digest: string; size: number } = built.manifests.oci,
  /** Images whose SBOMs and provenance go in too, as referrers of their manifests. */
  attested: readonly BuiltImage[] = [],
): Promise<void> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const artifacts = attested.flatMap((b) => b.artifacts ?? []);
  for (const digest of [...digests, ...artifactDigests(artifacts)]) {
    const file = path.join(blobs, digestHex(digest));
    if (await exists(file)) continue;
    const stream = await storage.get(blobKey(digest));
    if (!stream) throw new BlobNotFoundError(digest);
    await pipeline(stream, createWriteStream(file));
  }
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [
      {
        mediaType: top.mediaType,
        digest: top.digest,
        size: top.size,
        annotations: {
          'io.containerd.image.name': ref,
          'org.opencontainers.image.ref.name': built.image.tag,
        },
      },
      // Referrers in a layout: their manifests listed in index.json, untagged (as oras writes them).
      ...artifacts.map((a) => ({ ...a.manifest, artifactType: a.artifactType, ...(a.annotations ? { annotations: a.annotations } : {}) })),
    ],
  };
  await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
}

async function writeTarOfDirectory(dir: string, file: string): Promise<void> {
  const entries: TarEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(path.join(dir, rel))).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await stat(path.join(dir, r));
      if (st.isDirectory()) {
        entries.push({ type: 'directory', path: r, mode: 0o755 });
        await walk(r);
      } else {
        entries.push({ type: 'file', path: r, mode: 0o644, size: st.size, source: { file: path.join(dir, r) } });
      }
    }
  };
  await walk('');
  const out = createWriteStream(file);
  const sink = {
    write: (chunk: Buffer) => (out.write(chunk) ? undefined : new Promise<void>((resolve) => out.once('drain', resolve))),
  };
  try {
    await writeTar(entries, sink);
  } finally {
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}
