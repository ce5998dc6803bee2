// What an image runs: its command, user and environment, decided from its name (the `shell` and
// `nonroot` meta-packages), what its package declares (`meta.mainProgram`) and a build request's
// config. Images that have none of these get exactly the config they always had.

import { ALWAYS_PACKAGES, type ImageRequest } from '../image/name.js';
import { NONROOT_USER } from '../image/config.js';
import { IMAGE_ENV, type ImageSpec } from '../manifest/manifest.js';
import type { ResolvedPackage } from '../nix/types.js';

export type RuntimeSpec = Pick<ImageSpec, 'cmd' | 'user' | 'env' | 'entrypoint' | 'workingDir' | 'exposedPorts' | 'labels' | 'stopSignal'>;

/**
 * The default command: `bash` when the shell is in the image; else, when the image has a single
 * package besides the ones every image gets and it declares `meta.mainProgram`, that program by
 * absolute path (`/bin/<mainProgram>`, as `nix run` runs `<out>/bin/<mainProgram>`: it does not
 * depend on PATH, which a config may change); else none.
 */
export function defaultCommand(resolved: readonly ResolvedPackage[]): string[] | undefined {
  if (resolved.some((p) => p.attrPath.length === 1 && p.attrPath[0] === 'bashInteractive')) return ['bash'];
  const own = resolved.filter((p) => !(ALWAYS_PACKAGES as readonly string[]).includes(p.requested));
  const main = own.length === 1 ? own[0]!.mainProgram : undefined;
  return main ? [`/bin/${main}`] : undefined;
}

/**
 * The runtime fields of the image's config. A config's `cmd` replaces the default command; an
 * `entrypoint` without `cmd` drops it (as a Dockerfile's ENTRYPOINT resets an inherited CMD).
 * Its `env` entries replace the defaults of the same name in place; the others follow in order.
 * Its `user` replaces nonroot's.
 */
export function runtimeSpec(image: ImageRequest, resolved: readonly ResolvedPackage[]): RuntimeSpec {
  const config = image.config ?? {};
  const spec: RuntimeSpec = {};
  const cmd = config.cmd ?? (config.entrypoint ? undefined : defaultCommand(resolved));
  if (cmd) spec.cmd = cmd;
  const user = config.user ?? (image.nonroot ? `${NONROOT_USER.uid}:${NONROOT_USER.gid}` : undefined);
  if (user !== undefined) spec.user = user;
  const env = [...IMAGE_ENV, ...(image.nonroot ? [`HOME=${NONROOT_USER.home}`] : [])];
  for (const entry of config.env ?? []) {
    const name = entry.slice(0, entry.indexOf('=') + 1);
    const at = env.findIndex((e) => e.startsWith(name));
    if (at >= 0) env[at] = entry;
    else env.push(entry);
  }
  if (env.length !== IMAGE_ENV.length || env.some((e, i) => e !== IMAGE_ENV[i])) spec.env = env;
  if (config.entrypoint) spec.entrypoint = config.entrypoint;
  if (config.workingDir !== undefined) spec.workingDir = config.workingDir;
  if (config.exposedPorts) spec.exposedPorts = config.exposedPorts;
  if (config.labels) spec.labels = config.labels;
  if (config.stopSignal !== undefined) spec.stopSignal = config.stopSignal;
  return spec;
}
