// The image of nixery-ts for the deploy tests: built once by scripts/build-image.sh (--if-changed:
// reused while its inputs are the same, so one test run builds it at most once), or a reason why
// it cannot be built here, which the tests print as their skip reason.

import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const execFileP = promisify(execFile);
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface BuiltImage {
  /** localhost/nixery-ts:<version> in podman's storage. */
  ref: string;
  version: string;
  /** The OCI archive the script wrote (for docker and skopeo). */
  archive: string;
}

/** Why the image cannot be built or run on this machine, or null. */
export function onPath(tool: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'];
  return dirs.some((d) => d !== '' && existsSync(path.join(d, tool)));
}

export function cannotBuild(): string | null {
  if (process.getuid?.() !== 0) return 'building the image needs root (mmdebstrap, file owners)';
  for (const tool of ['mmdebstrap', 'skopeo', 'podman']) {
    if (!onPath(tool)) return `${tool} is not installed (run scripts/install-deps.sh)`;
  }
  if (!existsSync(path.join(ROOT, 'dist/src/cli.js'))) return 'dist/ is not built';
  return null;
}

let building: Promise<BuiltImage> | undefined;

export function buildImage(): Promise<BuiltImage> {
  building ??= (async () => {
    const version = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string;
    try {
      await execFileP('bash', [path.join(ROOT, 'scripts/build-image.sh'), '--if-changed'], { cwd: ROOT, timeout: 1_800_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, DOCKER_HOST: 'unix:///nonexistent' } });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`scripts/build-image.sh failed: ${e.stderr || e.message}`);
    }
    return { ref: `localhost/nixery-ts:${version}`, version, archive: path.join(ROOT, `.scratch/image/nixery-ts-${version}.oci.tar`) };
  })();
  return building;
}

/** CONTAINERS_CONF for podman in this sandbox (issue 19): rlimits it may set, and runc. */
export const CONTAINERS_CONF = `[containers]
default_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]
[engine]
runtime = "runc"
`;
