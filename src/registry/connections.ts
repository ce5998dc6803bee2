// Connections and descriptors: every open connection holds a file descriptor, so a flood of
// idle or half-open ones must not take the ones storage and Nix need. The server keeps at most
// NIXERY_MAX_CONNECTIONS (by default a share of the descriptor limit), and one client at most
// NIXERY_MAX_CLIENT_CONNECTIONS. At a cap the oldest connection with no request in flight is
// closed to make room (an idle keep-alive or a client that never sent a request), first among
// the connections of the client that holds the most; only when every connection is busy is the
// newcomer refused, with a 503 (429 for one client's cap).
// Refused and timed-out connections are closed for good, never left half-closed.
//
// Behind a trusted proxy (NIXERY_TRUSTED_PROXIES) one connection carries many clients: the
// per-client cap then counts the requests in flight of the client X-Forwarded-For names.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ERROR_CATALOGUE, type ErrorKind } from '../errors.js';
import { TrustedProxies } from './client-address.js';

export interface ConnectionLimits {
  /** Connections open at once (NIXERY_MAX_CONNECTIONS). */
  maxConnections: number;
  /** Connections one client address may hold, or requests in flight behind a proxy (NIXERY_MAX_CLIENT_CONNECTIONS). */
  maxClientConnections: number;
}

/** The soft limit on open files of this process (RLIMIT_NOFILE), or null when unknown. */
export function descriptorLimit(limitsText?: string): number | null {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return null;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (!m) return null;
  return m[1] === 'unlimited' ? null : Number(m[1]);
}

/**
 * Defaults from the descriptor limit: a quarter (at least 64) is left to storage files, Nix's
 * pipes and the runtime, and a connection may need two (its socket and the blob it streams).
 */
export function defaultLimits(fdLimit: number | null = descriptorLimit()): ConnectionLimits {
  const limit = fdLimit ?? 65_536;
  const maxConnections = Math.max(16, Math.min(100_000, Math.floor((limit - Math.max(64, Math.floor(limit / 4))) / 2)));
  return { maxConnections, maxClientConnections: defaultClientConnections(maxConnections) };
}

/** The caps from the settings, each derived where it is not set. */
export function connectionLimits(settings: { maxConnections?: number; maxClientConnections?: number; maxEventStreams?: number }): ConnectionLimits & { maxEventStreams: number } {
  const maxConnections = settings.maxConnections ?? defaultLimits().maxConnections;
  return {
    maxConnections,
    maxClientConnections: settings.maxClientConnections ?? defaultClientConnections(maxConnections),
    maxEventStreams: settings.maxEventStreams ?? defaultEventStreams(maxConnections),
  };
}

/** A client gets an eighth of the connections, at least 16 (browsers open 6, pulls a few per layer). */
export function defaultClientConnections(maxConnections: number): number {
  return Math.max(16, Math.floor(maxConnections / 8));
}

/** Build event streams (SSE) open at once: each holds a connection as long as its build runs. */
export function defaultEventStreams(maxConnections: number): number {
  return Math.max(4, Math.floor(maxConnections / 4));
}

export interface ConnectionEvents {
  /** A connection or request was refused (kind) or an idle one closed to make room (evicted). */
  refused(what: { kind: ErrorKind | 'evicted'; client: string }): void;
  /** Plain HTTP arrived on the TLS port (answered with a 400 saying to use https). */
  plainHttpOnTls(client: string): void;
  /** Accepting failed (EMFILE, ENFILE): the kernel's queue keeps the connection for later. */
  acceptFailed(err: NodeJS.ErrnoException): void;
}

interface Connection {
  socket: Socket;
  client: string;
  /** Over HTTPS, the TLS socket the requests are on. */
  tls?: TLSSocket;
  /** Behind a proxy: not counted per client (its requests are). */
  proxy: boolean;
  /** When it was accepted (ms, monotonic). */
  since: number;
}

const PLAIN_HTTP_BODY = 'This port speaks HTTPS: use https:// (a plain HTTP request was sent to an HTTPS port).\n';
const PLAIN_HTTP_ON_TLS =
  `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(PLAIN_HTTP_BODY)}\r\nConnection: close\r\n\r\n${PLAIN_HTTP_BODY}`;

/** A connection this new is closed to make room only when no older one can be: its first request may be on its way. */
const GRACE_MS = 1000;

/** How long a refused or timed-out connection may take to receive its answer before it is closed. */
const CLOSE_AFTER_MS = 1000;

