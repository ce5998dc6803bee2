// A real Nix store path (built here, offline, from builtins only) packs into a layer that
// unpacks to exactly the store: contents, modes, symlinks, empty directories.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { packStorePaths } from '../../src/archive/pack.js';
import { packToFile, pythonList, run, withTempDir } from '../archive/helpers.js';

const BUILD = `
let sh = "/bin/sh"; in
derivation {
  name = "archive-test-fixture";
  system = builtins.currentSystem;
  builder = sh;
  args = [ "-c" ''
    set -e
    PATH=/usr/bin:/bin
    mkdir -p $out/bin $out/share/empty $out/lib/sub
    printf 'hello from the store\\n' > $out/bin/hello
    chmod 755 $out/bin/hello
    printf 'same\\n' > $out/lib/a
    printf 'same\\n' > $out/lib/sub/b
    ln -s hello $out/bin/hi
    ln -s $out/bin/hello $out/lib/abs
    head -c 3000000 /dev/zero | tr '\\0' 'x' > $out/lib/big
  '' ];
}`;

test('a real store path unpacks to exactly what the Nix store holds', async () => {
  const env = { ...process.env, NIX_CONFIG: 'substituters =' };
  const r = await import('node:child_process').then((cp) => cp.spawnSync('nix-build', ['--no-out-link', '-E', BUILD], { env, encoding: 'utf8' }));
  assert.equal(r.status, 0, r.stderr);
  const storePath = r.stdout.trim().split('\n').at(-1)!;
  assert.match(storePath, /^\/nix\/store\/[a-z0-9]{32}-archive-test-fixture$/);

  await withTempDir(async (dir) => {
    const file = join(dir, 'layer.tar.gz');
    const a = await packToFile([], file, (sink) => packStorePaths([storePath], sink));
    const b = await packToFile([], join(dir, 'again.tar.gz'), (sink) => packStorePaths([storePath], sink));
    assert.ok(a.gz.equals(b.gz));
    const members = pythonList(file);
    assert.ok(members.every((m) => m.mtime === 1 && m.uid === 0 && m.gid === 0));
    const lib = members.filter((m) => m.name.startsWith(`${storePath.slice(1)}/lib/`));
    assert.deepEqual(
      lib.map((m) => [m.name.slice(storePath.length - 1), m.type]),
      [['/lib/a', '0'], ['/lib/abs', '2'], ['/lib/big', '0'], ['/lib/sub', '5'], ['/lib/sub/b', '1']],
    );
    const out = join(dir, 'out');
    await mkdir(out);
    run('tar', ['-xzpf', file, '-C', out]);
    const compare = async (rel: string): Promise<void> => {
      const s = await lstat(rel);
      const u = await lstat(join(out, rel));
      assert.equal(u.mode, s.mode, rel);
      assert.equal(u.mtimeMs, s.isSymbolicLink() ? u.mtimeMs : s.mtimeMs, `mtime ${rel}`);
      if (s.isSymbolicLink()) assert.equal(await readlink(join(out, rel)), await readlink(rel));
      else if (s.isFile()) assert.ok((await readFile(join(out, rel))).equals(await readFile(rel)), rel);
      else {
        const names = (await readdir(rel)).sort();
        assert.deepEqual((await readdir(join(out, rel))).sort(), names, rel);
        for (const n of names) await compare(join(rel, n));
      }
    };
    await compare(storePath);
    assert.equal((await readdir(join(out, storePath, 'share', 'empty'))).length, 0);
  });
});
