// `nixery build --sbom DIR` (issue 20, part 6): the SBOMs and provenance written next to the OCI
// layout, and in the layout as referrers of the image manifest (index.json lists their
// manifests, untagged); skopeo and umoci still read the image by its tag. A multi-platform
// build writes each platform's documents.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { spdxProblems } from '../../src/sbom/spdx.js';

const execFileP = promisify(execFile);
const CLI = path.resolve('dist/src/cli.js');

async function build(args: string[], storage: string): Promise<{ digest: string; sbom: string[]; platforms?: Array<{ digest: string; platform: string }> }> {
  const env = { ...process.env, NIX_CONFIG: 'substituters =', NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: storage };
  const { stdout } = await execFileP('node', [CLI, 'build', ...args, '--json'], { env, maxBuffer: 16 * 1024 * 1024, timeout: 300_000 });
  return JSON.parse(stdout);
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('nixery build --sbom', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-e2e-sbom-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('writes the documents, and puts them in the OCI layout as referrers of the image', async () => {
    const out = path.join(dir, 'oci');
    const sbomDir = path.join(dir, 'sbom');
    const summary = await build(['hello/jq', '--output', `oci:${out}`, '--sbom', sbomDir], path.join(dir, 'storage'));
    assert.deepEqual((await readdir(sbomDir)).sort(), ['sbom.cdx.json', 'sbom.provenance.intoto.json', 'sbom.spdx.json']);
    assert.equal(summary.sbom.length, 3);
    const cdx = JSON.parse(await readFile(path.join(sbomDir, 'sbom.cdx.json'), 'utf8'));
    assert.equal(cdx.metadata.component.version, summary.digest);
    assert.ok(cdx.components.some((c: { name: string; licenses?: unknown }) => c.name === 'jq' && JSON.stringify(c.licenses) === '[{"license":{"id":"MIT"}}]'));
    assert.deepEqual(spdxProblems(JSON.parse(await readFile(path.join(sbomDir, 'sbom.spdx.json'), 'utf8'))), []);

    const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; artifactType?: string; annotations?: Record<string, string> }> };
    assert.equal(index.manifests[0]!.digest, summary.digest);
    const referrers = index.manifests.filter((m) => m.artifactType);
    assert.deepEqual(referrers.map((m) => m.artifactType), ['application/vnd.cyclonedx+json', 'application/spdx+json', 'application/vnd.in-toto+json']);
    for (const r of referrers) {
      assert.equal(r.annotations?.['org.opencontainers.image.ref.name'], undefined, 'referrers are untagged');
      const manifest = JSON.parse(await readFile(path.join(out, 'blobs/sha256', r.digest.slice(7)), 'utf8'));
      assert.equal(manifest.subject.digest, summary.digest);
      const doc = await readFile(path.join(out, 'blobs/sha256', manifest.layers[0].digest.slice(7)));
      assert.equal(sha256(doc), manifest.layers[0].digest);
      const file = { 'application/vnd.cyclonedx+json': 'sbom.cdx.json', 'application/spdx+json': 'sbom.spdx.json', 'application/vnd.in-toto+json': 'sbom.provenance.intoto.json' }[r.artifactType!]!;
      assert.ok(doc.equals(await readFile(path.join(sbomDir, file))), `${file} is the layout's document`);
    }

    const { stdout } = await execFileP('skopeo', ['inspect', `oci:${out}:latest`]);
    assert.equal(JSON.parse(stdout).Digest, summary.digest);
    const { stdout: tags } = await execFileP('umoci', ['ls', '--layout', out]);
    assert.equal(tags.trim(), 'latest');
  });

  test('several platforms: each one its documents', async () => {
    const sbomDir = path.join(dir, 'sbom-multi');
    const summary = await build(['hello', '--platform', 'linux/amd64', '--platform', 'linux/arm64', '--output', `oci:${path.join(dir, 'oci-multi')}`, '--sbom', sbomDir], path.join(dir, 'storage'));
    assert.deepEqual((await readdir(sbomDir)).sort(), [
      'linux-amd64.cdx.json', 'linux-amd64.provenance.intoto.json', 'linux-amd64.spdx.json',
      'linux-arm64.cdx.json', 'linux-arm64.provenance.intoto.json', 'linux-arm64.spdx.json',
    ]);
    for (const p of summary.platforms!) {
      const statement = JSON.parse(await readFile(path.join(sbomDir, `${p.platform.replace('/', '-')}.provenance.intoto.json`), 'utf8'));
      assert.equal(statement.subject[0].digest.sha256, p.digest.slice(7));
    }
  });
});