export class ConnectionGuard {
  /** Oldest first (a Map keeps insertion order). */
  private readonly open = new Map<Socket, Connection>();
  private readonly byClient = new Map<string, Set<Connection>>();
  private readonly requestsByClient = new Map<string, number>();
  private readonly proxies: TrustedProxies;

  constructor(
    server: http.Server,
    readonly limits: ConnectionLimits,
    options: {
      trustedProxies?: string;
      /** Over HTTPS: a connection whose first byte is no TLS handshake gets a plain 400 saying so. */
      tls: boolean;
      /** How long a new TLS connection may send nothing. */
      firstByteTimeoutMs: number;
    },
    private readonly events: ConnectionEvents,
  ) {
    this.proxies = new TrustedProxies(options.trustedProxies);
    this.tls = options.tls;
    this.firstByteTimeoutMs = options.firstByteTimeoutMs;
    // The HTTP (or TLS) server sets a connection up only once it is admitted (and, over TLS,
    // once it has sent a handshake): a refused one costs nothing more.
    const inner = server.listeners('connection') as Array<(socket: Socket) => void>;
    server.removeAllListeners('connection');
    const handOver = (socket: Socket) => {
      for (const listener of inner) listener.call(server, socket);
    };
    server.on('connection', (socket: Socket) => {
      if (!this.accept(socket)) return;
      if (this.tls) this.awaitHandshake(socket, handOver);
      else handOver(socket);
    });
    server.on('secureConnection', (tls: TLSSocket) => {
      const conn = this.open.get((tls as unknown as { _parent?: Socket })._parent as Socket);
      if (conn) conn.tls = tls;
    });
    // An accept that fails (out of descriptors) is an 'error' on the server, which unhandled
    // would end the process; the connection stays in the kernel's queue until one is free.
    server.on('error', (err: NodeJS.ErrnoException) => {
      if (err.syscall === 'accept' || err.code === 'EMFILE' || err.code === 'ENFILE') this.events.acceptFailed(err);
      // Anything else (a port in use) is for whoever listens, as if this listener were not here.
      else if (server.listenerCount('error') === 1) throw err;
    });
  }

  private readonly tls: boolean;
  private readonly firstByteTimeoutMs: number;

  get size(): number {
    return this.open.size;
  }

  /** Admits a new connection (making room if needed) or answers and closes it. */
  private accept(socket: Socket): boolean {
    const client = plain(socket.remoteAddress ?? '');
    const proxy = this.proxies.count > 0 && this.proxies.has(client);
    if (this.open.size >= this.limits.maxConnections && !this.makeRoom(() => this.largestClient(), () => this.open.values())) {
      this.refuse(socket, 'TOO_MANY_CONNECTIONS', client, `the registry has too many connections open (NIXERY_MAX_CONNECTIONS=${this.limits.maxConnections}); retry shortly`);
      return false;
    }
    const own = this.byClient.get(client);
    if (!proxy && own && own.size >= this.limits.maxClientConnections && !this.makeRoom(() => own.values())) {
      this.refuse(socket, 'CLIENT_CONNECTIONS', client, `this client has too many connections open (NIXERY_MAX_CLIENT_CONNECTIONS=${this.limits.maxClientConnections})`);
      return false;
    }
    const conn: Connection = { socket, client, proxy, since: performance.now() };
    this.open.set(socket, conn);
    if (!proxy) {
      // Looked up again: making room may have emptied (and dropped) this client's set.
      let mine = this.byClient.get(client);
      if (!mine) this.byClient.set(client, (mine = new Set()));
      mine.add(conn);
    }
    socket.once('close', () => this.forget(conn));
    return true;
  }

  private forget(conn: Connection): void {
    this.open.delete(conn.socket);
    const set = this.byClient.get(conn.client);
    set?.delete(conn);
    if (set?.size === 0) this.byClient.delete(conn.client);
  }

