// A package set generated for one test run: the example set plus packages the test describes by
// their build scripts. A random marker goes into every added derivation (an environment
// attribute and a file in its output), so their store paths are new in each run: Nix really
// builds (or substitutes) them, whatever earlier runs left in the one store of this machine.

import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { EXAMPLE_PKGS, nixEnv } from './nix.js';

const execFileP = promisify(execFile);

export interface UniquePackage {
  /** Attribute name (and derivation name, with `-1.0`). */
  name: string;
  /**
   * Build script (busybox sh, `-e`, busybox applets on PATH). `$out` must be created. Other
   * packages of the set are available as `${pkgs.NAME}`, which makes them build inputs; writing
   * such a path into `$out` makes it a runtime reference.
   */
  script: string;
}

export interface UniquePackageSet {
  dir: string;
  marker: string;
  /** The output store paths of the added packages (building them if needed, without substitutes). */
  outputs(names?: readonly string[]): Promise<string[]>;
  remove(): Promise<void>;
}

/**
 * `extraAttrs`: more attributes of the set, as Nix expressions (`busybox`, `mk pname script`,
 * `pkgs` and `marker` are in scope).
 */
export async function makeUniquePackageSet(packages: readonly UniquePackage[], extraAttrs: Record<string, string> = {}): Promise<UniquePackageSet> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-unique-pkgs-'));
  const marker = `nixery-test-${randomBytes(6).toString('hex')}`;
  const attrs = packages.map(
    (p) => `
  ${p.name} = mk "${p.name}" ''
    mkdir -p $out
    ${p.script.trim().split('\n').join('\n    ')}
    echo "${marker}" > $out/.marker
  '';`,
  );
  for (const [name, expr] of Object.entries(extraAttrs)) attrs.push(`  ${name} = ${expr};`);
  await writeFile(
    path.join(dir, 'default.nix'),
    `# Generated for one test run (marker ${marker}).
{ system ? builtins.currentSystem, ... }:
let
  examples = import ${EXAMPLE_PKGS} { inherit system; };
  inherit (examples) busybox;
  marker = "${marker}";
  mk = pname: script: derivation {
    name = "\${pname}-1.0";
    system = builtins.currentSystem;
    builder = "\${busybox}/bin/sh";
    args = [ "-e" "-c" script ];
    PATH = "\${busybox}/bin";
    MARKER = marker;
  } // { inherit pname; version = "1.0"; meta = { }; };
  pkgs = examples // {
${attrs.join('\n')}
  };
in
pkgs
`,
  );
  return {
    dir,
    marker,
    async outputs(names = packages.map((p) => p.name)) {
      const { stdout } = await execFileP('nix-build', [dir, '--no-out-link', ...names.flatMap((n) => ['-A', n])], {
        env: nixEnv(),
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout.trim().split('\n');
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
