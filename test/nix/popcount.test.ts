import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareStrings } from '../../src/image/name.js';
import { countReferences, parseDerivation, popcount, type Derivation } from '../../src/nix/popcount.js';
import { NixRunCounts } from '../../src/nix/observer.js';
import { HOST_SYSTEM, nixOptions, pinExamples } from '../helpers/nix.js';

test('popcount on the example set: how many packages use each output, sorted, deterministic', async () => {
  const pinned = await pinExamples();
  const nixRuns = new NixRunCounts();
  const counts = await popcount(pinned, HOST_SYSTEM, { ...nixOptions(), observer: nixRuns });
  assert.equal(nixRuns.commands.popcount.invocations, 1, 'one Nix evaluation; .drv files are read directly');
  const keys = Object.keys(counts);
  assert.deepEqual(keys, [...keys].sort(compareStrings));
  assert.ok(Object.values(counts).every((n) => Number.isInteger(n) && n >= 1));
  // Derivable from examples/pkgs/default.nix:
  assert.equal(counts['zlib-1.3.1'], 4, 'openssl, python3, curl, git');
  assert.equal(counts['python3-3.12.4'], 3, 'urllib3, certifi, requests (nested set)');
  assert.equal(counts['nss-cacert-3.101'], 2, 'curl, certifi');
  assert.equal(counts['oniguruma-6.9.9'], 1, 'jq');
  assert.equal(counts['many-042-1.0'], 1, 'manylibs');
  // Every package but busybox itself is built with busybox: 25 top level + 7 in nested sets.
  assert.equal(counts['busybox-static'], 32);
  // Nothing uses these; the throwing attribute and `lib` are skipped without failing.
  for (const unused of ['broken-1.0', 'slow-1.0', 'hello-2.12.1', 'jq-1.7.1-bin']) assert.equal(counts[unused], undefined, unused);

  const again = await popcount(pinned, HOST_SYSTEM, nixOptions());
  assert.equal(JSON.stringify(again), JSON.stringify(counts));
});

test('parseDerivation reads outputs and input derivations, escapes included', () => {
  const drv =
    'Derive([("bin","/nix/store/aaaa-jq-1.7.1-bin","",""),("out","/nix/store/bbbb-jq-1.7.1","","")],' +
    '[("/nix/store/cccc-oniguruma-6.9.9.drv",["out"]),("/nix/store/dddd-busybox.drv",["out","man"])],' +
    '["/nix/store/eeee-src"],"x86_64-linux","/nix/store/ffff/bin/sh",["-e","-c","echo \\"hi\\"\\n\\\\ done"],' +
    '[("name","jq-1.7.1"),("weird","a\\tb)]\\",")])';
  const parsed = parseDerivation(drv);
  assert.deepEqual([...parsed.outputs], [
    ['bin', '/nix/store/aaaa-jq-1.7.1-bin'],
    ['out', '/nix/store/bbbb-jq-1.7.1'],
  ]);
  assert.deepEqual(parsed.inputDrvs, [
    ['/nix/store/cccc-oniguruma-6.9.9.drv', ['out']],
    ['/nix/store/dddd-busybox.drv', ['out', 'man']],
  ]);
  const versioned = parseDerivation(
    'DrvWithVersion("xp-dyn-drv",[("out","","r:sha256","")],[("/nix/store/cccc-x.drv",(["out"],[]))],[],"s","b",[],[])',
  );
  assert.deepEqual(versioned.inputDrvs, [['/nix/store/cccc-x.drv', ['out']]]);
  assert.throws(() => parseDerivation('Derive([("out"'));
});

test('countReferences counts each referring package once per output and merges equal names', async () => {
  const drvs: Record<string, Derivation> = {
    '/s/lib1.drv': { outputs: new Map([['out', '/nix/store/00000000000000000000000000000001-lib-1.0'], ['dev', '/nix/store/00000000000000000000000000000001-lib-1.0-dev']]), inputDrvs: [] },
    '/s/lib2.drv': { outputs: new Map([['out', '/nix/store/00000000000000000000000000000002-lib-1.0']]), inputDrvs: [] },
    '/s/a.drv': { outputs: new Map([['out', '/nix/store/0000000000000000000000000000000a-a-1']]), inputDrvs: [['/s/lib1.drv', ['out', 'dev']]] },
    '/s/b.drv': { outputs: new Map([['out', '/nix/store/0000000000000000000000000000000b-b-1']]), inputDrvs: [['/s/lib2.drv', ['out']], ['/s/a.drv', ['out']]] },
  };
  const counts = await countReferences(['/s/b.drv', '/s/a.drv', '/s/a.drv'], async (p) => drvs[p]!);
  assert.equal(JSON.stringify(counts), JSON.stringify({ 'a-1': 1, 'lib-1.0': 2, 'lib-1.0-dev': 1 }));
});
