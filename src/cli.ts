#!/usr/bin/env node
// Command line: `nixery build`, `nixery serve`, `nixery popcount`, `nixery layers`, `nixery gc`,
// `nixery scrub`, `nixery sign`.
// Errors are one line on stderr and a non-zero exit, never a stack trace.

import { readFileSync } from 'node:fs';
import os from 'node:os';
import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { SETTINGS, loadConfig, storageSettings, type Config, type SettingName } from './config.js';
import { ConfigError, NixeryError } from './errors.js';
import { parseReference } from './image/name.js';
import { createApp, sourceFromConfig } from './app.js';
import { exportAttestations, exportImage, exportIndex, parseOutputTarget } from './builder/export.js';
import path from 'node:path';
import type { BuildProgress } from './builder/builder.js';
import { runLayersCommand } from './layers/command.js';
import { popcount } from './nix/popcount.js';
import { AMD64 } from './image/name.js';
import { forPlatforms, parsePlatforms, platformArch } from './image/platform.js';
import { learnSettingSecrets, redact } from './secrets.js';
import { exitGracefullyOnSignals } from './registry/shutdown.js';

// Layer compression runs in libuv's thread pool (default 4 threads): give it a thread per core
// plus room for file I/O. Must happen before the pool is first used.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, os.availableParallelism() + 2));

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Adds one flag per setting; values are validated by loadConfig, not by commander. */
function withSettings(cmd: Command, names: SettingName[]): Command {
  for (const name of names) {
    const s = SETTINGS[name];
    cmd.addOption(new Option(`${s.flag} <value>`, `${s.description} (env ${s.env})`));
  }
  return cmd;
}

function configFrom(opts: Record<string, unknown>, names: SettingName[]): Config {
  const flags: Partial<Record<SettingName, string>> = {};
  for (const name of names) {
    const key = SETTINGS[name].flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const v = opts[key];
    if (typeof v === 'string') flags[name] = v;
  }
  const config = loadConfig(process.env, flags);
  learnSettingSecrets(process.env, [config.pkgsRepo, config.popularityUrl]);
  return config;
}

const SOURCE_SETTINGS: SettingName[] = ['channel', 'pkgsRepo', 'pkgsPath'];
const BUILD_SETTINGS: SettingName[] = [...SOURCE_SETTINGS, 'storageBackend', 'storagePath', 'nixTimeout', 'evalTimeout', 'buildTimeout', 'popularityUrl', 'layering', 'layerBudget', 'layerCompression', 'gzip', 'logLevel'];
const SERVE_SETTINGS: SettingName[] = [
  'port',
  'host',
  ...BUILD_SETTINGS,
  'platforms',
  'buildConcurrency',
  'buildQueue',
  'resolveTtl',
  'manifestCacheSize',
  'blobCacheMb',
  'blobRedirect',
  'redirectTtl',
  'sendTimeout',
  'sendBufferMb',
  'blobVerify',
  'shutdownTimeout',
  'publicHost',
  // Not NIXERY_SIGNING_KEY: a key on the command line would be in argv (ps, /proc): environment only.
];

function progressPrinter(): (p: BuildProgress) => void {
  if (!process.stderr.isTTY) return () => {};
  let last = '';
  return (p) => {
    const line = p.pack ? `${p.message} (${(p.pack.bytesDone / 1e6).toFixed(1)} of ${(p.pack.bytesTotal / 1e6).toFixed(1)} MB)` : p.message;
    if (line === last) return;
    last = line;
    process.stderr.write(`\r\x1b[K${line}`);
  };
}

const program = new Command()
  .name('nixery')
  .description('Container images built on demand from Nix packages')
  .version(VERSION)
  .showHelpAfterError();

