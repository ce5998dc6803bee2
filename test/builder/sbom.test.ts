// The SBOMs and provenance the builder makes with an image, on real Nix and the example set,
// checked against Nix itself: one component per store path of the image, every NAR hash as
// `nix path-info --json` reports it (converted by `nix hash to-base16`), the references as
// `nix-store -q --references` lists them, the derivations, a license the example set declares,
// and the same bytes from two fresh storages.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { git, initRepo } from '../helpers/git.js';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import { createApp, type App } from '../../src/app.js';
import { parseImageName } from '../../src/image/name.js';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { blobKey } from '../../src/builder/layout.js';
import type { BuiltImage } from '../../src/builder/builder.js';
import { spdxProblems } from '../../src/sbom/spdx.js';
import { EXAMPLE_PKGS, nixEnv } from '../helpers/nix.js';

process.env.NIX_CONFIG ??= 'substituters =';
const execFileP = promisify(execFile);

const IMAGE = 'hello/jq';

async function makeApp(storagePath: string): Promise<App> {
  const config = loadConfig({ NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: storagePath, NIXERY_LOG_LEVEL: 'silent' });
  return createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent' });
}

function nix(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { env: nixEnv(), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
}

/** The documents of a built image, by artifact type, as stored. */
async function documents(dir: string, built: BuiltImage): Promise<Map<string, Buffer>> {
  const storage = new FilesystemStorage(dir);
  const out = new Map<string, Buffer>();
  for (const a of built.artifacts ?? []) out.set(a.artifactType, (await storage.read(blobKey(a.document.digest)))!);
  return out;
}

interface CdxComponent {
  name: string;
  version?: string;
  'bom-ref': string;
  purl: string;
  hashes?: Array<{ alg: string; content: string }>;
  licenses?: Array<{ license: { id?: string; name?: string } }>;
  properties: Array<{ name: string; value: string }>;
}

describe('SBOMs from the closure, checked against Nix', () => {
  let dir: string;
  let app: App;
  let built: BuiltImage;
  let docs: Map<string, Buffer>;
  let cdx: { components: CdxComponent[]; dependencies: Array<{ ref: string; dependsOn?: string[] }>; metadata: { component: { version: string } } };
  let imagePaths: string[];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-sbom-'));
    app = await makeApp(path.join(dir, 'a'));
    built = await app.builder.build(parseImageName(IMAGE));
    docs = await documents(path.join(dir, 'a'), built);
    cdx = JSON.parse(docs.get('application/vnd.cyclonedx+json')!.toString());
    imagePaths = built.layers.flatMap((l) => (l.storePaths ?? []).map((p) => p.path)).sort();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('one component per store path of the image, and the image closed under references', () => {
    assert.equal(built.artifacts?.length, 3);
    assert.equal(cdx.metadata.component.version, built.manifests.oci.digest);
    assert.deepEqual(cdx.components.map((c) => c['bom-ref']).sort(), imagePaths);
    const requisites = nix('nix-store', ['-q', '--requisites', ...imagePaths]).trim().split('\n').sort();
    assert.deepEqual(requisites, imagePaths);
  });

  test('every NAR hash is the one nix path-info reports; every deriver too', () => {
    const info = JSON.parse(nix('nix', ['--extra-experimental-features', 'nix-command', 'path-info', '--json', ...imagePaths])) as Array<{ path: string; narHash: string; deriver?: string }>;
    const hex = nix('nix', ['--extra-experimental-features', 'nix-command', 'hash', 'to-base16', '--type', 'sha256', ...info.map((i) => i.narHash)]).trim().split('\n');
    const byPath = new Map(cdx.components.map((c) => [c['bom-ref'], c]));
    assert.equal(info.length, imagePaths.length);
    for (const [i, entry] of info.entries()) {
      const c = byPath.get(entry.path)!;
      assert.deepEqual(c.hashes, [{ alg: 'SHA-256', content: hex[i] }], entry.path);
      assert.equal(c.properties.find((p) => p.name === 'nix:drv_path')?.value, entry.deriver, entry.path);
    }
  });

  test('dependencies are the references nix-store -q --references lists', () => {
    const deps = new Map(cdx.dependencies.map((d) => [d.ref, (d.dependsOn ?? []).sort()]));
    for (const p of imagePaths) {
      const refs = nix('nix-store', ['-q', '--references', p]).trim().split('\n').filter((r) => r !== '' && r !== p).sort();
      assert.deepEqual(deps.get(p), refs, p);
    }
  });

  test('the licenses the example set declares, with names and versions from the derivations', () => {
    const hello = cdx.components.find((c) => c.name === 'hello')!;
    assert.equal(hello.version, '2.12.1');
    assert.deepEqual(hello.licenses, [{ license: { id: 'GPL-3.0-or-later' } }]);
    // Every output of jq (bin, man, and lib through jq-bin's references) is jq 1.7.1, MIT.
    const jq = cdx.components.filter((c) => c.name === 'jq');
    assert.ok(jq.length >= 2, jq.map((c) => c['bom-ref']).join(' '));
    for (const c of jq) {
      assert.equal(c.version, '1.7.1');
      assert.deepEqual(c.licenses, [{ license: { id: 'MIT' } }]);
    }
    // A path no requested package is: named and versioned from its path.
    const onig = cdx.components.find((c) => c['bom-ref'].endsWith('-oniguruma-6.9.9'))!;
    assert.equal(onig.name, 'oniguruma');
    assert.equal(onig.version, '6.9.9');
    assert.equal(onig.licenses, undefined);
    const spdx = JSON.parse(docs.get('application/spdx+json')!.toString());
    assert.deepEqual(spdxProblems(spdx), []);
    assert.ok(spdx.packages.some((p: { name: string; licenseDeclared: string }) => p.name === 'hello' && p.licenseDeclared === 'GPL-3.0-or-later'));
  });

  test('the provenance names the image, its parameters and its derivations', () => {
    const statement = JSON.parse(docs.get('application/vnd.in-toto+json')!.toString());
    assert.deepEqual(statement.subject, [{ name: 'hello/jq', digest: { sha256: built.manifests.oci.digest.slice(7) } }]);
    const def = statement.predicate.buildDefinition;
    assert.deepEqual(def.externalParameters, { image: 'hello/jq', tag: 'latest', platform: built.image.arch.platform });
    assert.equal(def.internalParameters.compression, app.builder.layers.compression.description);
    assert.match(def.internalParameters.compression, /^gzip\/libdeflate-/);
    assert.equal(def.internalParameters.revision, built.revision);
    const drvs = def.resolvedDependencies.filter((d: { uri: string }) => d.uri.endsWith('.drv')).map((d: { name: string }) => d.name).sort();
    assert.deepEqual(drvs, ['cacert', 'hello', 'iana-etc', 'jq']);
  });

  test('two fresh storages give the same documents, byte for byte', async () => {
    const other = await makeApp(path.join(dir, 'b'));
    const again = await other.builder.build(parseImageName(IMAGE));
    assert.equal(again.fromCache, false);
    assert.equal(again.manifests.oci.digest, built.manifests.oci.digest);
    const docsB = await documents(path.join(dir, 'b'), again);
    assert.deepEqual([...docsB.keys()].sort(), [...docs.keys()].sort());
    for (const [type, bytes] of docs) assert.ok(bytes.equals(docsB.get(type)!), type);
    assert.deepEqual(again.artifacts, built.artifacts);
  });
});

describe('a git source: the timestamp is the commit time, the source and revision are named', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-sbom-git-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('metadata and provenance of an image from a git repository', async () => {
    const repo = path.join(dir, 'repo');
    await mkdir(repo, { recursive: true });
    await cp(EXAMPLE_PKGS, repo, { recursive: true });
    await git(repo, 'init', '-q', '-b', 'main');
    await git(repo, 'add', '-A');
    // A fixed commit time: the documents carry it, not the time of the build.
    await execFileP('git', ['-C', repo, '-c', 'user.email=t@example.org', '-c', 'user.name=test', 'commit', '-qm', 'first'], {
      env: { ...process.env, GIT_COMMITTER_DATE: '2024-05-06T07:08:09Z', GIT_AUTHOR_DATE: '2024-05-06T07:08:09Z' },
    });
    const commit = await git(repo, 'rev-parse', 'HEAD');
    const config = loadConfig({ NIXERY_PKGS_REPO: `file://${repo}`, STORAGE_PATH: path.join(dir, 'storage'), NIXERY_LOG_LEVEL: 'silent' });
    const app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent' });
    const built = await app.builder.build(parseImageName('hello'));
    const docs = await documents(path.join(dir, 'storage'), built);
    const cdx = JSON.parse(docs.get('application/vnd.cyclonedx+json')!.toString());
    assert.equal(cdx.metadata.timestamp, '2024-05-06T07:08:09.000Z');
    assert.ok(cdx.metadata.properties.some((p: { name: string; value: string }) => p.name === 'nixery:revision' && p.value === commit));
    const spdx = JSON.parse(docs.get('application/spdx+json')!.toString());
    assert.equal(spdx.creationInfo.created, '2024-05-06T07:08:09Z');
    const statement = JSON.parse(docs.get('application/vnd.in-toto+json')!.toString());
    assert.deepEqual(statement.predicate.buildDefinition.resolvedDependencies[0], { name: 'source', uri: `git+file://${repo}`, digest: { gitCommit: commit } });
    await app.pins.stop();
    await app.packages.stop();
  });
});

