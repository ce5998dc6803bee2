// What `nixery build --output` writes names the image as asked for: `docker load` of a
// docker-archive of shell/hello lists shell/hello (manifest.json's RepoTags), and containerd's
// import of either output reads io.containerd.image.name from index.json. Built on the stand-in
// Nix stage; test/e2e/build.test.ts loads such an archive into a real docker engine.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startStandInRegistry, type StandInRegistry } from './helpers/registry.js';
import { exportImage, parseOutputTarget } from '../src/builder/export.js';
import { parseImageName } from '../src/image/name.js';

const execFileP = promisify(execFile);

describe('exported images are named as requested', () => {
  let r: StandInRegistry;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-export-name-'));
    r = await startStandInRegistry();
  });
  after(async () => {
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function archiveNames(requested: string | undefined, file: string): Promise<{ repoTags: string[]; containerd: string }> {
    const built = await r.app.service.image(parseImageName('shell/hello', 'latest'));
    await exportImage(built, r.app.storage, parseOutputTarget(`docker-archive:${file}`), requested);
    const { stdout: manifestJson } = await execFileP('tar', ['-xOf', file, 'manifest.json']);
    const { stdout: indexJson } = await execFileP('tar', ['-xOf', file, 'index.json']);
    const manifest = JSON.parse(manifestJson) as Array<{ RepoTags: string[] }>;
    const index = JSON.parse(indexJson) as { manifests: Array<{ annotations: Record<string, string> }> };
    return { repoTags: manifest[0]!.RepoTags, containerd: index.manifests[0]!.annotations['io.containerd.image.name']! };
  }

  test('docker-archive of shell/hello: RepoTags and the containerd name are shell/hello:latest, not the sorted hello/shell', async () => {
    const names = await archiveNames('shell/hello', path.join(dir, 'a.tar'));
    assert.deepEqual(names, { repoTags: ['shell/hello:latest'], containerd: 'shell/hello:latest' });
  });

  test('without a requested name: one that pulls the same image (meta-packages first)', async () => {
    const names = await archiveNames(undefined, path.join(dir, 'b.tar'));
    assert.deepEqual(names, { repoTags: ['shell/hello:latest'], containerd: 'shell/hello:latest' });
    // The canonical name would ask for a package called "shell" instead.
    assert.equal(parseImageName('shell/hello').name, 'hello/shell');
  });

  test('oci:DIR names the image as requested too', async () => {
    const built = await r.app.service.image(parseImageName('shell/hello', 'latest'));
    const out = path.join(dir, 'oci');
    await exportImage(built, r.app.storage, parseOutputTarget(`oci:${out}`), 'shell/hello');
    const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: Array<{ annotations: Record<string, string> }> };
    assert.equal(index.manifests[0]!.annotations['io.containerd.image.name'], 'shell/hello:latest');
    assert.equal(index.manifests[0]!.annotations['org.opencontainers.image.ref.name'], 'latest');
  });
});
