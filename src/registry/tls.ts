// HTTPS from PEM files (NIXERY_TLS_CERT, NIXERY_TLS_KEY). Certificates are renewed in place
// (cert-manager, certbot): on SIGHUP, or when either file changes, the new pair is checked and
// swapped in for new connections; connections already open keep theirs. A pair that does not
// load is logged and the old one stays.

import type { Logger } from '../util/logger.js';
import { watchFile, unwatchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type https from 'node:https';
import { ConfigError } from '../errors.js';

export interface TlsFiles {
  cert: string;
  key: string;
}

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

/** Reads and checks the pair; ConfigError naming the file that is wrong. */
export async function loadTls(files: TlsFiles): Promise<TlsPair> {
  const read = async (setting: string, file: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new ConfigError(`invalid ${setting}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  const pair = { cert: await read('NIXERY_TLS_CERT', files.cert), key: await read('NIXERY_TLS_KEY', files.key) };
  try {
    createSecureContext(pair);
  } catch (err) {
    throw new ConfigError(`invalid NIXERY_TLS_CERT / NIXERY_TLS_KEY: ${(err as Error).message} (the key must be the certificate's, both PEM)`);
  }
  return pair;
}

export type TlsLogger = Pick<Logger, 'info' | 'warn'>;

/** Reloads the pair on SIGHUP and when a file changes; returns a function that stops watching. */
export function reloadTlsOnChange(server: https.Server, files: TlsFiles, log: TlsLogger, pollMs = 5000): () => void {
  let reloading: Promise<void> | undefined;
  const reload = (why: string) => {
    reloading ??= loadTls(files)
      .then((pair) => {
        server.setSecureContext(pair);
        log.info({ why }, 'TLS certificate reloaded');
      })
      .catch((err: unknown) => log.warn({ why, err: (err as Error).message }, 'TLS certificate not reloaded; keeping the current one'))
      .finally(() => (reloading = undefined));
  };
  const onHup = () => reload('SIGHUP');
  process.on('SIGHUP', onHup);
  // Polling, not inotify: secrets mounted by Kubernetes change by a symlink swap.
  const onChange = (cur: { mtimeMs: number }, prev: { mtimeMs: number }) => {
    if (cur.mtimeMs !== prev.mtimeMs) reload('the certificate files changed');
  };
  for (const file of [files.cert, files.key]) watchFile(file, { interval: pollMs, persistent: false }, onChange);
  return () => {
    process.off('SIGHUP', onHup);
    for (const file of [files.cert, files.key]) unwatchFile(file, onChange);
  };
}
