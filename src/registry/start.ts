// Starting the HTTP registry from the settings: who may do what (the gate), HTTPS and its
// certificate reloads, the connection caps, and the server listening. The composition root
// (app.ts) calls this one function and hands in the services beneath.

import type https from 'node:https';
import type { Config } from '../config.js';
import { ConfigError } from '../errors.js';
import { createGate, type Gate } from './access.js';
import { connectionLimits } from './connections.js';
import { createRegistry, type Registry, type RegistryOptions } from './server.js';
import { loadTls, reloadTlsOnChange } from './tls.js';

/** What the registry serves from; the rest comes from the settings. */
export type RegistryParts = Pick<RegistryOptions, 'storage' | 'service' | 'quarantine' | 'log' | 'packages' | 'sourceDescription' | 'version' | 'metrics' | 'blobObserver' | 'signing'>;

/**
 * Makes the registry and listens on NIXERY_PORT/NIXERY_HOST. `admitted` is told of the gate
 * before the first request (the metrics read its counts).
 */
export async function startRegistry(config: Config, parts: RegistryParts, admitted: (gate: Gate) => void = () => {}): Promise<Registry> {
  const gate = await createGate(config);
  admitted(gate);
  if (Boolean(config.tlsCert) !== Boolean(config.tlsKey)) throw new ConfigError('HTTPS needs both NIXERY_TLS_CERT and NIXERY_TLS_KEY');
  const tlsFiles = config.tlsCert && config.tlsKey ? { cert: config.tlsCert, key: config.tlsKey } : undefined;
  const registry = createRegistry({
    ...parts,
    gate,
    tls: tlsFiles ? await loadTls(tlsFiles) : undefined,
    blobRedirect: config.blobRedirect,
    blobCacheBytes: config.blobCacheMb * 1024 * 1024,
    redirectTtlSeconds: config.redirectTtl,
    sendBufferBytes: config.sendBufferMb * 1024 * 1024,
    sendTimeoutSeconds: config.sendTimeout,
    blobVerify: config.blobVerify,
    connections: connectionLimits(config),
    trustedProxies: config.trustedProxies,
    publicHost: config.publicHost,
  });
  await new Promise<void>((resolve, reject) => {
    registry.server.once('error', reject);
    registry.server.listen(config.port, config.host, () => resolve());
  });
  if (tlsFiles) {
    const stop = reloadTlsOnChange(registry.server as https.Server, tlsFiles, parts.log);
    registry.server.once('close', stop);
  }
  return registry;
}
