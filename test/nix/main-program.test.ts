// meta.mainProgram from the resolving evaluation, as data: a plain file name is reported; a
// missing one, another type, a path, or one whose evaluation throws is left out (the package
// still resolves).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolvePackages } from '../../src/nix/resolve-packages.js';
import { pinSource } from '../../src/nix/resolve-tags.js';
import type { PinnedSource } from '../../src/nix/source.js';
import { EXAMPLE_PKGS, HOST_SYSTEM, nixOptions } from '../helpers/nix.js';

let dir: string;
let pinned: PinnedSource;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nixery-main-program-'));
  await writeFile(
    join(dir, 'default.nix'),
    `{ system ? builtins.currentSystem, ... }@args:
let base = import ${EXAMPLE_PKGS} args;
    withMeta = meta: base.curl // { inherit meta; };
in base // {
  named = withMeta { mainProgram = "curl"; };
  slashed = withMeta { mainProgram = "../etc/passwd"; };
  numbered = withMeta { mainProgram = 42; };
  throwing = withMeta { mainProgram = throw "nixery-test: mainProgram throws"; };
}
`,
  );
  pinned = await pinSource({ kind: 'path', path: dir }, 'latest', { timeoutMs: 30_000 });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('mainProgram: reported when it is a file name, left out otherwise', async () => {
  const names = ['hello', 'curl', 'named', 'slashed', 'numbered', 'throwing'];
  const resolved = await resolvePackages(pinned, names, HOST_SYSTEM, nixOptions());
  assert.deepEqual(
    resolved.map((p) => [p.requested, p.mainProgram]),
    [['hello', 'hello'], ['curl', undefined], ['named', 'curl'], ['slashed', undefined], ['numbered', undefined], ['throwing', undefined]],
  );
  assert.ok(resolved.every((p) => !('mainProgram' in p) || typeof p.mainProgram === 'string'));
});
