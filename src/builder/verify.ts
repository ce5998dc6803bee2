// `nixery verify REF`: reads an image's SLSA provenance from a registry (its referrers), and
// compares the image with the one built here from the same parameters: the same manifest digest
// is a match; otherwise which of the config and layers differ, and why that may be (another
// source revision, other popularity data). The build itself is the CLI's (`nixery build`'s).

import { VerifyError } from '../errors.js';
import { DIGEST_REGEXP } from '../image/digest.js';
import { MEDIA_TYPES } from '../manifest/manifest.js';
import { IN_TOTO_MEDIA_TYPE, SLSA_PROVENANCE, STATEMENT_TYPE, type ProvenanceParameters } from '../sbom/provenance.js';
import { storePathName } from '../util/store-path.js';
import type { BuiltImage } from './types.js';

export interface RemoteRef {
  /** host[:port] of the registry. */
  registry: string;
  name: string;
  /** A tag or a digest. */
  reference: string;
}

/** `host[:port]/name[:tag|@sha256:…]` (tag `latest` when neither is given). */
export function parseRemoteRef(ref: string): RemoteRef {
  const slash = ref.indexOf('/');
  if (slash <= 0) throw new VerifyError(`${JSON.stringify(ref)} names no registry: expected host[:port]/name[:tag|@digest]`);
  const registry = ref.slice(0, slash);
  let rest = ref.slice(slash + 1);
  let reference = 'latest';
  const at = rest.indexOf('@');
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_REGEXP.test(reference)) throw new VerifyError(`invalid digest ${JSON.stringify(reference)}: expected sha256:<64 hex>`);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon > rest.lastIndexOf('/')) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  if (rest === '') throw new VerifyError(`${JSON.stringify(ref)} names no image`);
  return { registry, name: rest, reference };
}

interface ManifestShape {
  config: { digest: string };
  layers: Array<{ digest: string }>;
}

export interface RemoteProvenance {
  /** The image manifest the provenance is about. */
  digest: string;
  manifest: ManifestShape;
  parameters: ProvenanceParameters;
}

/** The image manifest `ref` names on the registry at `base` (http(s)://host:port) and its provenance. */
export async function fetchProvenance(base: string, ref: RemoteRef): Promise<RemoteProvenance> {
  const get = async (path: string, accept?: string): Promise<Response> => {
    let res: Response;
    try {
      res = await fetch(`${base}/v2/${ref.name}${path}`, { headers: accept ? { Accept: accept } : {} });
    } catch (err) {
      throw new VerifyError(`cannot reach ${base}: ${(err as Error).message}`);
    }
    if (!res.ok) throw new VerifyError(`${base}/v2/${ref.name}${path} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    return res;
  };
  const m = await get(`/manifests/${ref.reference}`, MEDIA_TYPES.ociManifest);
  const bytes = Buffer.from(await m.arrayBuffer());
  const digest = m.headers.get('docker-content-digest') ?? '';
  const manifest = JSON.parse(bytes.toString()) as ManifestShape;
  if (!DIGEST_REGEXP.test(digest) || !Array.isArray(manifest.layers)) throw new VerifyError(`${ref.name}:${ref.reference} is not an image manifest`);
  const index = (await (await get(`/referrers/${digest}?artifactType=${encodeURIComponent(IN_TOTO_MEDIA_TYPE)}`)).json()) as { manifests?: Array<{ digest: string; artifactType?: string }> };
  const found = (index.manifests ?? []).find((d) => d.artifactType === IN_TOTO_MEDIA_TYPE);
  if (!found) throw new VerifyError(`the registry lists no provenance for ${ref.name}@${digest}`);
  const artifact = (await (await get(`/manifests/${found.digest}`, MEDIA_TYPES.ociManifest)).json()) as { subject?: { digest?: string }; layers?: Array<{ digest: string }> };
  if (artifact.subject?.digest !== digest || !artifact.layers?.[0]) throw new VerifyError(`the provenance ${found.digest} is not about ${digest}`);
  const statement = (await (await get(`/blobs/${artifact.layers[0].digest}`)).json()) as {
    _type?: string;
    predicateType?: string;
    subject?: Array<{ digest?: { sha256?: string } }>;
    predicate?: { buildDefinition?: ProvenanceParameters };
  };
  const def = statement.predicate?.buildDefinition;
  if (statement._type !== STATEMENT_TYPE || statement.predicateType !== SLSA_PROVENANCE || !def?.externalParameters || !def.internalParameters) {
    throw new VerifyError(`${artifact.layers[0].digest} is not SLSA v1 provenance from nixery-ts`);
  }
  if (statement.subject?.[0]?.digest?.sha256 !== digest.slice('sha256:'.length)) throw new VerifyError(`the provenance's subject is not ${digest}`);
  return { digest, manifest, parameters: { externalParameters: def.externalParameters, internalParameters: def.internalParameters } };
}

export interface Comparison {
  match: boolean;
  registry: string;
  local: string;
  /** One line per difference (config, each layer, and what may explain them). */
  differences: string[];
}

/** The registry's image against the one built here. */
export function compareImages(remote: RemoteProvenance, local: BuiltImage, notes: readonly string[]): Comparison {
  const localDigest = local.manifests.oci.digest;
  if (localDigest === remote.digest) return { match: true, registry: remote.digest, local: localDigest, differences: [] };
  const mine = JSON.parse(local.manifests.oci.bytes.toString()) as ManifestShape;
  const differences = [...notes];
  if (mine.config.digest !== remote.manifest.config.digest) differences.push(`config: the registry's ${remote.manifest.config.digest}, here ${mine.config.digest}`);
  const count = Math.max(mine.layers.length, remote.manifest.layers.length);
  for (let i = 0; i < count; i++) {
    const theirs = remote.manifest.layers[i]?.digest ?? '(none)';
    const ours = mine.layers[i]?.digest ?? '(none)';
    if (theirs === ours) continue;
    const paths = (local.layers[i]?.storePaths ?? []).map((p) => storePathName(p.path));
    differences.push(`layer ${i + 1}: the registry's ${theirs}, here ${ours}${paths.length ? ` (${paths.slice(0, 5).join(', ')}${paths.length > 5 ? ', …' : ''})` : i === mine.layers.length - 1 ? ' (the customisation layer)' : ''}`);
  }
  return { match: false, registry: remote.digest, local: localDigest, differences };
}
