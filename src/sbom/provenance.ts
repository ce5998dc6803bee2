// SLSA v1 provenance of one image manifest, as an in-toto Statement v1: what was asked for (the
// image name, tag and platform), how it was built (layering, budget, popularity data,
// compression), from what (the package source and revision, a fetched nixpkgs tarball, the
// derivations), by which nixery-ts. No wall-clock time: the same image, the same bytes.

import type { AttestationInput } from './model.js';

export const IN_TOTO_MEDIA_TYPE = 'application/vnd.in-toto+json';
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const SLSA_PROVENANCE = 'https://slsa.dev/provenance/v1';
/** What the parameters mean: an image built by nixery-ts from Nix packages (see README, Provenance). */
export const BUILD_TYPE = 'urn:nixery-ts:build-type:image:v1';

interface ResourceDescriptor {
  name?: string;
  uri?: string;
  digest?: Record<string, string>;
  annotations?: Record<string, unknown>;
}

/** The parameters a rebuild needs (what `nixery verify` reads back). */
export interface ProvenanceParameters {
  externalParameters: { image: string; tag: string; platform: string };
  internalParameters: { layering: string; budget: number; popularity: string; compression: string; system: string; source: string; revision: string | null };
}

export function slsaProvenance(input: AttestationInput): Buffer {
  const { image, source, build } = input;
  const resolved: ResourceDescriptor[] = [];
  const gitCommit = source.revision && /^[0-9a-f]{40}$/.test(source.revision) ? { gitCommit: source.revision } : undefined;
  if (source.kind === 'git' && source.uri) resolved.push({ name: 'source', uri: `git+${source.uri}`, ...(gitCommit ? { digest: gitCommit } : {}) });
  else if (source.kind === 'channel' && source.uri) resolved.push({ name: 'source', uri: `git+${source.uri}`, ...(gitCommit ? { digest: gitCommit } : {}) });
  else resolved.push({ name: 'source', uri: 'urn:nixery-ts:local-directory', annotations: { revision: source.revision } });
  if (source.tarball) {
    resolved.push({
      name: 'nixpkgs tarball',
      uri: source.tarball.uri,
      ...(source.tarball.narSha256 ? { digest: { sha256: source.tarball.narSha256 } } : {}),
      ...(source.tarball.storePath ? { annotations: { storePath: source.tarball.storePath, digestOf: 'the NAR of the unpacked tarball' } } : {}),
    });
  }
  for (const p of input.packages) {
    resolved.push({ name: p.attrPath, uri: `file://${p.drvPath}`, annotations: { outputs: p.outputs } });
  }
  const parameters: ProvenanceParameters = {
    externalParameters: { image: image.name, tag: image.tag, platform: image.platform },
    internalParameters: {
      layering: build.layering,
      budget: build.budget,
      popularity: build.popularity,
      compression: build.compression,
      system: image.system,
      source: source.description,
      revision: source.revision,
    },
  };
  const statement = {
    _type: STATEMENT_TYPE,
    subject: [{ name: image.name, digest: { sha256: image.manifest.digest.slice('sha256:'.length) } }],
    predicateType: SLSA_PROVENANCE,
    predicate: {
      buildDefinition: { buildType: BUILD_TYPE, ...parameters, resolvedDependencies: resolved },
      runDetails: {
        builder: { id: `pkg:npm/${input.tool.name}@${input.tool.version}`, version: { [input.tool.name]: input.tool.version } },
        metadata: { invocationId: `${image.name}@${image.manifest.digest}` },
      },
    },
  };
  return Buffer.from(JSON.stringify(statement));
}