describe('a channel source: the nixpkgs tarball and its NAR hash are in the provenance', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-sbom-channel-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('the tarball URL, where Nix unpacked it, and that path\'s NAR hash as nix path-info reports it', async () => {
    const repo = path.join(dir, 'nixpkgs');
    const commit = await initRepo(repo, EXAMPLE_PKGS);
    await git(repo, 'branch', 'nixos-test');
    const tarballs = path.join(dir, 'tarballs');
    await mkdir(tarballs);
    await execFileP('git', ['-C', repo, 'archive', '--format=tar.gz', `--prefix=nixpkgs-${commit}/`, '-o', path.join(tarballs, `${commit}.tar.gz`), commit]);
    const config = loadConfig({
      NIXERY_CHANNEL: 'nixos-test',
      NIXERY_NIXPKGS_REPO: `file://${repo}`,
      NIXERY_NIXPKGS_TARBALL: `file://${tarballs}/{rev}.tar.gz`,
      STORAGE_PATH: path.join(dir, 'storage'),
      NIXERY_LOG_LEVEL: 'silent',
    });
    const app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent' });
    const built = await app.builder.build(parseImageName('hello'));
    const statement = JSON.parse((await documents(path.join(dir, 'storage'), built)).get('application/vnd.in-toto+json')!.toString());
    const [source, tarball] = statement.predicate.buildDefinition.resolvedDependencies;
    assert.deepEqual(source, { name: 'source', uri: `git+file://${repo}`, digest: { gitCommit: commit } });
    assert.equal(tarball.name, 'nixpkgs tarball');
    assert.equal(tarball.uri, `file://${tarballs}/${commit}.tar.gz`);
    const info = JSON.parse(nix('nix', ['--extra-experimental-features', 'nix-command', 'path-info', '--json', tarball.annotations.storePath])) as Array<{ narHash: string }>;
    const hex = nix('nix', ['--extra-experimental-features', 'nix-command', 'hash', 'to-base16', '--type', 'sha256', info[0]!.narHash]).trim();
    assert.deepEqual(tarball.digest, { sha256: hex });
    await app.pins.stop();
    await app.packages.stop();
  });
});
