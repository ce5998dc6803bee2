// The layer tar, checked byte for byte with real readers (GNU tar, Python's tarfile, gzip).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, link, lstat, mkdir, readdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { packEntries, packStorePaths } from '../../src/archive/pack.js';
import { storePathEntries } from '../../src/archive/storepaths.js';
import { encodeHeader, type TarEntry } from '../../src/archive/tar.js';
import { ArchiveError, FileChangedError } from '../../src/archive/errors.js';
import { ociLayout, packToFile, pythonList, raw, run, sha256, withTempDir } from './helpers.js';

const HELLO = '/nix/store/0c0ff33a0c0ff33a0c0ff33a0c0ff33a-hello-2.12';
const LIB = '/nix/store/1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d-libfoo-1.0';
const LIB_BAR = '/nix/store/1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d-libfoo-1.0-bar';
const SCRIPT = '/nix/store/2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e-script.sh';
const LONG_DIR = `lib/${'d'.repeat(60)}/${'e'.repeat(60)}`; // > 100 bytes with the store prefix
const LONG_FILE = `share/${'x'.repeat(120)}/${'y'.repeat(80)}/${'z'.repeat(70)}.txt`; // > 255 bytes in total
const UNICODE = 'share/ünïcødé-文字.txt';
const LONG_TARGET = `/${'t'.repeat(150)}/target`;

/** A fake store under `root` with every edge case of the layer format. */
async function makeStore(root: string): Promise<void> {
  const s = (p: string): string => join(root, p);
  await mkdir(s(`${HELLO}/bin`), { recursive: true });
  await mkdir(s(`${HELLO}/share/empty`), { recursive: true });
  await mkdir(s(`${HELLO}/sticky`), { recursive: true });
  await mkdir(s(`${LIB}/${LONG_DIR}`), { recursive: true });
  await mkdir(s(`${LIB}/${LONG_FILE.slice(0, LONG_FILE.lastIndexOf('/'))}`), { recursive: true });
  await mkdir(s(`${LIB_BAR}/lib`), { recursive: true });
  await writeFile(s(`${HELLO}/bin/hello`), '#!/bin/sh\necho hello\n');
  await chmod(s(`${HELLO}/bin/hello`), 0o4555); // setuid
  await writeFile(s(`${HELLO}/bin/setgid`), 'g');
  await chmod(s(`${HELLO}/bin/setgid`), 0o2755);
  await chmod(s(`${HELLO}/sticky`), 0o1777);
  await symlink('hello', s(`${HELLO}/bin/relative-link`));
  await symlink('/nix/store/0c0ff33a0c0ff33a0c0ff33a0c0ff33a-hello-2.12/bin/hello', s(`${HELLO}/bin/absolute-link`));
  await symlink('/does/not/exist', s(`${HELLO}/bin/dangling`));
  await symlink(LONG_TARGET, s(`${HELLO}/bin/long-target`));
  await writeFile(s(`${LIB}/${LONG_DIR}/libfoo.so`), Buffer.alloc(3000, 7));
  await chmod(s(`${LIB}/${LONG_DIR}/libfoo.so`), 0o555);
  await writeFile(s(`${LIB}/${LONG_FILE}`), 'long name');
  await writeFile(s(`${LIB}/${UNICODE}`), 'unicode');
  // Identical content: on-disk hard link, a copy (same mode), a copy with another mode, empty files.
  await writeFile(s(`${LIB}/lib/data-a`), 'shared content\n');
  await link(s(`${LIB}/lib/data-a`), s(`${LIB}/lib/data-b-hardlink`));
  await writeFile(s(`${LIB_BAR}/lib/data-copy`), 'shared content\n');
  await writeFile(s(`${LIB_BAR}/lib/data-other-mode`), 'shared content\n');
  await chmod(s(`${LIB_BAR}/lib/data-other-mode`), 0o600);
  await writeFile(s(`${LIB}/lib/empty1`), '');
  await writeFile(s(`${LIB}/lib/empty2`), '');
  // A store path that is a single file, and a FIFO that must be skipped.
  await writeFile(s(SCRIPT), '#!/bin/sh\n');
  await chmod(s(SCRIPT), 0o555);
  run('mkfifo', [s(`${HELLO}/share/fifo`)]);
  for (const dir of [`${HELLO}/bin`, `${HELLO}/share/empty`, `${HELLO}/share`, HELLO]) await chmod(s(dir), 0o555);
}

