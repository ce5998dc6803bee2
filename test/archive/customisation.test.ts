// The customisation layer: merged symlink forest, collisions, /usr/bin/env, /tmp, CA bundle.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readlink, lstat, symlink, writeFile, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { customisationEntries, customisationLayer } from '../../src/archive/customisation.js';
import { packEntries } from '../../src/archive/pack.js';
import type { TarEntry } from '../../src/archive/tar.js';
import { packToFile, pythonList, run, withTempDir } from './helpers.js';

const S = '/nix/store';
const HELLO = `${S}/${'a'.repeat(32)}-hello-2.12`;
const COREUTILS = `${S}/${'b'.repeat(32)}-coreutils-9.1`;
const CACERT = `${S}/${'c'.repeat(32)}-cacert-3.95`;
const OTHER_HELLO = `${S}/${'d'.repeat(32)}-hello-wrapper`;
const LIBLINK = `${S}/${'e'.repeat(32)}-libs-linked`;
const LIBREAL = `${S}/${'f'.repeat(32)}-libs-real`;
const BUSYBOX = `${S}/${'g'.repeat(32)}-busybox`;

async function file(root: string, path: string, content = path): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

async function link(root: string, path: string, target: string): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await symlink(target, join(root, path));
}

async function makeStore(root: string): Promise<void> {
  await file(root, `${HELLO}/bin/hello`);
  await file(root, `${HELLO}/share/man/man1/hello.1`);
  await mkdir(join(root, HELLO, 'share', 'empty'), { recursive: true });
  await file(root, `${COREUTILS}/bin/env`);
  await file(root, `${COREUTILS}/bin/ls`);
  await file(root, `${COREUTILS}/share/man/man1/ls.1`);
  await file(root, `${CACERT}/etc/ssl/certs/ca-bundle.crt`, '-----BEGIN CERTIFICATE-----\n');
  await file(root, `${OTHER_HELLO}/bin/hello`); // collides with HELLO's
  await file(root, `${OTHER_HELLO}/bin/hello-extra`);
  // LIBLINK's lib is a symlink to LIBREAL's lib (absolute, as in a real store); another package has a real lib/.
  await file(root, `${LIBREAL}/lib/libreal.so`);
  await file(root, `${LIBREAL}/lib/pkgconfig/real.pc`);
  await link(root, `${LIBLINK}/lib`, `${LIBREAL}/lib`);
  await file(root, `${HELLO}/lib/libhello.so`);
  await link(root, `${HELLO}/lib/pkgconfig`, '../share/pc'); // relative symlink to a directory
  await file(root, `${HELLO}/share/pc/hello.pc`);
  await file(root, `${BUSYBOX}/bin/env`);
}

function index(entries: TarEntry[]): Map<string, TarEntry> {
  return new Map(entries.map((e) => [String(e.path), e]));
}

