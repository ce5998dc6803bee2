// The architecture rules of issue 18, checked on the import graph of src/ (static imports,
// re-exports and dynamic import(), parsed with the TypeScript compiler). Each failure names the
// offending file and import.
//
// The house, bottom to top (a module may import only from its own folder or a lower one):
//   util · errors · secrets · image · manifest · nix · sbom · layers · archive · storage · signing ·
//   config · builder · auth · service · registry · cleanup · metrics · log-destination · app · cli
// util/errors/secrets are the ground floor; image and manifest are the pure OCI/name domain the
// pipeline uses; sbom turns what Nix and the build report into SBOM and provenance JSON (pure
// data → JSON, beside the manifests; the builder stores it); nix → layers → archive → storage → builder is the pipeline (the builder owns
// it and calls the others). config reads every setting (it knows the storage backends'
// option types, so it sits above storage; and it parses the signing key, so above signing,
// which keeps signatures in storage and is read by gc and scrub in the builder); service sits under the HTTP registry; metrics and
// the composition root (app, cli) sit on top and may import anything below them.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { ERROR_CATALOGUE } from '../src/errors.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = path.join(ROOT, 'src');

const ORDER = ['util', 'errors', 'secrets', 'image', 'manifest', 'nix', 'sbom', 'layers', 'archive', 'storage', 'signing', 'config', 'builder', 'auth', 'service', 'registry', 'cleanup', 'metrics', 'log-destination', 'app', 'cli'];

interface Import {
  from: string; // file, relative to src/ (e.g. registry/server.ts)
  specifier: string; // as written
  target: string | undefined; // resolved file relative to src/, for relative imports
  typeOnly: boolean;
  names: string[]; // imported or re-exported names ('*' for a namespace or star)
  line: number;
}

function listSources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return listSources(full);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

const files = new Map<string, ts.SourceFile>();
for (const full of listSources(SRC)) {
  const rel = path.relative(SRC, full).split(path.sep).join('/');
  files.set(rel, ts.createSourceFile(rel, readFileSync(full, 'utf8'), ts.ScriptTarget.Latest, true));
}

function resolve(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const joined = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  const ts_ = joined.replace(/\.js$/, '.ts');
  if (files.has(ts_)) return ts_;
  if (files.has(`${joined}/index.ts`)) return `${joined}/index.ts`;
  return ts_; // outside src/ or missing: still reported by its path
}

