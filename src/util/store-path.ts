// The one function from a store path to its package name (the popularity key, Nixery's
// PackageFromPath), honouring the store directory: `<storeDir>/<hash>-glibc-2.40-66/lib` →
// `glibc-2.40-66`.

export const DEFAULT_STORE_DIR = '/nix/store';

const HASHED = /^[0-9a-z]{32}-(.+)$/;

export function storePathName(path: string, storeDir: string = DEFAULT_STORE_DIR): string {
  const dir = `${storeDir.replace(/\/+$/, '')}/`;
  // Inside the store: the first segment below it; elsewhere (a .drv named alone, a foreign
  // store): the last segment.
  const base = path.startsWith(dir) ? path.slice(dir.length).split('/')[0]! : path.slice(path.lastIndexOf('/') + 1);
  return HASHED.exec(base)?.[1] ?? base;
}
