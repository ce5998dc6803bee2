// The customisation layer with a user (the `nonroot` meta-package): /etc/passwd and /etc/group
// as files of the layer, the home owned by the user, a package's own /etc/passwd replaced (and
// said so), and a layer without a user exactly as before.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { accountFiles, customisationLayer } from '../../src/archive/customisation.js';
import { encodeHeader, type TarEntry } from '../../src/archive/tar.js';
import { NONROOT_USER } from '../../src/image/config.js';
import { withTempDir } from './helpers.js';

const S = '/nix/store';
const HELLO = `${S}/${'a'.repeat(32)}-hello-2.12`;
const ETC = `${S}/${'b'.repeat(32)}-fake-etc`;

async function file(root: string, path: string, content = path): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

test('a user: passwd and group files, a home owned by it; a package of its own /etc/passwd loses', async () => {
  await withTempDir(async (root) => {
    await file(root, `${HELLO}/bin/hello`);
    await file(root, `${ETC}/etc/passwd`, 'root:x:0:0::/:/bin/sh\n');
    await file(root, `${ETC}/etc/hosts`, '127.0.0.1 localhost\n');
    const outputs = [ETC, HELLO];
    const plain = await customisationLayer({ outputs, closure: outputs, storeRoot: root });
    const withUser = await customisationLayer({ outputs, closure: outputs, storeRoot: root, user: NONROOT_USER });
    const byPath = (entries: TarEntry[]) => new Map(entries.map((e) => [String(e.path), e]));
    const p = byPath(plain.entries);
    const u = byPath(withUser.entries);

    assert.deepEqual(p.get('etc/passwd'), { type: 'symlink', path: 'etc/passwd', target: `${ETC}/etc/passwd` });
    assert.equal(p.has('home'), false);
    const { passwd, group } = accountFiles(NONROOT_USER);
    assert.deepEqual(u.get('etc/passwd'), { type: 'file', path: 'etc/passwd', mode: 0o644, size: passwd.length, source: { data: passwd } });
    assert.deepEqual(u.get('etc/group'), { type: 'file', path: 'etc/group', mode: 0o644, size: group.length, source: { data: group } });
    assert.deepEqual(u.get('etc/hosts'), p.get('etc/hosts'), 'the rest of /etc is the packages');
    assert.deepEqual(u.get('home'), { type: 'directory', path: 'home', mode: 0o755 });
    assert.deepEqual(u.get('home/nonroot'), { type: 'directory', path: 'home/nonroot', mode: 0o755, uid: 65532, gid: 65532 });
    assert.ok(withUser.warnings.some((w) => w.startsWith('/etc/passwd from the image essentials replaces')), withUser.warnings.join('\n'));
    assert.deepEqual(passwd.toString().split('\n').map((l) => l.split(':')[2]), ['0', '65534', '65532', undefined]);

    // The owner is in the tar header (uid at 108, gid at 116, octal); other entries stay root's.
    const header = encodeHeader(u.get('home/nonroot')!);
    assert.equal(header.subarray(108, 115).toString(), '0177774');
    assert.equal(header.subarray(116, 123).toString(), '0177774');
    assert.equal(encodeHeader(u.get('home')!).subarray(108, 115).toString(), '0000000');

    // Without a user, nothing about it changes.
    const again = await customisationLayer({ outputs, closure: outputs, storeRoot: root });
    assert.deepEqual(again.entries, plain.entries);
  });
});
