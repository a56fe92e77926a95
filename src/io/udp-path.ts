/**
 * UDP paths: the runtime's concrete `Path` (see core/endpoint.ts). A path has two ends:
 *   remote — the peer's address and port;
 *   local  — our source address and the interface packets leave through (IP_PKTINFO /
 *            IPV6_PKTINFO), or unspecified (all zero: the routing table chooses).
 * Addresses travel between the addon and JS as 16 bytes (IPv4 as the IPv4-mapped
 * ::ffff:a.b.c.d), so one socket serves both families. Paths are interned so the receive path
 * builds no new object (or string) per datagram.
 */
import type { Path } from '../core/endpoint.js';
import { formatAddress } from '../core/ip.js';
import { parseIp } from '../config/wgquick.js';

const NO_LOCAL = new Uint8Array(16);

export class UdpPath implements Path {
  readonly id: string;
  readonly hostId: string;
  readonly cookieBytes: Uint8Array;
  /** 16-byte remote address for the addon (IPv4-mapped for IPv4). */
  readonly addr16: Uint8Array;
  readonly family: 4 | 6;
  /** The remote address as text, and "address:port" (IPv6 in brackets). */
  readonly address: string;
  readonly remoteId: string;
  /** Our end: 16-byte source address (all zero: unspecified) and interface index (0: any). */
  readonly local16: Uint8Array;
  readonly ifindex: number;
  /** Our end as text ("" when unspecified). */
  readonly local: string;

  constructor(addr16: Uint8Array, readonly port: number, local16: Uint8Array = NO_LOCAL, ifindex = 0) {
    this.addr16 = addr16.slice(0, 16);
    const mapped = isMapped(this.addr16);
    this.family = mapped ? 4 : 6;
    const raw = mapped ? this.addr16.subarray(12, 16) : this.addr16;
    this.address = formatAddress(raw);
    this.hostId = this.address;
    this.remoteId = this.family === 4 ? `${this.address}:${port}` : `[${this.address}]:${port}`;
    this.local16 = local16.slice(0, 16);
    this.ifindex = ifindex;
    const hasLocal = ifindex !== 0 || this.local16.some((b) => b !== 0);
    this.local = hasLocal ? `${formatAddress(isMapped(this.local16) ? this.local16.subarray(12, 16) : this.local16)}%${ifindex}` : '';
    this.id = hasLocal ? `${this.remoteId} from ${this.local}` : this.remoteId;
    // Am of the cookie MAC: the raw source address bytes then the port, big-endian.
    this.cookieBytes = new Uint8Array(raw.length + 2);
    this.cookieBytes.set(raw, 0);
    this.cookieBytes[raw.length] = port >> 8;
    this.cookieBytes[raw.length + 1] = port & 0xff;
  }

  get hasLocal(): boolean {
    return this.local !== '';
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

function same16(a: Uint8Array, off: number, b: Uint8Array): boolean {
  for (let i = 15; i >= 0; i--) if (a[off + i] !== b[i]) return false;
  return true;
}

function v4Key(a: Uint8Array, off: number): number {
  return ((a[off + 12] << 24) | (a[off + 13] << 16) | (a[off + 14] << 8) | a[off + 15]) >>> 0;
}

/** Interns paths by (remote address, port, local address, interface) so equal paths are one object. */
export class PathTable {
  // IPv4 remote and IPv4 (or no) local end: numeric keys, no string built per datagram.
  private readonly v4 = new Map<number, Map<number, UdpPath>>();
  private readonly other = new Map<string, UdpPath>();
  private count = 0;

  /**
   * The path for the remote address at addrs[off..off+16) and port, received on (or to be sent
   * from) the local end at locals[loff..loff+16) through interface ifindex (omit for unspecified).
   */
  get(addrs: Uint8Array, off: number, port: number, locals: Uint8Array = NO_LOCAL, loff = 0, ifindex = 0): UdpPath {
    // Datagrams come in runs from one path: the last answer, checked byte by byte, saves the
    // lookup (and the boxed 48-bit keys it builds).
    const last = this.last;
    if (last !== null && port === last.port && ifindex === last.ifindex && same16(addrs, off, last.addr16) && same16(locals, loff, last.local16)) return last;
    const p = this.lookup(addrs, off, port, locals, loff, ifindex);
    this.last = p;
    return p;
  }
  private last: UdpPath | null = null;

  private lookup(addrs: Uint8Array, off: number, port: number, locals: Uint8Array, loff: number, ifindex: number): UdpPath {
    if (this.count > 65536) this.clear();
    const localIsV4 = isMapped(locals, loff) || (ifindex === 0 && locals === NO_LOCAL);
    if (isMapped(addrs, off) && localIsV4 && ifindex < 2 ** 20) {
      // remote: address × 2^16 + port (48 bits); local: ifindex × 2^32 + address (52 bits)
      const rk = v4Key(addrs, off) * 65536 + port;
      const lk = locals === NO_LOCAL ? 0 : ifindex * 2 ** 32 + v4Key(locals, loff);
      let inner = this.v4.get(rk);
      if (!inner) this.v4.set(rk, (inner = new Map()));
      let p = inner.get(lk);
      if (!p) {
        p = new UdpPath(addrs.subarray(off, off + 16), port, locals.subarray(loff, loff + 16), ifindex);
        inner.set(lk, p);
        this.count++;
      }
      return p;
    }
    let key = '';
    for (let i = 0; i < 16; i++) key += String.fromCharCode(addrs[off + i]);
    key += `:${port}|`;
    for (let i = 0; i < 16; i++) key += String.fromCharCode(locals[loff + i]);
    key += `%${ifindex}`;
    let p = this.other.get(key);
    if (!p) {
      p = new UdpPath(addrs.subarray(off, off + 16), port, locals.subarray(loff, loff + 16), ifindex);
      this.other.set(key, p);
      this.count++;
    }
    return p;
  }

  /** The path for a literal remote address and port, with no local end (from configuration or UAPI). */
  fromLiteral(address: string, port: number): UdpPath {
    const a = addressTo16(address);
    if (!a) throw new Error(`not an IP address: ${address}`);
    return this.get(a, 0, port);
  }

  private clear(): void {
    this.last = null;
    this.v4.clear();
    this.other.clear();
    this.count = 0;
  }
}