withSettings(
  program
    .command('build')
    .description('build an image and write it out, without a server')
    .argument('<image>', 'image name and tag, e.g. shell/hello:latest')
    .requiredOption('-o, --output <target>', 'oci:DIR (OCI image layout) or docker-archive:FILE')
    .option(
      '--platform <platform>',
      "platform to build for, e.g. linux/arm64; repeat it for several, which oci:DIR gets as an image index (default: NIXERY_PLATFORMS, else this machine's)",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option('--json', 'print digests and the layer list as JSON on stdout')
    .option('--sbom <dir>', 'also write the SBOMs (CycloneDX, SPDX) and provenance to DIR; in an oci:DIR layout they are referrers too'),
  BUILD_SETTINGS,
).action(async (ref: string, opts: Record<string, unknown>) => {
  const config = configFrom(opts, BUILD_SETTINGS);
  const target = parseOutputTarget(String(opts.output));
  const flagged = opts.platform as string[];
  let platforms = config.platforms;
  if (flagged.length > 0) {
    try {
      platforms = parsePlatforms(flagged.join(','));
    } catch (err) {
      throw new ConfigError(`invalid --platform: ${(err as Error).message}`);
    }
  }
  const image = parseReference(ref);
  // The name as typed (parseReference validated it): what the written image is called.
  const colon = ref.lastIndexOf(':');
  const requested = colon > ref.lastIndexOf('/') ? ref.slice(0, colon) : ref;
  if (image.archRequested && flagged.length > 0 && platforms.join() !== image.arch.platform) {
    throw new ConfigError(`invalid --platform: ${ref} names its platform (${image.arch.platform}) with the arm64 meta-package`);
  }
  const images = forPlatforms(image, platforms.map(platformArch));
  if (images.length > 1 && target.kind !== 'oci') throw new ConfigError(`invalid --output: ${target.kind}:FILE holds one platform; write several platforms to oci:DIR`);
  const app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'warn' });
  const progress = progressPrinter();
  const built = await app.builder.buildAll(images, progress);
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[Kwriting ${target.kind}:${target.path}\n`);
  const layersOf = (b: (typeof built)[number]) => b.layers.map((l) => ({ digest: l.digest, size: l.size, diffId: l.diffId, storePaths: l.paths, cached: l.cached }));
  let summary: Record<string, unknown> & { image: string; digest: string; output: string };
  let shown: string;
  if (built.length === 1) {
    const only = built[0]!;
    await exportImage(only, app.storage, target, requested, { referrers: opts.sbom !== undefined });
    summary = {
      image: `${requested}:${image.tag}`,
      digest: only.manifests.oci.digest,
      dockerDigest: only.manifests.docker.digest,
      config: only.manifests.config.digest,
      revision: only.revision,
      output: `${target.kind}:${target.path}`,
      layers: layersOf(only),
    };
    shown = `${only.layers.length} layers`;
  } else {
    const index = await app.builder.index(built);
    await exportIndex(built, index, app.storage, target, requested, { referrers: opts.sbom !== undefined });
    summary = {
      image: `${requested}:${image.tag}`,
      digest: index.oci.digest,
      dockerDigest: index.docker.digest,
      revision: built[0]!.revision,
      output: `${target.kind}:${target.path}`,
      platforms: built.map((b) => ({
        platform: b.image.arch.platform,
        digest: b.manifests.oci.digest,
        dockerDigest: b.manifests.docker.digest,
        config: b.manifests.config.digest,
        layers: layersOf(b),
      })),
    };
    shown = `index of ${built.map((b) => b.image.arch.platform).join(', ')}`;
  }
  if (opts.sbom !== undefined) summary.sbom = await exportAttestations(built, app.storage, path.resolve(String(opts.sbom)));
  if (opts.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else if (process.stdout.isTTY) process.stdout.write(`${summary.image} ${summary.digest} (${shown}) → ${summary.output}\n`);
});

withSettings(program.command('serve').description('run the registry'), SERVE_SETTINGS).action(async (opts: Record<string, unknown>) => {
  const config = configFrom(opts, SERVE_SETTINGS);
  const app = await createApp(config, { logDestination: 'stdout', defaultLogLevel: config.logLevel });
  const registry = await app.serve(VERSION);
  exitGracefullyOnSignals({ registry, log: app.log, timeoutMs: config.shutdownTimeout * 1000, stopProcesses: app.stopProcesses });
});

withSettings(
  program
    .command('popcount')
    .description('write popularity data for the package set: for each package, how many derivations refer to it')
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .option('--tag <tag>', 'image tag selecting the source revision (git sources)', 'latest'),
  [...SOURCE_SETTINGS, 'evalTimeout'],
).action(async (opts: Record<string, unknown>) => {
  const config = configFrom(opts, [...SOURCE_SETTINGS, 'evalTimeout']);
  const { Pinner } = await import('./builder/pins.js');
  // Listing a whole package set is one (large) evaluation: NIXERY_EVAL_TIMEOUT bounds it.
  const timeoutMs = config.evalTimeout * 1000;
  // The builder's pinner (without storage: nothing is built or kept here).
  const pins = new Pinner({ source: sourceFromConfig(config), ttlMs: config.resolveTtl * 1000, resolveTimeoutMs: timeoutMs });
  const { pinned } = await pins.pin(String(opts.tag));
  const counts = await popcount(pinned, AMD64.nixSystem, { timeoutMs });
  const json = `${JSON.stringify(counts, null, 1)}\n`;
  if (typeof opts.output === 'string') await writeFile(opts.output, json);
  else process.stdout.write(json);
});

program
  .command('layers')
  .description('layering as a filter: reads a layering-benchmark request (JSON) on stdin, prints the layers')
  .option('--strategy <name>', 'layering strategy')
  .option('--budget <n>', 'override the request budget')
  .action(async (opts: { strategy?: string; budget?: string }) => {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const budget = opts.budget === undefined ? undefined : Number(opts.budget);
    if (budget !== undefined && !(Number.isInteger(budget) && budget >= 1 && budget <= 125)) throw new ConfigError('invalid --budget: must be a whole number from 1 to 125');
    const strategy = opts.strategy ?? loadConfig().layering;
    process.stdout.write(`${runLayersCommand(Buffer.concat(chunks).toString('utf8'), strategy, budget)}\n`);
  });

const STORAGE_SETTINGS: SettingName[] = ['storageBackend', 'storagePath'];

withSettings(
  program
    .command('gc')
    .description('remove blobs and cache entries no cached manifest references, older than a grace period')
    .option('--dry-run', 'only print what would be removed')
    .option('--grace <seconds>', 'keep anything written less than this before the run started', '3600')
    .option('--manifest-max-age <seconds>', 'also expire cached manifests written this long before the run started (0: all)'),
  STORAGE_SETTINGS,
).action(async (opts: Record<string, unknown>) => {
  const config = configFrom(opts, STORAGE_SETTINGS);
  const seconds = (name: string, v: unknown) => {
    if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new ConfigError(`invalid ${name}: must be a whole number of seconds`);
    return Number(v);
  };
  const graceSeconds = seconds('--grace', opts.grace);
  const manifestMaxAgeSeconds = opts.manifestMaxAge === undefined ? undefined : seconds('--manifest-max-age', opts.manifestMaxAge);
  const { createStorage } = await import('./storage/index.js');
  const { collectGarbage } = await import('./builder/gc.js');
  const storage = await createStorage(storageSettings(config));
  const report = await collectGarbage(storage, {
    graceSeconds,
    manifestMaxAgeSeconds,
    dryRun: Boolean(opts.dryRun),
    log: (line) => process.stdout.write(`${line}\n`),
  });
  const dangling = report.danglingRecordsRemoved.length;
  process.stdout.write(
    `${report.dryRun ? 'would free' : 'freed'} ${report.bytesFreed} bytes in ${report.removed.length} objects; kept ${report.manifestsKept} manifests${report.signaturesKept ? `, ${report.signaturesKept} signatures` : ''} and ${report.blobsKept} blobs` +
      `${dangling ? `; ${dangling} records written during the run used removed blobs and ${report.dryRun ? 'would be' : 'were'} removed (rebuilt on the next pull)` : ''}\n`,
  );
});

withSettings(
  program
    .command('scrub')
    .description('verify every blob and cached record against its digest and references; exit 1 if anything is bad')
    .option('--repair', 'remove what is bad (and the records that use it); the registry rebuilds it on the next pull')
    .option('--json', 'print the report as JSON on stdout instead of lines'),
  STORAGE_SETTINGS,
).action(async (opts: Record<string, unknown>) => {
  const config = configFrom(opts, STORAGE_SETTINGS);
  const { createStorage } = await import('./storage/index.js');
  const { scrubStorage } = await import('./builder/scrub.js');
  const storage = await createStorage(storageSettings(config));
  const json = Boolean(opts.json);
  const report = await scrubStorage(storage, { repair: Boolean(opts.repair), log: json ? undefined : (line) => process.stdout.write(`${line}\n`) });
  if (json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const { blobs, bytes, builds, manifests, signatures } = report.checked;
    const repaired = report.repair ? `, ${report.removed.length} removed${report.changed.length ? `, ${report.changed.length} changed while checking (scrub again)` : ''}` : '';
    process.stdout.write(
      `scrub: checked ${blobs} blobs (${bytes} bytes), ${builds} build records, ${manifests} manifest records${signatures ? `, ${signatures} signatures` : ''}: ${report.bad.length} bad${repaired}${report.notes.length ? `, ${report.notes.length} ${report.notes.length === 1 ? 'note' : 'notes'}` : ''}\n`,
    );
  }
  if (report.bad.length > 0) process.exitCode = 1;
});

withSettings(
  program
    .command('verify')
    .description("rebuild an image here from its provenance (read from the registry) and compare: exit 0 on a match, 1 on a mismatch, 2 when it cannot tell")
    .argument('<ref>', 'the image on a registry, e.g. localhost:8080/shell/hello@sha256:… or localhost:8080/shell/hello:latest')
    .option('--plain-http', 'talk to the registry over plain HTTP (default HTTPS)')
    .option('--json', 'print the comparison as JSON on stdout'),
  BUILD_SETTINGS,
).action(async (ref: string, opts: Record<string, unknown>) => {
  const { parseRemoteRef, fetchProvenance, compareImages } = await import('./builder/verify.js');
  const { popularityDigest } = await import('./layers/popularity.js');
  const { parseImageName } = await import('./image/name.js');
  let comparison;
  try {
    const remote = parseRemoteRef(ref);
    const provenance = await fetchProvenance(`${opts.plainHttp ? 'http' : 'https'}://${remote.registry}`, remote);
    const { externalParameters: ext, internalParameters: int } = provenance.parameters;
    const config = { ...configFrom(opts, BUILD_SETTINGS), layering: int.layering as Config['layering'], layerBudget: int.budget };
    const app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'warn' });
    const notes: string[] = [];
    if (popularityDigest(app.popularity.current) !== int.popularity) notes.push(`popularity data: the image used ${int.popularity}, here ${popularityDigest(app.popularity.current)} (set NIX_POPULARITY_URL to the same data)`);
    if (int.compression !== 'gzip') notes.push(`compression: the image used ${int.compression}, this nixery-ts packs gzip`);
    const [image] = forPlatforms(parseImageName(ext.image, ext.tag), [platformArch(ext.platform)]);
    const built = await app.builder.build(image!, progressPrinter());
    if (built.revision !== int.revision) notes.unshift(`source revision: the image was built from ${int.revision}, ${ext.tag} is ${built.revision} here`);
    comparison = compareImages(provenance, built, notes);
  } catch (err) {
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    process.stderr.write(`nixery verify: ${redact(oneLine(err))}\n`);
    process.exitCode = 2;
    return;
  }
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  if (opts.json) process.stdout.write(`${JSON.stringify(comparison, null, 2)}\n`);
  else if (comparison.match) process.stdout.write(`match: ${ref} is ${comparison.registry}, and so is the image built here\n`);
  else process.stdout.write(`mismatch: ${ref} is ${comparison.registry}, the image built here is ${comparison.local}\n${comparison.differences.map((d) => `  ${d}\n`).join('')}`);
  process.exitCode = comparison.match ? 0 : 1;
});

program
  .command('sign')
  .description('signing (NIXERY_SIGNING_KEY, read from the environment only): print what clients verify with')
  .option('--public-key', "print the signing key's public key (PEM) for clients' policy.json or cosign verify --key")
  .action((opts: { publicKey?: boolean }) => {
    if (!opts.publicKey) throw new ConfigError('nixery sign: say what to print (--public-key)');
    const { signingKey } = loadConfig(process.env);
    if (!signingKey) throw new ConfigError('nixery sign --public-key needs NIXERY_SIGNING_KEY (a PEM private key, inline or a file path)');
    process.stdout.write(signingKey.publicKeyPem);
  });

function oneLine(err: unknown): string {
  if (err instanceof ConfigError || err instanceof NixeryError) return err.message.replace(/\s*\n\s*/g, ' | ');
  if (err instanceof Error) return err.message.replace(/\s*\n\s*/g, ' | ');
  return String(err);
}

program.parseAsync(process.argv).catch((err: unknown) => {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  process.stderr.write(`nixery: ${redact(oneLine(err))}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
