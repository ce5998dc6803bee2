// The SBOMs (CycloneDX, SPDX) and SLSA provenance of a built image, made with it: a hook the
// packer runs after the manifests, on what the build had in hand (the closure Nix reported, what
// the packages declare, the layers). Each document is stored as a blob and wrapped in an OCI
// artifact manifest whose subject is the image's OCI manifest; the image's record names them
// (`artifacts`), so gc keeps them with the image, scrub checks them, and a missing one rebuilds it.

import { readFileSync } from 'node:fs';
import type { ImageRequest } from '../image/name.js';
import { pullName } from '../image/name.js';
import type { ClosureGraph, ResolvedPackage } from '../nix/types.js';
import type { PinnedSource } from '../nix/source.js';
import { channelArgs } from '../nix/source.js';
import { displayUrl } from '../secrets.js';
import { sha256Digest, type Blob, type ImageManifests } from '../manifest/manifest.js';
import { EMPTY_CONFIG, artifactManifest, type Descriptor } from '../manifest/referrers.js';
import { storePathName } from '../util/store-path.js';
import { splitNameVersion, type AttestationInput, type SbomComponent } from '../sbom/model.js';
import { sha256Hex } from '../sbom/nix-hash.js';
import { CYCLONEDX_MEDIA_TYPE, createdOf, cycloneDxSbom } from '../sbom/cyclonedx.js';
import { SPDX_MEDIA_TYPE, spdxSbom } from '../sbom/spdx.js';
import { IN_TOTO_MEDIA_TYPE, slsaProvenance } from '../sbom/provenance.js';

/** nixery-ts's version (package.json): the SBOMs' tool and the provenance's builder. */
export const TOOL_VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The artifact types this registry makes for every image manifest. */
export const ARTIFACT_TYPES = { cyclonedx: CYCLONEDX_MEDIA_TYPE, spdx: SPDX_MEDIA_TYPE, provenance: IN_TOTO_MEDIA_TYPE } as const;

/** One artifact of an image as its record keeps it: its manifest and the document it carries. */
export interface ArtifactRecord {
  artifactType: string;
  manifest: Descriptor;
  document: Descriptor;
  annotations?: Record<string, string>;
}

/** Every blob digest the artifacts use (their manifests, documents, and the empty config). */
export function artifactDigests(artifacts: readonly ArtifactRecord[] | undefined): string[] {
  if (!artifacts || artifacts.length === 0) return [];
  return [...artifacts.flatMap((a) => [a.manifest.digest, a.document.digest]), EMPTY_CONFIG.digest];
}

export interface AttestRequest {
  image: ImageRequest;
  pinned: PinnedSource;
  resolved: readonly ResolvedPackage[];
  closure: ClosureGraph;
  /** The image's layers (manifest-cache.ts's ImageLayer): which store paths each holds. */
  layers: ReadonlyArray<{ digest: string; storePaths?: ReadonlyArray<{ path: string }> }>;
  manifests: ImageManifests;
  build: AttestationInput['build'];
}

/** What the documents are made from (pure: the same build, the same input). */
export function attestationInput({ image, pinned, resolved, closure, layers, manifests, build }: AttestRequest): AttestationInput {
  const layerOf = new Map<string, string>();
  for (const l of layers) for (const p of l.storePaths ?? []) layerOf.set(p.path, l.digest);
  // A package's metadata applies to every output of its derivation (deriver) and to its own outputs.
  const metaOf = new Map<string, NonNullable<ResolvedPackage['meta']>>();
  for (const p of resolved) {
    if (!p.meta) continue;
    metaOf.set(p.drvPath, p.meta);
    for (const out of Object.values(p.outputs)) metaOf.set(out, p.meta);
  }
  const components: SbomComponent[] = closure.paths.map((info) => {
    const meta = metaOf.get(info.path) ?? (info.deriver ? metaOf.get(info.deriver) : undefined);
    const parsed = splitNameVersion(storePathName(info.path));
    return {
      path: info.path,
      name: meta?.pname || parsed.name,
      version: meta ? meta.version : parsed.version,
      narSha256: info.narHash ? sha256Hex(info.narHash) : null,
      narSize: info.narSize,
      deriver: info.deriver ?? null,
      licenses: meta?.licenses ?? [],
      layer: layerOf.get(info.path) ?? null,
      references: info.references,
    };
  });
  const sourceInfo = resolved.find((p) => p.sourceInfo)?.sourceInfo;
  const { source } = pinned;
  const uri = source.kind === 'git' ? displayUrl(source.url) : source.kind === 'channel' ? displayUrl(source.repoUrl) : null;
  const tarball =
    source.kind === 'channel' && pinned.revision
      ? { uri: displayUrl(channelArgs(source, pinned.revision).url), storePath: sourceInfo?.storePath ?? null, narSha256: sourceInfo?.narHash ? sha256Hex(sourceInfo.narHash) : null }
      : undefined;
  return {
    tool: { name: 'nixery-ts', version: TOOL_VERSION },
    image: {
      name: pullName(image),
      tag: image.tag,
      platform: image.arch.platform,
      system: image.arch.nixSystem,
      manifest: { mediaType: manifests.oci.mediaType, digest: manifests.oci.digest, size: manifests.oci.size },
    },
    source: { kind: source.kind, description: pinned.description, uri, revision: pinned.revision, ...(tarball ? { tarball } : {}) },
    timestamp: sourceInfo?.lastModified ?? 0,
    build,
    roots: closure.roots,
    packages: resolved.map((p) => ({ attrPath: p.attrPath.join('.'), drvPath: p.drvPath, outputs: p.outputs })),
    components,
  };
}

/** The documents and their artifact manifests (every blob to store, and the record's entries). */
export function attestations(input: AttestationInput): { blobs: Blob[]; artifacts: ArtifactRecord[] } {
  const subject = input.image.manifest;
  const annotations = { 'org.opencontainers.image.created': createdOf(input) };
  const documents: Array<[string, Buffer]> = [
    [CYCLONEDX_MEDIA_TYPE, cycloneDxSbom(input)],
    [SPDX_MEDIA_TYPE, spdxSbom(input)],
    [IN_TOTO_MEDIA_TYPE, slsaProvenance(input)],
  ];
  const blobs: Blob[] = [EMPTY_CONFIG];
  const artifacts: ArtifactRecord[] = [];
  for (const [type, bytes] of documents) {
    const document: Blob = { mediaType: type, digest: sha256Digest(bytes), size: bytes.length, bytes };
    const manifest = artifactManifest(type, document, subject, annotations);
    blobs.push(document, manifest);
    artifacts.push({ artifactType: type, manifest: strip(manifest), document: strip(document), annotations });
  }
  return { blobs, artifacts };
}

const strip = ({ mediaType, digest, size }: Descriptor): Descriptor => ({ mediaType, digest, size });
