/**
 * UDP paths: the runtime's concrete `Path` (see core/endpoint.ts) — a remote IPv4 or IPv6
 * address and port. Addresses travel between the addon and JS as 16 bytes (IPv4 as the
 * IPv4-mapped ::ffff:a.b.c.d), so one socket serves both families. Paths are interned so the
 * receive path does not build a new object (or string) per datagram.
 */
import type { Path } from '../core/endpoint.js';
import { formatAddress } from '../core/ip.js';
import { parseIp } from '../config/wgquick.js';

export class UdpPath implements Path {
  readonly id: string;
  readonly hostId: string;
  readonly cookieBytes: Uint8Array;
  /** 16-byte form for the addon (IPv4-mapped for IPv4). */
  readonly addr16: Uint8Array;
  readonly family: 4 | 6;
  readonly address: string;

  constructor(
    addr16: Uint8Array,
    readonly port: number,
  ) {
    this.addr16 = addr16.slice(0, 16);
    const mapped = isMapped(this.addr16);
    this.family = mapped ? 4 : 6;
    const raw = mapped ? this.addr16.subarray(12, 16) : this.addr16;
    this.address = formatAddress(raw);
    this.hostId = this.address;
    this.id = this.family === 4 ? `${this.address}:${port}` : `[${this.address}]:${port}`;
    // Am of the cookie MAC: the raw source address bytes then the port, big-endian.
    this.cookieBytes = new Uint8Array(raw.length + 2);
    this.cookieBytes.set(raw, 0);
    this.cookieBytes[raw.length] = port >> 8;
    this.cookieBytes[raw.length + 1] = port & 0xff;
  }

  toString(): string {
    return this.id;
  }
}

export function isMapped(a: Uint8Array, off = 0): boolean {
  for (let i = 0; i < 10; i++) if (a[off + i] !== 0) return false;
  return a[off + 10] === 0xff && a[off + 11] === 0xff;
}

/** Parse a literal IPv4/IPv6 address (no brackets) to the 16-byte form; null if not an IP literal. */
export function addressTo16(address: string): Uint8Array | null {
  const ip = parseIp(address);
  if (!ip) return null;
  if (ip.family === 6) return ip.bytes;
  const out = new Uint8Array(16);
  out[10] = out[11] = 0xff;
  out.set(ip.bytes, 12);
  return out;
}

/** Interns paths by (address, port) so equal sources give the same object. */
export class PathTable {
  private readonly v4 = new Map<number, UdpPath>();
  private readonly v6 = new Map<string, UdpPath>();

  /** The path for the 16-byte address at addrs[off..off+16) and port. */
  get(addrs: Uint8Array, off: number, port: number): UdpPath {
    if (isMapped(addrs, off)) {
      // key = IPv4 address × 2^16 + port: exact in a double (48 bits), no string built.
      const k = (((addrs[off + 12] << 24) | (addrs[off + 13] << 16) | (addrs[off + 14] << 8) | addrs[off + 15]) >>> 0) * 65536 + port;
      let p = this.v4.get(k);
      if (!p) {
        p = new UdpPath(addrs.subarray(off, off + 16), port);
        if (this.v4.size > 65536) this.v4.clear();
        this.v4.set(k, p);
      }
      return p;
    }
    let key = '';
    for (let i = 0; i < 16; i++) key += String.fromCharCode(addrs[off + i]);
    key += port;
    let p = this.v6.get(key);
    if (!p) {
      p = new UdpPath(addrs.subarray(off, off + 16), port);
      if (this.v6.size > 65536) this.v6.clear();
      this.v6.set(key, p);
    }
    return p;
  }

  /** The path for a literal address and port (from configuration or UAPI). */
  fromLiteral(address: string, port: number): UdpPath {
    const a = addressTo16(address);
    if (!a) throw new Error(`not an IP address: ${address}`);
    return this.get(a, 0, port);
  }
}
