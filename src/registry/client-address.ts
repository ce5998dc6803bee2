// Who a client is, for per-client limits: the peer address, or — when the peer is a trusted proxy
// (NIXERY_TRUSTED_PROXIES: addresses or CIDR ranges) — the nearest address in X-Forwarded-For
// that is not itself a trusted proxy. An untrusted peer cannot choose its address by a header.

import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { ConfigError } from '../errors.js';

export class TrustedProxies {
  private readonly list = new BlockList();
  readonly count: number;

  constructor(spec: string | undefined) {
    const entries = (spec ?? '').split(/[\s,]+/).filter(Boolean);
    for (const entry of entries) {
      const [address, bits, ...rest] = entry.split('/');
      const family = isIP(address ?? '');
      const prefix = bits === undefined ? undefined : Number(bits);
      const max = family === 6 ? 128 : 32;
      if (!family || rest.length > 0 || (prefix !== undefined && !(Number.isInteger(prefix) && prefix >= 0 && prefix <= max))) {
        throw new ConfigError(`invalid NIXERY_TRUSTED_PROXIES: ${JSON.stringify(entry)} is not an IP address or CIDR range`);
      }
      const type = family === 6 ? 'ipv6' : 'ipv4';
      if (prefix === undefined) this.list.addAddress(address!, type);
      else this.list.addSubnet(address!, prefix, type);
    }
    this.count = entries.length;
  }

  has(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }

  /** The client's address for this request. */
  clientOf(req: IncomingMessage): string {
    let address = plain(req.socket.remoteAddress ?? '');
    if (this.count === 0 || !this.has(address)) return address;
    const forwarded = req.headers['x-forwarded-for'];
    const hops = (Array.isArray(forwarded) ? forwarded.join(',') : (forwarded ?? '')).split(',').map((h) => plain(h.trim())).filter(Boolean);
    for (let i = hops.length - 1; i >= 0; i--) {
      address = hops[i]!;
      if (!isIP(address) || !this.has(address)) break;
    }
    return address;
  }
}

/** `::ffff:10.0.0.1` → `10.0.0.1`, so IPv4 ranges match peers on dual-stack sockets. */
function plain(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