describe('customisation layer', () => {
  test('merges the outputs into real directories with absolute leaf symlinks; first output wins', async () => {
    await withTempDir(async (root) => {
      await makeStore(root);
      const outputs = [COREUTILS, HELLO, LIBLINK, OTHER_HELLO];
      const layer = await customisationLayer({ outputs, closure: [...outputs, CACERT, LIBREAL], storeRoot: root });
      const e = index(layer.entries);
      const dir = (p: string, mode = 0o755): void => assert.deepEqual(e.get(p), { type: 'directory', path: p, mode }, p);
      const sym = (p: string, target: string): void => assert.deepEqual(e.get(p), { type: 'symlink', path: p, target }, p);

      dir('bin');
      dir('share');
      dir('share/man');
      dir('share/man/man1');
      sym('bin/hello', `${HELLO}/bin/hello`);
      sym('bin/hello-extra', `${OTHER_HELLO}/bin/hello-extra`);
      sym('bin/ls', `${COREUTILS}/bin/ls`);
      sym('share/man/man1/hello.1', `${HELLO}/share/man/man1/hello.1`);
      sym('share/man/man1/ls.1', `${COREUTILS}/share/man/man1/ls.1`);
      dir('share/empty'); // an empty directory of a package stays a directory
      // HELLO has a real lib/, LIBLINK's lib is a symlink to a directory: it is descended into.
      dir('lib');
      sym('lib/libhello.so', `${HELLO}/lib/libhello.so`);
      sym('lib/libreal.so', `${LIBLINK}/lib/libreal.so`);
      // HELLO's lib/pkgconfig is a relative link to a directory, LIBREAL's a real one: merged.
      dir('lib/pkgconfig');
      sym('lib/pkgconfig/hello.pc', `${HELLO}/lib/pkgconfig/hello.pc`);
      sym('lib/pkgconfig/real.pc', `${LIBLINK}/lib/pkgconfig/real.pc`);

      assert.deepEqual(layer.collisions, [{ path: '/bin/hello', kept: `${HELLO}/bin/hello`, ignored: `${OTHER_HELLO}/bin/hello` }]);
      sym('usr/bin/env', `${COREUTILS}/bin/env`);
      dir('usr');
      dir('usr/bin');
      dir('tmp', 0o1777);
      sym('etc/ssl/certs/ca-bundle.crt', `${CACERT}/etc/ssl/certs/ca-bundle.crt`); // from the closure: cacert is no requested output here
      assert.equal(layer.env, `${COREUTILS}/bin/env`);

      // Sorted, and the directories of every leaf exist.
      const names = layer.entries.map((x) => String(x.path));
      assert.deepEqual([...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))), names);
      for (const n of names) if (n.includes('/')) assert.equal(e.get(n.slice(0, n.lastIndexOf('/')))?.type, 'directory', n);
    });
  });

  test('a symlink to a directory stays a link unless another package needs the directory', async () => {
    await withTempDir(async (root) => {
      await makeStore(root);
      const alone = await customisationLayer({ outputs: [LIBLINK], closure: [LIBLINK, LIBREAL], storeRoot: root });
      assert.deepEqual(index(alone.entries).get('lib'), { type: 'symlink', path: 'lib', target: `${LIBLINK}/lib` });
      const layer = await customisationLayer({ outputs: [LIBLINK, HELLO], closure: [LIBLINK, HELLO, LIBREAL], storeRoot: root });
      const e = index(layer.entries);
      assert.equal(e.get('lib')?.type, 'directory');
      // LIBLINK's lib/pkgconfig (through its symlink) and HELLO's lib/pkgconfig (a relative link) merge.
      assert.equal(e.get('lib/pkgconfig')?.type, 'directory');
      assert.deepEqual(e.get('lib/pkgconfig/real.pc'), { type: 'symlink', path: 'lib/pkgconfig/real.pc', target: `${LIBLINK}/lib/pkgconfig/real.pc` });
      assert.deepEqual(e.get('lib/pkgconfig/hello.pc'), { type: 'symlink', path: 'lib/pkgconfig/hello.pc', target: `${HELLO}/lib/pkgconfig/hello.pc` });
      assert.deepEqual(layer.collisions, []);
    });
  });

  test('/usr/bin/env: first requested output with bin/env, else the closure, else none; never dangling', async () => {
    await withTempDir(async (root) => {
      await makeStore(root);
      const broken = `${S}/${'0'.repeat(32)}-broken-env`;
      await link(root, `${broken}/bin/env`, `${S}/${'9'.repeat(32)}-missing/bin/env`); // dangles
      let layer = await customisationLayer({ outputs: [broken, HELLO, BUSYBOX, COREUTILS], closure: [], storeRoot: root });
      assert.equal(layer.env, `${BUSYBOX}/bin/env`);
      // Only in the closure (sorted): busybox's hash sorts before coreutils'? b… < g…: coreutils first.
      layer = await customisationLayer({ outputs: [HELLO], closure: [BUSYBOX, HELLO, COREUTILS], storeRoot: root });
      assert.equal(layer.env, `${COREUTILS}/bin/env`);
      assert.deepEqual(index(layer.entries).get('usr/bin/env'), { type: 'symlink', path: 'usr/bin/env', target: `${COREUTILS}/bin/env` });
      layer = await customisationLayer({ outputs: [HELLO, broken], closure: [HELLO, broken], storeRoot: root });
      assert.equal(layer.env, null);
      const e = index(layer.entries);
      assert.equal(e.has('usr/bin/env'), false);
      assert.equal(e.has('usr'), false);
      assert.deepEqual(e.get('tmp'), { type: 'directory', path: 'tmp', mode: 0o1777 });
      // No cacert anywhere: no bundle, and nothing dangling.
      assert.equal(e.has('etc/ssl/certs/ca-bundle.crt'), false);
    });
  });

  test('the CA bundle comes through the forest when cacert is requested', async () => {
    await withTempDir(async (root) => {
      await makeStore(root);
      const out = await customisationEntries([CACERT, HELLO], [CACERT, HELLO], { storeRoot: root });
      const e = index(out.entries);
      for (const d of ['etc', 'etc/ssl', 'etc/ssl/certs']) assert.equal(e.get(d)?.type, 'directory');
      assert.deepEqual(e.get('etc/ssl/certs/ca-bundle.crt'), { type: 'symlink', path: 'etc/ssl/certs/ca-bundle.crt', target: `${CACERT}/etc/ssl/certs/ca-bundle.crt` });
      assert.deepEqual(out.collisions, []);
    });
  });

  test('a package providing /tmp or usr/bin/env loses to the essentials, reported as a collision', async () => {
    await withTempDir(async (root) => {
      await makeStore(root);
      const odd = `${S}/${'1'.repeat(32)}-odd`;
      await file(root, `${odd}/tmp`); // a file where /tmp must be
      await file(root, `${odd}/usr/bin/env`);
      const out = await customisationEntries([odd, COREUTILS], [odd, COREUTILS], { storeRoot: root });
      const e = index(out.entries);
      assert.deepEqual(e.get('tmp'), { type: 'directory', path: 'tmp', mode: 0o1777 });
      assert.deepEqual(e.get('usr/bin/env'), { type: 'symlink', path: 'usr/bin/env', target: `${COREUTILS}/bin/env` });
      assert.deepEqual(out.collisions.sort(), [
        `/tmp: kept directory /tmp, ignored ${odd}/tmp`,
        `/usr/bin/env: kept ${COREUTILS}/bin/env, ignored ${odd}/usr/bin/env`,
      ]);
    });
  });

  test('packed, a real tar reader sees the forest; unpacked over the store, every link resolves', async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      await makeStore(root);
      const outputs = [CACERT, COREUTILS, HELLO];
      const layer = await customisationLayer({ outputs, closure: outputs, storeRoot: root });
      const file = join(dir, 'custom.tar.gz');
      const first = await packToFile(layer.entries, file);
      const second = await customisationLayer({ outputs, closure: outputs, storeRoot: root });
      const again = await packToFile(second.entries, join(dir, 'again.tar.gz'), (sink) => packEntries(second.entries, sink));
      assert.ok(first.gz.equals(again.gz), 'same input, same bytes');
      const members = pythonList(file);
      const tmp = members.find((m) => m.name === 'tmp');
      assert.equal(tmp?.mode, 0o1777);
      assert.equal(tmp?.type, '5');
      run('tar', ['-xzpf', file, '-C', root]); // the image: store + forest under one root
      for (const rel of ['bin/hello', 'bin/ls', 'usr/bin/env', 'etc/ssl/certs/ca-bundle.crt']) {
        const target = await readlink(join(root, rel));
        assert.ok(target.startsWith('/nix/store/'), rel);
        assert.ok((await lstat(join(root, target))).isFile(), `${rel} resolves inside the image`);
      }
      assert.equal((await lstat(join(root, 'tmp'))).mode & 0o7777, 0o1777);
      assert.equal(await readFile(join(root, (await readlink(join(root, 'bin/hello')))), 'utf8'), `${HELLO}/bin/hello`);
    });
  });

  test('a relative or missing store path is rejected', async () => {
    await assert.rejects(customisationLayer({ outputs: ['nix/store/x'], closure: [] }), /not absolute/);
    await withTempDir(async (root) => {
      await assert.rejects(customisationLayer({ outputs: [HELLO], closure: [], storeRoot: root }), /output \/nix\/store\/a+-hello-2.12 does not exist/);
    });
  });
});
