// The SPDX 2.3 JSON SBOM of one image manifest: a package for the image and one per store path
// (CONTAINS from the image, DEPENDS_ON for runtime references). Written by hand (the format is
// small): fixed key order, sorted lists, no wall-clock time, so the bytes are a pure function of
// the input. `spdxProblems` checks the fields SPDX 2.3 requires; a document that fails it is
// never stored.

import { isoSeconds, nixPurl, storeHashPart, type AttestationInput } from './model.js';
import { uuidOf } from './cyclonedx.js';

export const SPDX_MEDIA_TYPE = 'application/spdx+json';

/** SPDX ids as they may appear in a license expression (an id, or a LicenseRef-). */
const LICENSE_ID = /^[A-Za-z0-9][A-Za-z0-9.+-]*$/;

interface SpdxPackage {
  SPDXID: string;
  name: string;
  versionInfo?: string;
  packageFileName?: string;
  downloadLocation: string;
  filesAnalyzed: false;
  primaryPackagePurpose?: string;
  checksums?: Array<{ algorithm: 'SHA256'; checksumValue: string }>;
  licenseConcluded: string;
  licenseDeclared: string;
  copyrightText: string;
  externalRefs?: Array<{ referenceCategory: string; referenceType: string; referenceLocator: string }>;
  comment?: string;
}

export function spdxSbom(input: AttestationInput): Buffer {
  const { image, source } = input;
  const imageId = 'SPDXRef-Image';
  const idOf = (path: string) => `SPDXRef-StorePath-${storeHashPart(path)}`;
  const imagePackage: SpdxPackage = {
    SPDXID: imageId,
    name: image.name,
    versionInfo: image.manifest.digest,
    downloadLocation: 'NOASSERTION',
    filesAnalyzed: false,
    primaryPackagePurpose: 'CONTAINER',
    checksums: [{ algorithm: 'SHA256', checksumValue: image.manifest.digest.slice('sha256:'.length) }],
    licenseConcluded: 'NOASSERTION',
    licenseDeclared: 'NOASSERTION',
    copyrightText: 'NOASSERTION',
    comment: [`tag ${image.tag}`, `platform ${image.platform}`, `source ${source.description}`].join('; '),
  };
  const packages: SpdxPackage[] = input.components.map((c) => {
    const ids = c.licenses.filter((l) => LICENSE_ID.test(l));
    return {
      SPDXID: idOf(c.path),
      name: c.name,
      ...(c.version ? { versionInfo: c.version } : {}),
      packageFileName: c.path,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      primaryPackagePurpose: 'LIBRARY',
      ...(c.narSha256 ? { checksums: [{ algorithm: 'SHA256' as const, checksumValue: c.narSha256 }] } : {}),
      licenseConcluded: 'NOASSERTION',
      // A list in meta.license is read as every license applying (AND).
      licenseDeclared: ids.length === 0 ? 'NOASSERTION' : ids.length === 1 ? ids[0]! : ids.join(' AND '),
      copyrightText: 'NOASSERTION',
      externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: nixPurl(c) }],
      comment: [`NAR size ${c.narSize}`, ...(c.deriver ? [`derivation ${c.deriver}`] : []), ...(c.layer ? [`layer ${c.layer}`] : [])].join('; '),
    };
  });
  const relationships: Array<{ spdxElementId: string; relationshipType: string; relatedSpdxElement: string }> = [
    { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: imageId },
  ];
  const known = new Set(input.components.map((c) => c.path));
  for (const c of input.components) relationships.push({ spdxElementId: imageId, relationshipType: 'CONTAINS', relatedSpdxElement: idOf(c.path) });
  for (const c of input.components) {
    for (const ref of c.references) if (known.has(ref)) relationships.push({ spdxElementId: idOf(c.path), relationshipType: 'DEPENDS_ON', relatedSpdxElement: idOf(ref) });
  }
  const doc = {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `${image.name}@${image.manifest.digest}`,
    documentNamespace: `urn:uuid:${uuidOf(`spdx ${image.manifest.digest}`)}`,
    creationInfo: {
      created: isoSeconds(input.timestamp),
      creators: [`Tool: ${input.tool.name}-${input.tool.version}`],
      comment: `From the Nix closure the image was built from; source ${source.description}${source.revision ? ` at ${source.revision}` : ''}.`,
    },
    documentDescribes: [imageId],
    packages: [imagePackage, ...packages],
    relationships,
  };
  const problems = spdxProblems(doc);
  if (problems.length > 0) throw new Error(`the SPDX document of ${image.name}@${image.manifest.digest} is not valid: ${problems.join('; ')}`);
  return Buffer.from(JSON.stringify(doc));
}