const PATHS = [SCRIPT, LIB_BAR, HELLO, LIB]; // deliberately unsorted

describe('store-path layer tar', () => {
  test('a real reader sees sorted entries, uid/gid 0, mtime 1, modes, links and long names', async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      await makeStore(root);
      const file = join(dir, 'layer.tar.gz');
      const { tar } = await packToFile([], file, (sink) => packStorePaths(PATHS, sink, { storeRoot: root }));
      const members = pythonList(file);
      const names = members.map((m) => m.name);

      // Sorted by full path (byte order), parents first; `libfoo-1.0` sorts before `libfoo-1.0-bar`
      // which sorts before `libfoo-1.0/…` ('-' < '/').
      const bytesOf = (n: string): Buffer => Buffer.from(n.replace(/\/$/, ''), 'latin1');
      assert.deepEqual([...names].sort((a, b) => Buffer.compare(bytesOf(a), bytesOf(b))), names);
      assert.deepEqual(names.slice(0, 3), ['nix', 'nix/store', `nix/store/0c0ff33a0c0ff33a0c0ff33a0c0ff33a-hello-2.12`]);
      const libIndex = names.indexOf(LIB.slice(1));
      assert.equal(names[libIndex + 1], LIB_BAR.slice(1));
      assert.ok(names.indexOf(`${LIB.slice(1)}/lib`) > names.indexOf(`${LIB_BAR.slice(1)}/lib/data-other-mode`));

      for (const m of members) {
        assert.equal(m.uid, 0, m.name);
        assert.equal(m.gid, 0, m.name);
        assert.equal(m.mtime, 1, m.name);
        assert.equal(m.uname, '', m.name);
        assert.equal(m.gname, '', m.name);
        for (const key of Object.keys(m.pax)) assert.ok(['path', 'linkpath'].includes(key), `unexpected PAX record ${key} on ${m.name}`);
      }
      const byName = new Map(members.map((m) => [m.name, m]));
      const get = (p: string): (typeof members)[number] => {
        const m = byName.get(raw(p.replace(/^\//, '')));
        assert.ok(m, `missing ${p}`);
        return m;
      };
      assert.equal(get('/nix').mode, 0o755);
      assert.equal(get('/nix/store').mode, 0o755);
      assert.equal(get(`${HELLO}/bin/hello`).mode, 0o4555);
      assert.equal(get(`${HELLO}/bin/setgid`).mode, 0o2755);
      assert.equal(get(`${HELLO}/sticky`).mode, 0o1777);
      assert.equal(get(`${HELLO}/sticky`).type, '5');
      assert.equal(get(`${HELLO}/share/empty`).type, '5');
      assert.equal(get(`${HELLO}/share/empty`).mode, 0o555);
      assert.equal(byName.has(raw(`${HELLO}/share/fifo`.slice(1))), false, 'FIFOs are skipped');
      assert.equal(get(SCRIPT).type, '0');
      assert.equal(get(SCRIPT).mode, 0o555);

      assert.equal(get(`${HELLO}/bin/relative-link`).type, '2');
      assert.equal(get(`${HELLO}/bin/relative-link`).linkname, 'hello');
      assert.equal(get(`${HELLO}/bin/absolute-link`).linkname, `${HELLO}/bin/hello`);
      assert.equal(get(`${HELLO}/bin/dangling`).linkname, '/does/not/exist');
      assert.equal(get(`${HELLO}/bin/long-target`).linkname, LONG_TARGET);
      assert.equal(get(`${HELLO}/bin/long-target`).pax.linkpath, LONG_TARGET);

      // Long names: ustar prefix split for > 100 bytes that split, PAX beyond, PAX for non-ASCII.
      const longDirName = `${LIB}/${LONG_DIR}/libfoo.so`;
      assert.ok(longDirName.length > 100 && longDirName.length < 255);
      assert.deepEqual(get(longDirName).pax, {});
      assert.ok(LIB.length + LONG_FILE.length > 255);
      assert.equal(get(`${LIB}/${LONG_FILE}`).pax.path, raw(`${LIB}/${LONG_FILE}`.slice(1)));
      assert.equal(get(`${LIB}/${UNICODE}`).pax.path, raw(`${LIB}/${UNICODE}`.slice(1)));

      // Hard links: on-disk link and same-content copy become links to the first; other mode and empty files do not.
      const first = `${LIB_BAR}/lib/data-copy`; // sorts first of the three identical 0644 files
      assert.equal(get(first).type, '0');
      assert.equal(get(`${LIB}/lib/data-a`).type, '1');
      assert.equal(get(`${LIB}/lib/data-a`).linkname, first.slice(1));
      assert.equal(get(`${LIB}/lib/data-b-hardlink`).type, '1');
      assert.equal(get(`${LIB}/lib/data-b-hardlink`).linkname, first.slice(1));
      assert.equal(get(`${LIB_BAR}/lib/data-other-mode`).type, '0');
      assert.equal(get(`${LIB}/lib/empty1`).type, '0');
      assert.equal(get(`${LIB}/lib/empty2`).type, '0');

      // Two zero blocks at the end, no record padding.
      assert.equal(tar.length % 512, 0);
      assert.ok(tar.subarray(tar.length - 1024).equals(Buffer.alloc(1024)));
      assert.ok(!tar.subarray(tar.length - 1536, tar.length - 1024).equals(Buffer.alloc(512)));
    });
  });

  test('GNU tar extracts exactly the store: contents, modes, link targets, empty dirs, hard links', async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      await makeStore(root);
      const file = join(dir, 'layer.tar.gz');
      await packToFile([], file, (sink) => packStorePaths(PATHS, sink, { storeRoot: root }));
      const out = join(dir, 'out');
      await mkdir(out);
      run('tar', ['-xzpf', file, '-C', out, '--numeric-owner']);
      run('tar', ['-tvzf', file]); // GNU tar lists it without complaint

      const compare = async (rel: string): Promise<void> => {
        const a = await lstat(join(root, rel));
        if (a.isFIFO()) {
          assert.equal(await lstat(join(out, rel)).catch(() => null), null, 'FIFOs are not extracted');
          return;
        }
        const b = await lstat(join(out, rel));
        assert.equal(b.mode, a.mode, `mode of ${rel}`);
        assert.equal(b.uid, 0);
        if (a.isSymbolicLink()) assert.equal(await readlink(join(out, rel)), await readlink(join(root, rel)));
        else if (a.isFile()) {
          assert.ok((await readFile(join(out, rel))).equals(await readFile(join(root, rel))), `content of ${rel}`);
          if (!rel.endsWith('.so')) assert.equal(b.mtimeMs, 1000, `mtime of ${rel}`);
        } else if (a.isDirectory()) {
          assert.deepEqual((await readdir(join(out, rel))).sort(), (await readdir(join(root, rel))).filter((n) => n !== 'fifo').sort(), rel);
          for (const n of await readdir(join(root, rel))) await compare(join(rel, n));
        }
      };
      for (const p of PATHS) await compare(p);
      const copy = await stat(join(out, LIB_BAR, 'lib/data-copy'));
      const linked = await stat(join(out, LIB, 'lib/data-a'));
      assert.equal(copy.ino, linked.ino, 'identical files are hard links after extraction');
      assert.equal(copy.nlink, 3);
    });
  });

  test("Go's archive/tar (umoci) unpacks every edge case like the store", async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      await makeStore(root);
      const file = join(dir, 'layer.tar.gz');
      const { digests } = await packToFile([], file, (sink) => packStorePaths(PATHS, sink, { storeRoot: root }));
      const bundle = join(dir, 'bundle');
      run('umoci', ['unpack', '--rootless', '--image', await ociLayout(join(dir, 'oci'), file, digests), bundle]);
      const rootfs = join(bundle, 'rootfs');
      for (const rel of [`${LIB}/${LONG_DIR}/libfoo.so`, `${LIB}/${LONG_FILE}`, `${LIB}/${UNICODE}`, `${LIB}/lib/data-a`, `${LIB}/lib/data-b-hardlink`, SCRIPT]) {
        assert.ok((await readFile(join(rootfs, rel))).equals(await readFile(join(root, rel))), rel);
      }
      assert.equal(await readlink(join(rootfs, HELLO, 'bin/long-target')), LONG_TARGET);
      assert.equal(await readlink(join(rootfs, HELLO, 'bin/relative-link')), 'hello');
      assert.equal((await lstat(join(rootfs, HELLO, 'bin/hello'))).mode & 0o7777, 0o4555);
      assert.equal((await lstat(join(rootfs, HELLO, 'sticky'))).mode & 0o7777, 0o1777);
      assert.deepEqual(await readdir(join(rootfs, HELLO, 'share/empty')), []);
      assert.equal((await stat(join(rootfs, LIB, 'lib/data-a'))).ino, (await stat(join(rootfs, LIB_BAR, 'lib/data-copy'))).ino);
    });
  });

  test('the tar does not depend on whether the store was optimised (hard-linked)', async () => {
    await withTempDir(async (dir) => {
      const one = join(dir, 'one');
      const two = join(dir, 'two');
      for (const r of [one, two]) await mkdir(join(r, LIB, 'lib'), { recursive: true });
      await writeFile(join(one, LIB, 'lib/a'), 'same bytes');
      await link(join(one, LIB, 'lib/a'), join(one, LIB, 'lib/b'));
      await writeFile(join(two, LIB, 'lib/a'), 'same bytes');
      await writeFile(join(two, LIB, 'lib/b'), 'same bytes');
      const a = await packToFile([], join(dir, 'a.gz'), (sink) => packStorePaths([LIB], sink, { storeRoot: one }));
      const b = await packToFile([], join(dir, 'b.gz'), (sink) => packStorePaths([LIB], sink, { storeRoot: two }));
      assert.ok(a.gz.equals(b.gz));
      assert.equal(a.digests.digest, b.digests.digest);
    });
  });

  test('names that are not UTF-8 are written byte for byte', async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      await mkdir(join(root, HELLO), { recursive: true });
      const name = Buffer.concat([Buffer.from(join(root, HELLO) + '/bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]);
      await writeFile(name, 'x');
      const file = join(dir, 'layer.tar.gz');
      await packToFile([], file, (sink) => packStorePaths([HELLO], sink, { storeRoot: root }));
      const m = pythonList(file).find((x) => x.name.includes('bad-'));
      assert.ok(m);
      assert.equal(m.name, `${HELLO.slice(1)}/bad-\u00ff\u00fe.txt`);
      assert.equal(m.pax.hdrcharset ?? '', 'BINARY');
      const out = join(dir, 'out');
      await mkdir(out);
      run('tar', ['-xzf', file, '-C', out]);
      const listed = await readdir(join(out, HELLO), { encoding: 'buffer' });
      assert.ok(listed.some((n) => n.equals(Buffer.concat([Buffer.from('bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]))));
    });
  });
});

describe('tar entries', () => {
  test('a directory name longer than 100 bytes keeps its trailing slash and mode', async () => {
    await withTempDir(async (dir) => {
      const longDir = `nix/store/${'a'.repeat(32)}-x/${'b'.repeat(70)}/${'c'.repeat(40)}`;
      const veryLong = `${longDir}/${'d'.repeat(200)}`;
      const entries: TarEntry[] = [
        { type: 'directory', path: longDir, mode: 0o555 },
        { type: 'directory', path: veryLong, mode: 0o700 },
        { type: 'file', path: `${veryLong}/f`, mode: 0o644, size: 3, source: { data: Buffer.from('abc') } },
        { type: 'hardlink', path: `${veryLong}/g`, target: `${veryLong}/f`, mode: 0o644 },
      ];
      const file = join(dir, 'x.tar.gz');
      await packToFile(entries, file);
      const members = pythonList(file);
      assert.deepEqual(
        members.map((m) => [m.name, m.type, m.mode]),
        [
          [longDir, '5', 0o555],
          [veryLong, '5', 0o700],
          [`${veryLong}/f`, '0', 0o644],
          [`${veryLong}/g`, '1', 0o644],
        ],
      );
      assert.equal(members[3]!.linkname, `${veryLong}/f`);
      const listing = run('tar', ['-tzf', file]).toString().split('\n');
      assert.equal(listing[0], `${longDir}/`);
    });
  });

  test('a size of 8 GiB or more goes into a PAX size record', () => {
    const size = 8 * 1024 ** 3 + 5;
    const header = encodeHeader({ type: 'file', path: 'big', mode: 0o644, size, source: { data: Buffer.alloc(0) } });
    assert.equal(header.length, 3 * 512);
    assert.equal(header.subarray(156, 157).toString(), 'x');
    const records = header.subarray(512, 1024).toString('latin1').replace(/\0+$/, '');
    assert.equal(records, `19 size=${size}\n`); // the length counts itself: 19 bytes
    const ustar = header.subarray(1024);
    assert.equal(ustar.subarray(124, 135).toString(), '00000000000');
    // Under 8 GiB: plain octal size, no PAX header.
    const small = encodeHeader({ type: 'file', path: 'big', mode: 0o644, size: 8 * 1024 ** 3 - 1, source: { data: Buffer.alloc(0) } });
    assert.equal(small.length, 512);
    assert.equal(small.subarray(124, 135).toString(), '77777777777');
  });

  test('header checksums are valid and the format is ustar', () => {
    const header = encodeHeader({ type: 'symlink', path: '/nix/store/x/bin/sh', target: 'bash' });
    const copy = Buffer.from(header);
    copy.fill(0x20, 148, 156);
    const sum = copy.reduce((a, b) => a + b, 0);
    assert.equal(header.subarray(148, 156).toString('latin1'), `${sum.toString(8).padStart(6, '0')}\0 `);
    assert.equal(header.subarray(257, 265).toString('latin1'), 'ustar\u000000');
    assert.equal(header.subarray(0, 16).toString('latin1'), 'nix/store/x/bin/');
    assert.equal(header.subarray(136, 148).toString('latin1'), '00000000001\0');
  });

  test('bad entries are rejected with a clear ArchiveError', async () => {
    const reject = async (entries: TarEntry[], pattern: RegExp): Promise<void> => {
      const sink = new (await import('node:stream')).PassThrough();
      sink.resume();
      await assert.rejects(packEntries(entries, sink), (err: unknown) => err instanceof ArchiveError && pattern.test((err as Error).message));
    };
    const f = (path: string): TarEntry => ({ type: 'file', path, mode: 0o644, size: 1, source: { data: Buffer.from('x') } });
    await reject([f('a'), f('a')], /duplicate tar entry a/);
    await reject([f('a/../b')], /invalid tar entry name/);
    await reject([f('')], /it is empty/);
    await reject([{ type: 'hardlink', path: 'b', target: 'a', mode: 0o644 }], /not an earlier regular file/);
    await reject([{ type: 'file', path: 'a', mode: 0o644, size: 5, source: { data: Buffer.from('x') } }], /size 5 but 1 bytes/);
  });

  test('a file whose size changed since the walk fails the pack', async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      await mkdir(join(root, HELLO), { recursive: true });
      const big = join(root, HELLO, 'big');
      const small = join(root, HELLO, 'small');
      await writeFile(big, Buffer.alloc(3 << 20, 1));
      await writeFile(small, 'abc');
      const entries = await storePathEntries([HELLO], { storeRoot: root });
      await writeFile(big, Buffer.alloc((3 << 20) + 10, 1)); // grew
      const sink = new (await import('node:stream')).PassThrough();
      sink.resume();
      await assert.rejects(packEntries(entries, sink), (err: unknown) => err instanceof FileChangedError && /big: size was 3145728, now 3145738/.test((err as Error).message));
      await writeFile(big, Buffer.alloc(3 << 20, 1));
      await writeFile(small, 'a'); // shrank (read-ahead path)
      await assert.rejects(packEntries(entries, sink), (err: unknown) => err instanceof FileChangedError && /small/.test((err as Error).message));
      await writeFile(small, 'abc');
      const ok = new (await import('node:stream')).PassThrough();
      ok.resume();
      await packEntries(entries, ok);
    });
  });

  test('a missing store path is a clear error', async () => {
    await withTempDir(async (dir) => {
      await assert.rejects(storePathEntries([HELLO], { storeRoot: dir }), (err: unknown) => err instanceof ArchiveError && err.message.includes(HELLO));
      await assert.rejects(storePathEntries(['relative/path']), /not absolute/);
    });
  });
});

describe('layer digests', () => {
  test('gzip -t accepts the output; digest, size and diffId match what gunzip sees', async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      await makeStore(root);
      await mkdir(join(root, '/nix/store/3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f-big'), { recursive: true });
      // Several chunks of mixed data so the parallel path is exercised.
      const mixed = Buffer.alloc(5 * 1024 * 1024 + 123);
      for (let i = 0; i < mixed.length; i++) mixed[i] = (i * 2654435761) >>> 27 & (i % 7 === 0 ? 0xff : 0x0f);
      await writeFile(join(root, '/nix/store/3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f-big/data'), mixed);
      const paths = [...PATHS, '/nix/store/3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f-big'];
      const file = join(dir, 'layer.tar.gz');
      const progress: number[] = [];
      const { digests, gz, tar } = await packToFile([], file, (sink) => packStorePaths(paths, sink, { storeRoot: root, onProgress: (n) => progress.push(n) }));
      run('gzip', ['-t', file]);
      assert.equal(digests.digest, sha256(gz));
      assert.equal(digests.size, gz.length);
      assert.equal(digests.diffId, sha256(tar));
      assert.equal(digests.uncompressedSize, tar.length);
      assert.ok(progress.length >= 5);
      assert.equal(progress.at(-1), tar.length);
      // The gzip header is fixed: no name, mtime 0, OS 255.
      assert.ok(gz.subarray(0, 10).equals(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])));
      // Python's gzip module (a different inflater) agrees.
      const py = spawnSync('python3', ['-c', 'import gzip,sys,hashlib; print(hashlib.sha256(gzip.open(sys.argv[1]).read()).hexdigest())', file]);
      assert.equal(`sha256:${py.stdout.toString().trim()}`, digests.diffId);
    });
  });

  test('an aborted pack rejects with the abort reason', async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      await mkdir(join(root, HELLO), { recursive: true });
      await writeFile(join(root, HELLO, 'big'), Buffer.alloc(8 << 20, 3));
      const controller = new AbortController();
      const sink = new (await import('node:stream')).PassThrough();
      sink.resume();
      const packing = packStorePaths([HELLO], sink, { storeRoot: root, signal: controller.signal, onProgress: () => controller.abort() });
      await assert.rejects(packing, (err: unknown) => (err as Error).name === 'AbortError');
    });
  });
});
