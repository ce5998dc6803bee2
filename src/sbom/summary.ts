// What the explorer shows of an image's SBOM: how many store paths carry each license, read
// back from the stored CycloneDX document (the same facts a client downloads).

export interface LicenseCount {
  /** An SPDX id (or a license name where the package declared no SPDX id the library knows). */
  license: string;
  storePaths: number;
}

/** The licenses of a CycloneDX SBOM's components, most common first, and how many declare none. */
export function licenseSummary(cyclonedx: Buffer): { licenses: LicenseCount[]; withoutLicense: number } {
  const bom = JSON.parse(cyclonedx.toString('utf8')) as { components?: Array<{ licenses?: Array<{ license?: { id?: string; name?: string }; expression?: string }> }> };
  const counts = new Map<string, number>();
  let withoutLicense = 0;
  for (const c of bom.components ?? []) {
    const ids = new Set((c.licenses ?? []).map((l) => l.license?.id ?? l.license?.name ?? l.expression).filter((x): x is string => typeof x === 'string'));
    if (ids.size === 0) withoutLicense++;
    for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const licenses = [...counts].map(([license, storePaths]) => ({ license, storePaths })).sort((a, b) => b.storePaths - a.storePaths || (a.license < b.license ? -1 : 1));
  return { licenses, withoutLicense };
}
