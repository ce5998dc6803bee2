// Starts a real registry (real Nix, real storage) on loopback for tests, on the example
// package set, with its own temporary storage.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { loadConfig, type Config } from '../../src/config.js';
import { createApp, type App } from '../../src/app.js';
import type { Registry } from '../../src/registry/server.js';
import { EXAMPLE_PKGS } from './nix.js';
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
  options: { storagePath?: string } = {},
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
  const app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent' });
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

/**
 * A counter or gauge from a registry's /metrics (base URL such as http://127.0.0.1:8080): the
 * sum of its series when it has labels. The exposition is parsed strictly.
 */
export async function metric(baseUrl: string, name: string): Promise<number> {
  const families = parsePrometheusText(await (await fetch(`${baseUrl}/metrics`)).text());
  if (!families.has(name)) throw new Error(`metric ${name} is not exposed`);
  return sampleSum(families, name);
}