/** What an SPDX 2.3 JSON document lacks of the fields the specification requires (empty: none). */
export function spdxProblems(doc: unknown): string[] {
  const problems: string[] = [];
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const str = (o: Record<string, unknown>, key: string, where: string) => {
    if (typeof o[key] !== 'string' || o[key] === '') problems.push(`${where}: ${key} is missing`);
  };
  if (!isObj(doc)) return ['not a JSON object'];
  if (doc.spdxVersion !== 'SPDX-2.3') problems.push('spdxVersion is not SPDX-2.3');
  if (doc.dataLicense !== 'CC0-1.0') problems.push('dataLicense is not CC0-1.0');
  if (doc.SPDXID !== 'SPDXRef-DOCUMENT') problems.push('SPDXID is not SPDXRef-DOCUMENT');
  str(doc, 'name', 'document');
  if (typeof doc.documentNamespace !== 'string' || !/^[a-z][a-z0-9+.-]*:\S+$/i.test(doc.documentNamespace) || doc.documentNamespace.includes('#')) problems.push('documentNamespace is not a URI without #');
  const info = doc.creationInfo;
  if (!isObj(info) || typeof info.created !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(info.created) || !Array.isArray(info.creators) || info.creators.length === 0) {
    problems.push('creationInfo needs created (YYYY-MM-DDThh:mm:ssZ) and creators');
  }
  const ids = new Set<string>(['SPDXRef-DOCUMENT']);
  const packages = Array.isArray(doc.packages) ? doc.packages : [];
  for (const [i, p] of packages.entries()) {
    if (!isObj(p)) {
      problems.push(`package ${i}: not an object`);
      continue;
    }
    const where = `package ${i}`;
    for (const key of ['SPDXID', 'name', 'downloadLocation']) str(p, key, where);
    if (typeof p.SPDXID === 'string') {
      if (!/^SPDXRef-[A-Za-z0-9.-]+$/.test(p.SPDXID)) problems.push(`${where}: SPDXID ${p.SPDXID} has characters SPDX does not allow`);
      if (ids.has(p.SPDXID)) problems.push(`${where}: SPDXID ${p.SPDXID} is used twice`);
      ids.add(p.SPDXID);
    }
    if (p.filesAnalyzed !== false && p.filesAnalyzed !== undefined) problems.push(`${where}: filesAnalyzed without files`);
    for (const c of Array.isArray(p.checksums) ? p.checksums : []) {
      if (!isObj(c) || c.algorithm !== 'SHA256' || typeof c.checksumValue !== 'string' || !/^[0-9a-f]{64}$/.test(c.checksumValue)) problems.push(`${where}: a checksum is not SHA256 hex`);
    }
  }
  for (const [i, r] of (Array.isArray(doc.relationships) ? doc.relationships : []).entries()) {
    if (!isObj(r) || typeof r.relationshipType !== 'string' || !ids.has(String(r.spdxElementId)) || !ids.has(String(r.relatedSpdxElement))) problems.push(`relationship ${i}: names an element the document does not have`);
  }
  for (const d of Array.isArray(doc.documentDescribes) ? doc.documentDescribes : []) if (!ids.has(String(d))) problems.push(`documentDescribes names ${String(d)}, which the document does not have`);
  return problems;
}
