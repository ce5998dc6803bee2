// Graceful shutdown: on SIGTERM or SIGINT the server stops accepting connections at once,
// finishes the requests in flight up to a deadline (NIXERY_SHUTDOWN_TIMEOUT), answers them with
// `Connection: close`, closes idle keep-alive connections, then closes whatever remains, stops
// the Nix processes, flushes the logs and exits 0. A second signal exits at once.
//
// Clients whose request was cut at the deadline see a closed connection (or a 503 from a build
// that was stopped) and retry; behind a load balancer or on restart the retry goes to a live
// replica.

import type { Logger } from '../util/logger.js';
import type http from 'node:http';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';

export interface DrainResult {
  /** Connections still open at the deadline, closed by force. */
  forced: number;
  ms: number;
}

export interface ConnectionDrainer {
  readonly draining: boolean;
  /** Starts draining (once; later calls return the same result). */
  drain(timeoutMs: number): Promise<DrainResult>;
}

/**
 * Tracks the server's connections; install before the server accepts any. Nothing is done per
 * request (this is on the hot path): at the drain, responses not yet sent get `Connection:
 * close`, and connections are closed as soon as they fall idle.
 */
export function trackConnections(server: http.Server): ConnectionDrainer {
  let draining = false;
  let drained: Promise<DrainResult> | undefined;
  const sockets = new Set<Socket>();

  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  server.on('connection', track);
  // Over HTTPS the response lives on the TLS socket (wrapping the TCP one).
  server.on('secureConnection', track);

  return {
    get draining() {
      return draining;
    },
    drain(timeoutMs: number): Promise<DrainResult> {
      drained ??= (async () => {
        const started = Date.now();
        draining = true;
        const allClosed = new Promise<boolean>((resolve) => server.close(() => resolve(false)));
        for (const socket of sockets) {
          // The response in progress on a connection (Node keeps it there) learns to close it.
          const res = (socket as { _httpMessage?: http.ServerResponse })._httpMessage;
          if (res && !res.headersSent) res.setHeader('Connection', 'close');
        }
        // Responses that went out as keep-alive leave their connection idle when they end.
        server.closeIdleConnections();
        const sweep = setInterval(() => server.closeIdleConnections(), 25);
        let timer: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([allClosed, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), Math.max(0, timeoutMs))))]);
        clearInterval(sweep);
        clearTimeout(timer);
        let forced = 0;
        if (timedOut) {
          forced = sockets.size;
          for (const socket of sockets) socket.destroy();
        }
        return { forced, ms: Date.now() - started };
      })();
      return drained;
    },
  };
}

/** Most of the deadline goes to requests; this much (or a fifth) is left to stop Nix. */
const NIX_STOP_MS = 1000;

export type ShutdownLogger = Pick<Logger, 'info' | 'warn' | 'flush'>;

/**
 * On SIGTERM/SIGINT: drain `registry` for at most `timeoutMs` in all, stop the Nix processes,
 * flush the log, exit 0. A second signal kills the Nix processes and exits at once (128 + signal
 * number, as a shell reports a process killed by it). `stopProcesses` stops the Nix processes,
 * giving them `graceMs` between SIGTERM and SIGKILL (the composition root knows how).
 */
export function exitGracefullyOnSignals(options: {
  registry: { drain(timeoutMs: number): Promise<DrainResult> };
  log: ShutdownLogger;
  timeoutMs: number;
  stopProcesses(graceMs: number): Promise<unknown>;
}): void {
  const { registry, log, timeoutMs, stopProcesses } = options;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting at once');
      void stopProcesses(0);
      exitAfterFlush(log, 128 + (osConstants.signals[signal] ?? 0));
      return;
    }
    stopping = true;
    const started = Date.now();
    const nixStopMs = Math.min(NIX_STOP_MS, Math.floor(timeoutMs / 5));
    log.info({ signal, timeoutSeconds: timeoutMs / 1000 }, 'shutting down: no new connections, finishing requests in flight');
    void (async () => {
      const { forced } = await registry.drain(timeoutMs - nixStopMs);
      await Promise.race([stopProcesses(nixStopMs / 2), new Promise((r) => setTimeout(r, nixStopMs))]);
      log.info({ ms: Date.now() - started, forcedConnections: forced }, 'stopped');
      exitAfterFlush(log, 0);
    })();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function exitAfterFlush(log: ShutdownLogger, code: number): void {
  // The flush must not hold the exit back for long.
  setTimeout(() => process.exit(code), 1000);
  log.flush(() => process.exit(code));
}
