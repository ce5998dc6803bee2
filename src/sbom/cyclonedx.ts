// The CycloneDX 1.6 JSON SBOM of one image manifest, made and serialised with the OWASP
// CycloneDX library: one `library` component per store path (bom-ref = the store path), the
// image as metadata.component, dependencies = the runtime references. Lists are sorted by the
// library and no wall-clock time or random serial number goes in, so the bytes are a pure
// function of the input.

import * as CDX from '@cyclonedx/cyclonedx-library';
import { createHash } from 'node:crypto';
import { isoSeconds, nixPurl, type AttestationInput } from './model.js';

export const CYCLONEDX_MEDIA_TYPE = 'application/vnd.cyclonedx+json';

const serializer = new CDX.Serialize.JsonSerializer(new CDX.Serialize.JSON.Normalize.Factory(CDX.Spec.Spec1dot6));

export function cycloneDxSbom(input: AttestationInput): Buffer {
  const { image, source } = input;
  const bom = new CDX.Models.Bom({ serialNumber: `urn:uuid:${uuidOf(`cyclonedx ${image.manifest.digest}`)}` });
  bom.metadata.timestamp = new Date(input.timestamp * 1000);
  bom.metadata.tools.components.add(new CDX.Models.Component(CDX.Enums.ComponentType.Application, input.tool.name, { version: input.tool.version }));

  const root = new CDX.Models.Component(CDX.Enums.ComponentType.Container, image.name, { version: image.manifest.digest, bomRef: image.manifest.digest });
  for (const [name, value] of [
    ['nixery:tag', image.tag],
    ['nixery:platform', image.platform],
    ['nixery:nix_system', image.system],
  ]) root.properties.add(new CDX.Models.Property(name!, value!));
  bom.metadata.component = root;
  for (const [name, value] of [
    ['nixery:source', source.description],
    ['nixery:source_uri', source.uri],
    ['nixery:revision', source.revision],
  ]) if (value) bom.metadata.properties.add(new CDX.Models.Property(name!, value));

  const byPath = new Map<string, CDX.Models.Component>();
  for (const c of input.components) {
    const component = new CDX.Models.Component(CDX.Enums.ComponentType.Library, c.name, {
      bomRef: c.path,
      ...(c.version ? { version: c.version } : {}),
      purl: nixPurl(c),
    });
    if (c.narSha256) component.hashes.set(CDX.Enums.HashAlgorithm['SHA-256'], c.narSha256);
    for (const id of c.licenses) component.licenses.add(CDX.SPDX.isSupportedSpdxId(id) ? new CDX.Models.SpdxLicense(id) : new CDX.Models.NamedLicense(id));
    component.properties.add(new CDX.Models.Property('nix:store_path', c.path));
    component.properties.add(new CDX.Models.Property('nix:nar_size', String(c.narSize)));
    if (c.deriver) component.properties.add(new CDX.Models.Property('nix:drv_path', c.deriver));
    if (c.layer) component.properties.add(new CDX.Models.Property('oci:layer_digest', c.layer));
    byPath.set(c.path, component);
    bom.components.add(component);
  }
  for (const c of input.components) {
    const component = byPath.get(c.path)!;
    for (const ref of c.references) {
      const target = byPath.get(ref);
      if (target) component.dependencies.add(target.bomRef);
    }
  }
  for (const r of input.roots) {
    const target = byPath.get(r);
    if (target) root.dependencies.add(target.bomRef);
  }
  return Buffer.from(serializer.serialize(bom, { sortLists: true }));
}

/** A name-based UUID (the layout of version 5, from SHA-256): the same input, the same UUID. */
export function uuidOf(name: string): string {
  const h = createHash('sha256').update(name).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The timestamp the documents carry (for the artifact manifests' annotations). */
export const createdOf = (input: AttestationInput): string => isoSeconds(input.timestamp);