function importsOf(rel: string, sf: ts.SourceFile): Import[] {
  const out: Import[] = [];
  const add = (node: ts.Node, specifier: string, typeOnly: boolean, names: string[]) =>
    out.push({ from: rel, specifier, target: resolve(rel, specifier), typeOnly, names, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const names: string[] = [];
      let allTypes = clause?.isTypeOnly ?? false;
      if (clause?.name) names.push('default');
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) names.push('*');
      if (bindings && ts.isNamedImports(bindings)) {
        for (const el of bindings.elements) names.push((el.propertyName ?? el.name).text);
        if (!allTypes && bindings.elements.length > 0 && !clause?.name) allTypes = bindings.elements.every((el) => el.isTypeOnly);
      }
      add(node, node.moduleSpecifier.text, allTypes, names);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const names = node.exportClause && ts.isNamedExports(node.exportClause) ? node.exportClause.elements.map((el) => (el.propertyName ?? el.name).text) : ['*'];
      add(node, node.moduleSpecifier.text, node.isTypeOnly, names);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      add(node, node.arguments[0].text, false, ['*']);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node, node.argument.literal.text, true, ['*']);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

const imports = [...files].flatMap(([rel, sf]) => importsOf(rel, sf));

/** The folder (or top-level module) a file belongs to: `registry/server.ts` → `registry`, `app.ts` → `app`. */
function area(rel: string): string {
  return rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : rel.replace(/\.ts$/, '');
}
const nodeModule = (spec: string) => spec.replace(/^node:/, '').split('/')[0]!;
const isBuiltin = (spec: string) => spec.startsWith('node:') || ['fs', 'http', 'https', 'http2', 'net', 'tls', 'child_process', 'cluster', 'dgram', 'worker_threads'].includes(spec.split('/')[0]!);
const show = (i: Import) => `src/${i.from}:${i.line} imports '${i.specifier}'${i.typeOnly ? ' (types)' : ''}`;

function check(violations: string[], what: string): void {
  assert.deepEqual(violations, [], `${what}:\n  ${violations.join('\n  ')}`);
}

test('the parser sees the imports it must (a sanity check of this test)', () => {
  assert.ok(files.size > 100, `${files.size} files`);
  const has = (from: string, target: string) => imports.some((i) => i.from === from && i.target === target);
  assert.ok(has('app.ts', 'registry/server.ts'));
  assert.ok(imports.some((i) => i.from === 'storage/index.ts' && i.specifier === './s3.js' && i.names[0] === '*'), 'dynamic import()');
  assert.ok(imports.some((i) => i.from === 'nix/run.ts' && i.specifier === 'node:child_process'));
  for (const i of imports) if (i.target) assert.ok(files.has(i.target), `${show(i)}: no such file`);
  for (const rel of files.keys()) assert.ok(ORDER.includes(area(rel)), `src/${rel}: its folder ${area(rel)} has no place in the order above`);
});

test('(a) layering is a pure function of a graph: no Nix, no storage, no HTTP, no I/O', () => {
  const forbiddenAreas = new Set(['nix', 'storage', 'registry', 'builder', 'service', 'archive', 'config', 'metrics', 'app', 'cli', 'auth', 'cleanup']);
  const allowedBuiltins = new Set(['crypto']); // hashing is computation, not I/O
  const violations: string[] = [];
  for (const i of imports.filter((i) => area(i.from) === 'layers')) {
    if (i.target && forbiddenAreas.has(area(i.target))) violations.push(`${show(i)}: layering imports ${area(i.target)}/`);
    else if (!i.target && !(isBuiltin(i.specifier) && allowedBuiltins.has(nodeModule(i.specifier)))) violations.push(`${show(i)}: layering imports a module that may do I/O`);
  }
  // Globals that reach the outside world.
  for (const [rel, sf] of files) {
    if (area(rel) !== 'layers') continue;
    const visit = (node: ts.Node): void => {
      if (ts.isIdentifier(node) && ['fetch', 'process', 'require', 'XMLHttpRequest', 'WebSocket'].includes(node.text) && !ts.isPropertyAccessExpression(node.parent)) {
        violations.push(`src/${rel}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1} uses ${node.text}`);
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  check(violations, 'layering must stay pure');
});

test('(b) storage knows no Nix, no HTTP serving, no builder layout, and picks no OCI codes', () => {
  const violations: string[] = [];
  const catalogueNames = new Set(['ERROR_CATALOGUE', 'CatalogueEntry', 'ErrorKind', 'describeError', 'isClientError', '*', 'default']);
  for (const i of imports.filter((i) => area(i.from) === 'storage')) {
    if (i.target && ['nix', 'registry', 'builder', 'service', 'layers', 'archive', 'manifest', 'auth', 'metrics', 'config', 'app', 'cli'].includes(area(i.target))) violations.push(`${show(i)}: storage imports ${area(i.target)}/`);
    if (isBuiltin(i.specifier) && ['http', 'https', 'http2', 'net', 'tls'].includes(nodeModule(i.specifier)) && !i.typeOnly) violations.push(`${show(i)}: storage imports an HTTP server module`);
    if (i.target === 'errors.ts') for (const n of i.names) if (catalogueNames.has(n)) violations.push(`${show(i)}: storage imports ${n} (codes are the table's, not storage's)`);
  }
  // String literals: no catalogue kinds or OCI codes, no key prefixes of the builder's layout.
  const codes = new Set<string>(Object.entries(ERROR_CATALOGUE).flatMap(([kind, e]) => [kind, e.code]));
  const layout = /^(?:blobs|builds|manifests|staging|pins|packages|records)\//;
  for (const [rel, sf] of files) {
    if (area(rel) !== 'storage') continue;
    const visit = (node: ts.Node): void => {
      if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateHead(node)) {
        const where = `src/${rel}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1}`;
        if (codes.has(node.text)) violations.push(`${where} names the error code/kind ${JSON.stringify(node.text)}`);
        if (layout.test(node.text)) violations.push(`${where} knows the builder's key prefix ${JSON.stringify(node.text)}`);
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  check(violations, 'storage must know no Nix, HTTP, OCI codes or builder layout');
});

test('(c) only src/nix spawns processes (child_process, cluster; worker threads are not processes)', () => {
  const violations = imports
    .filter((i) => isBuiltin(i.specifier) && ['child_process', 'cluster'].includes(nodeModule(i.specifier)) && !i.typeOnly && area(i.from) !== 'nix')
    .map((i) => `${show(i)}: only src/nix spawns processes`);
  check(violations, 'processes are spawned outside src/nix');
});

test('(d) only src/registry serves HTTP; app.ts starts it through one module', () => {
  const violations = imports
    .filter((i) => isBuiltin(i.specifier) && ['http', 'https', 'http2', 'net', 'tls'].includes(nodeModule(i.specifier)) && !i.typeOnly && area(i.from) !== 'registry')
    .map((i) => `${show(i)}: only src/registry serves HTTP`);
  const appEntries = new Set(imports.filter((i) => i.from === 'app.ts' && !i.typeOnly && i.target && area(i.target) === 'registry').map((i) => i.target!));
  if (appEntries.size > 1) violations.push(`src/app.ts takes values from ${appEntries.size} registry modules (${[...appEntries].sort().join(', ')}): it may call one start function`);
  check(violations, 'HTTP is served outside src/registry');
});

test('(e) src/registry imports nothing from src/nix', () => {
  const violations = imports.filter((i) => area(i.from) === 'registry' && i.target && area(i.target) === 'nix').map((i) => `${show(i)}: the registry reaches Nix only through the builder`);
  check(violations, 'registry → nix');
});

test('(f) errors are defined once, in src/errors.ts, from the table', () => {
  const errorsFile = files.get('errors.ts')!;
  const errorClasses = new Set(['NixeryError', 'Error']);
  // Every exported error of errors.ts is a kind of the table; nothing else may extend them.
  ts.forEachChild(errorsFile, (node) => {
    if (ts.isVariableStatement(node)) for (const d of node.declarationList.declarations) if (ts.isIdentifier(d.name) && d.name.text.endsWith('Error')) errorClasses.add(d.name.text);
  });
  errorClasses.delete('Error');
  const violations: string[] = [];
  for (const [rel, sf] of files) {
    if (rel === 'errors.ts') continue;
    const visit = (node: ts.Node): void => {
      if ((ts.isClassDeclaration(node) || ts.isClassExpression(node)) && node.heritageClauses) {
        for (const h of node.heritageClauses) for (const t of h.types) {
          const base = t.expression.getText(sf);
          if (errorClasses.has(base)) violations.push(`src/${rel}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1} defines ${node.name?.text ?? 'a class'} extends ${base}: define it in src/errors.ts`);
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  // And errors.ts itself: one defineError line per class, no hand-written subclasses.
  ts.forEachChild(errorsFile, (node) => {
    if (ts.isClassDeclaration(node) && node.name?.text !== 'NixeryError') violations.push(`src/errors.ts: class ${node.name?.text} is written by hand: make it with defineError`);
  });
  check(violations, 'error kinds are defined outside the table');
});

test('(g) no import cycles in src/', () => {
  const graph = new Map<string, string[]>();
  for (const rel of files.keys()) graph.set(rel, []);
  for (const i of imports) if (i.target && files.has(i.target)) graph.get(i.from)!.push(i.target);
  // Tarjan's strongly connected components.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const strong = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)!) {
      if (!index.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || graph.get(v)!.includes(v)) cycles.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) strong(v);
  const violations = cycles.map((scc) => {
    const inCycle = new Set(scc);
    const edges = imports.filter((i) => inCycle.has(i.from) && i.target && inCycle.has(i.target)).map(show);
    return `a circle of ${scc.length} files: ${edges.join('; ')}`;
  });
  check(violations, 'import cycles');
});

test('(h) no import runs up the house', () => {
  const rank = (rel: string) => ORDER.indexOf(area(rel));
  const violations = imports
    .filter((i) => i.target && files.has(i.target) && area(i.from) !== area(i.target) && rank(i.target) > rank(i.from))
    .map((i) => `${show(i)}: ${area(i.from)} is below ${area(i.target!)}`);
  check(violations, 'upward imports');
});

test('every setting is read once, in src/config.ts', () => {
  // Our settings and the storage and cloud SDKs' variables; `process.env` passed on whole to a
  // child is not a read.
  const setting = /^(?:NIXERY_|NIX_|S3_|GCS_|STORAGE_|GOOGLE_|AWS_|PORT$)/;
  const violations: string[] = [];
  for (const [rel, sf] of files) {
    if (rel === 'config.ts') continue;
    const visit = (node: ts.Node): void => {
      const name = ts.isPropertyAccessExpression(node) ? node.name.text : ts.isElementAccessExpression(node) && ts.isStringLiteral(node.argumentExpression) ? node.argumentExpression.text : undefined;
      if (name && setting.test(name) && /(?:^|\.)env$/i.test(node.getChildAt(0, sf).getText(sf))) {
        violations.push(`src/${rel}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1} reads ${name}`);
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  check(violations, 'settings read outside src/config.ts');
});

test('no file in src/ is over 500 lines', () => {
  const violations = [...files].filter(([, sf]) => sf.getLineStarts().length > 500 + (sf.text.endsWith('\n') ? 1 : 0)).map(([rel, sf]) => `src/${rel}: ${sf.text.split('\n').length - (sf.text.endsWith('\n') ? 1 : 0)} lines`);
  check(violations, 'files over 500 lines');
});

test('one of each: concurrency primitive, Logger type, store path → name function', () => {
  const owners: Array<[RegExp, string, string]> = [
    [/^(?:Semaphore|Limiter|ConcurrencyLimiter|mapLimit|forEachLimit(?:ed)?|pLimit)$/, 'util/semaphore.ts', 'a concurrency limiter'],
    [/Logger$/, 'util/logger.ts', 'a logger interface'],
    [/^(?:packageName|packageFromPath|storePathName|nameFromStorePath)$/, 'util/store-path.ts', 'a store path → name function'],
  ];
  const violations: string[] = [];
  for (const [rel, sf] of files) {
    const visit = (node: ts.Node): void => {
      const declared =
        (ts.isClassDeclaration(node) || ts.isFunctionDeclaration(node) || ts.isInterfaceDeclaration(node)) && node.name ? node.name.text
        : ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer && (ts.isArrowFunction(node.initializer) || ts.isFunctionExpression(node.initializer)) ? node.name.text
        : undefined;
      // A logger is an interface of log methods: type aliases that Pick from the one Logger are fine.
      if (declared) {
        for (const [pattern, home, what] of owners) {
          if (pattern.test(declared) && rel !== home && !(what === 'a logger interface' && !ts.isInterfaceDeclaration(node))) {
            violations.push(`src/${rel}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1} declares ${declared}, ${what} besides src/${home}`);
          }
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  check(violations, 'more than one of a kind');
});