  /**
   * Hands the connection to TLS once its first bytes are a handshake (0x16). Plain HTTP gets a
   * one-line 400 saying to use https, as nginx does, rather than a closed connection (docker
   * would say "EOF").
   */
  private awaitHandshake(socket: Socket, handOver: (socket: Socket) => void): void {
    const timer = setTimeout(() => socket.destroy(), this.firstByteTimeoutMs);
    timer.unref();
    const onClose = () => clearTimeout(timer);
    socket.once('close', onClose);
    socket.on('error', () => socket.destroy());
    socket.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      socket.off('close', onClose);
      if (chunk[0] === 0x16) {
        socket.pause();
        // TLS reads what is buffered on the socket before its own reads.
        socket.unshift(chunk);
        handOver(socket);
        return;
      }
      this.events.plainHttpOnTls(plain(socket.remoteAddress ?? ''));
      answerAndClose(socket, PLAIN_HTTP_ON_TLS);
    });
  }

  /**
   * The connections of the client holding the most (not a proxy's): at the global cap room is
   * made there first, so a flood from many addresses does not close a client's only connection.
   */
  private largestClient(): Iterable<Connection> {
    let largest: Set<Connection> | undefined;
    for (const set of this.byClient.values()) if (!largest || set.size > largest.size) largest = set;
    return largest ?? [];
  }

  /**
   * Closes one connection with no request in flight, from the first group of candidates that
   * has one: connections past their grace first, then (a burst of new ones) any; false when
   * all are busy.
   */
  private makeRoom(...groups: Array<() => Iterable<Connection>>): boolean {
    const graceEnd = performance.now() - GRACE_MS;
    for (const group of groups) if (this.evict(group(), graceEnd)) return true;
    for (const group of groups) if (this.evict(group(), Infinity)) return true;
    return false;
  }

  /** Closes the oldest idle connection of `candidates` accepted before `before`. */
  private evict(candidates: Iterable<Connection>, before: number): boolean {
    for (const conn of candidates) {
      // Oldest first: from here on every connection is newer.
      if (conn.since > before) break;
      if (busy(conn)) continue;
      this.forget(conn);
      conn.socket.destroy();
      this.events.refused({ kind: 'evicted', client: conn.client });
      return true;
    }
    return false;
  }

  private refuse(socket: Socket, kind: ErrorKind, client: string, message: string): void {
    this.events.refused({ kind, client });
    // Over TLS nothing readable can be said before the handshake: the connection is closed.
    if (this.tls) {
      socket.destroy();
      return;
    }
    answerAndClose(socket, rawErrorResponse(kind, message));
  }

  /**
   * Behind a trusted proxy, counts the request against the client X-Forwarded-For names; false
   * (and the request is answered) when that client has too many in flight.
   */
  admitRequest(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (this.proxies.count === 0) return true;
    const conn = this.open.get(req.socket) ?? this.open.get((req.socket as unknown as { _parent?: Socket })._parent as Socket);
    if (!conn?.proxy) return true;
    const client = this.proxies.clientOf(req);
    const n = this.requestsByClient.get(client) ?? 0;
    if (n >= this.limits.maxClientConnections) {
      this.events.refused({ kind: 'CLIENT_CONNECTIONS', client });
      const entry = ERROR_CATALOGUE.CLIENT_CONNECTIONS;
      const body = JSON.stringify({ errors: [{ code: entry.code, message: `this client has too many requests in flight (NIXERY_MAX_CLIENT_CONNECTIONS=${this.limits.maxClientConnections})` }] });
      res.writeHead(entry.status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Retry-After': String(entry.retryAfterSeconds) });
      res.end(body);
      return false;
    }
    this.requestsByClient.set(client, n + 1);
    res.once('close', () => {
      const left = (this.requestsByClient.get(client) ?? 1) - 1;
      if (left <= 0) this.requestsByClient.delete(client);
      else this.requestsByClient.set(client, left);
    });
    return true;
  }
}

/** A request is in flight on the connection: Node keeps its response there until it is sent. */
function busy(conn: Connection): boolean {
  const on = conn.tls ?? conn.socket;
  return (on as { _httpMessage?: unknown })._httpMessage != null;
}

/** A whole HTTP/1.1 error response with an OCI JSON body, for a connection no request object has. */
export function rawErrorResponse(kind: ErrorKind, message?: string): string {
  const entry = ERROR_CATALOGUE[kind];
  const body = JSON.stringify({ errors: [{ code: entry.code, message: message ?? entry.message }] });
  const retry = 'retryAfterSeconds' in entry ? `Retry-After: ${entry.retryAfterSeconds}\r\n` : '';
  return (
    `HTTP/1.1 ${entry.status} ${http.STATUS_CODES[entry.status] ?? 'Error'}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retry}Connection: close\r\n\r\n${body}`
  );
}

/**
 * Sends `response` and closes the connection for good: what the client still sends is read and
 * dropped (closing with unread bytes would reset the connection and lose the answer), and the
 * descriptor is released within CLOSE_AFTER_MS even if the client never closes its side.
 */
export function answerAndClose(socket: Socket, response: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const timer = setTimeout(() => socket.destroy(), CLOSE_AFTER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.on('error', () => socket.destroy());
  socket.on('data', () => {});
  socket.resume();
  socket.end(response);
}

/** `::ffff:10.0.0.1` → `10.0.0.1`: one client whichever way it connected. */
function plain(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
