// Bundles the explorer (web/explorer) into dist/assets: one script, one style sheet and the icon,
// which the registry serves under content-hashed names (src/registry/explorer.ts). Run by
// `npm run build`, after the type checks.
import { build } from 'esbuild';
import { copyFile, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'assets');
await mkdir(out, { recursive: true });
const common = { bundle: true, minify: true, legalComments: 'none', logLevel: 'warning', absWorkingDir: root };
await build({ ...common, entryPoints: ['web/explorer/main.ts'], outfile: path.join(out, 'explorer.js'), format: 'esm', target: 'es2020', platform: 'browser' });
await build({ ...common, entryPoints: ['web/explorer/explorer.css'], outfile: path.join(out, 'explorer.css') });
await copyFile(path.join(root, 'web', 'explorer', 'favicon.svg'), path.join(out, 'favicon.svg'));
const sizes = await Promise.all(['explorer.js', 'explorer.css', 'favicon.svg'].map(async (f) => `${f} ${(await stat(path.join(out, f))).size} B`));
console.log(`explorer bundle: ${sizes.join(', ')}`);
