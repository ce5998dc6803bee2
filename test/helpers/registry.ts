// Starts a real registry (real storage, loopback socket) for tests, on the example package set,
// with its own temporary storage: with real Nix (`startRegistry`), or with the stand-in Nix stage
// (`startStandInRegistry`: the production builder and HTTP stack, store files made without Nix).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { loadConfig, type Config } from '../../src/config.js';
import { createApp, type App } from '../../src/app.js';
import type { Registry } from '../../src/registry/server.js';
import { EXAMPLE_PKGS } from './nix.js';
import type { NixStage } from '../../src/builder/nix-stage.js';
import { StandInNix, type StandInOptions } from './stand-in-nix.js';
import { parsePrometheusText, sampleSum } from './prometheus.js';

export interface TestRegistry {
  app: App;
  registry: Registry;
  url: string;
  /** host:port, for registry clients. */
  host: string;
  storagePath: string;
  close(): Promise<void>;
}

process.env.NIX_CONFIG ??= 'substituters =';

export async function startRegistry(
  env: Record<string, string> = {},
  options: { storagePath?: string; nix?: NixStage } = {},
): Promise<TestRegistry> {
  const storagePath = options.storagePath ?? (await mkdtemp(path.join(tmpdir(), 'nixery-test-storage-')));
  const config: Config = loadConfig({
    NIXERY_PKGS_PATH: EXAMPLE_PKGS,
    STORAGE_PATH: storagePath,
    PORT: '0',
    NIXERY_HOST: '127.0.0.1',
    NIXERY_LOG_LEVEL: 'silent',
    NIX_TIMEOUT: '120',
    ...env,
  });
  const app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent', nix: options.nix });
  const registry = await app.serve('test');
  const { port } = registry.server.address() as AddressInfo;
  const host = `127.0.0.1:${port}`;
  return {
    app,
    registry,
    url: `http://${host}`,
    host,
    storagePath,
    async close() {
      registry.server.closeAllConnections();
      await new Promise<void>((resolve) => registry.server.close(() => resolve()));
      // Pins being looked up or written, and package indexes, go to storage: let them finish first.
      await app.pins.stop();
      await app.packages.stop();
      if (!options.storagePath) await rm(storagePath, { recursive: true, force: true });
    },
  };
}

export interface StandInRegistry extends TestRegistry {
  /** The stand-in Nix stage it builds with (its calls are counted in `nix.stats`). */
  nix: StandInNix;
}

/**
 * A registry whose builder runs the stand-in Nix stage (test/helpers/stand-in-nix.ts): no Nix is
 * started. Pass `nix` to share one stand-in (its store and counters) between registries.
 */
export async function startStandInRegistry(
  env: Record<string, string> = {},
  options: { storagePath?: string; nix?: StandInNix } & StandInOptions = {},
): Promise<StandInRegistry> {
  const own = !options.nix;
  const nix = options.nix ?? new StandInNix(options);
  const r = await startRegistry(env, { storagePath: options.storagePath, nix });
  return {
    ...r,
    nix,
    async close() {
      await r.close();
      if (own) await nix.remove();
    },
  };
}

/**
 * A counter or gauge from a registry's /metrics (base URL such as http://127.0.0.1:8080): the
 * sum of its series when it has labels. The exposition is parsed strictly.
 */
export async function metric(baseUrl: string, name: string): Promise<number> {
  const families = parsePrometheusText(await (await fetch(`${baseUrl}/metrics`)).text());
  if (!families.has(name)) throw new Error(`metric ${name} is not exposed`);
  return sampleSum(families, name);
}

/**
 * Runs `fn` with a registry started for it (as `startRegistry` starts it) and closes the registry
 * however `fn` ends: the set-up and tear-down of one test in one call.
 */
export function withRegistry<T>(fn: (r: TestRegistry) => Promise<T>): Promise<T>;
export function withRegistry<T>(env: Record<string, string>, fn: (r: TestRegistry) => Promise<T>): Promise<T>;
export function withRegistry<T>(env: Record<string, string>, options: { storagePath?: string; nix?: NixStage }, fn: (r: TestRegistry) => Promise<T>): Promise<T>;
export async function withRegistry<T>(...args: unknown[]): Promise<T> {
  const fn = args.pop() as (r: TestRegistry) => Promise<T>;
  const [env = {}, options = {}] = args as [Record<string, string>?, { storagePath?: string; nix?: NixStage }?];
  const r = await startRegistry(env, options);
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

/** Runs `fn` with a new, empty storage directory, removed however `fn` ends. */
export async function withStorageDir<T>(fn: (storagePath: string) => Promise<T>): Promise<T> {
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-test-storage-'));
  try {
    return await fn(storagePath);
  } finally {
    await rm(storagePath, { recursive: true, force: true });
  }
}
