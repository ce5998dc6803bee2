// Image names from package attributes, and the commands that pull an image, with the
// registry's own name and tag rules (src/image/name.ts) so the page never composes a name the
// registry refuses.

import { COMPONENT_REGEXP, TAG_REGEXP, parseImageName, pullName } from '../../../src/image/name.js';

/**
 * The image-name component that requests a package attribute: lower case (lookup is
 * case-insensitive), `_1password` → `1password` (names cannot start with `_`), nested sets
 * with dots (`python3Packages.requests` → `python3packages.requests`). Null when the attribute
 * cannot be named in an image (a character a repository name cannot hold).
 */
export function componentFor(attr: string): string | null {
  let c = attr.toLowerCase();
  if (/^_[0-9]/.test(c)) c = c.slice(1);
  return COMPONENT_REGEXP.test(c) ? c : null;
}

export interface Composition {
  packages: string[];
  shell: boolean;
  arm64: boolean;
  /** The `nonroot` meta-package: a user and group nonroot (65532) the image runs as. */
  nonroot?: boolean;
  tag: string;
}

/** The repository name (meta-packages first, as the registry reads them) or null when empty. */
export function composeName(c: Composition): string | null {
  const parts = [...(c.arm64 ? ['arm64'] : []), ...(c.nonroot ? ['nonroot'] : []), ...(c.shell ? ['shell'] : []), ...c.packages];
  return parts.length > 0 ? parts.join('/') : null;
}

export function validTag(tag: string): boolean {
  return TAG_REGEXP.test(tag);
}

/**
 * The name as the registry shows and pulls it (image/name.ts pullName: meta-packages first, the
 * other packages sorted), so the page never shows one spelling and pulls another. Null when the
 * registry would refuse the name.
 */
export function canonicalName(name: string): string | null {
  try {
    return pullName(parseImageName(name));
  } catch {
    return null;
  }
}

/** The uid and gid of the `nonroot` meta-package's user. */
export const NONROOT_UID = 65532;

export interface PullCommand {
  id: 'docker' | 'podman' | 'containerd' | 'kubernetes';
  label: string;
  text: string;
}

/** A Kubernetes object name for an image: lower-case letters, digits and dashes, at most 63. */
export function podName(name: string): string {
  const base = `nixery-${name}`.replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').slice(0, 63).replace(/-+$/, '');
  return base || 'nixery';
}

/**
 * How to pull `name:tag` from `host` with each client. `plainHttp`: the registry is served over
 * HTTP, which podman and containerd must be told (docker allows it for localhost only).
 * `digest`: pull that manifest (an image built with its own config is pullable only by digest).
 */
export function pullCommands(host: string, name: string, tag: string, plainHttp: boolean, digest?: string): PullCommand[] {
  const ref = digest ? `${host}/${name}@${digest}` : `${host}/${name}:${tag}`;
  const components = name.split('/');
  // With `shell` the image's command is bash; without it there may be no shell to run.
  const shell = components.includes('shell');
  const nonroot = components.includes('nonroot');
  const tls = plainHttp ? ' --tls-verify=false' : '';
  // The pod runs the image's own command (a one-off like hello exits: no restarts); a shell
  // gets a terminal to stay up. `nonroot` images pass the restricted Pod Security Standard.
  const pod = [
    'apiVersion: v1',
    'kind: Pod',
    'metadata:',
    `  name: ${podName(name)}`,
    'spec:',
    '  restartPolicy: Never',
    '  containers:',
    '    - name: main',
    `      image: ${ref}`,
    ...(shell ? ['      stdin: true', '      tty: true'] : []),
    ...(nonroot ? ['      securityContext:', '        runAsNonRoot: true', `        runAsUser: ${NONROOT_UID}`] : []),
    '',
  ];
  return [
    { id: 'docker', label: 'Docker', text: `docker pull ${ref}${shell ? `\ndocker run --rm -it ${ref}` : ''}` },
    { id: 'podman', label: 'Podman', text: `podman pull${tls} ${ref}${shell ? `\npodman run --rm -it${tls} ${ref}` : ''}` },
    { id: 'containerd', label: 'containerd', text: `ctr images pull${plainHttp ? ' --plain-http' : ''} ${ref}${shell ? `\nctr run --rm -t ${ref} ${podName(name)} bash` : ''}` },
    { id: 'kubernetes', label: 'Kubernetes', text: pod.join('\n') },
  ];
}
