/**
 * The mesh's zone: what NAME.DOMAIN and the overlay addresses' reverse names stand for on this
 * node. No I/O and no clock (the resolver passes `now`).
 *
 * Sources, first match wins:
 *   our own certificate               NAME.DOMAIN  → its addresses
 *   peers admitted by certificate     NAME.DOMAIN  → their certificates' addresses
 *   static peers with `Name =`        NAME.DOMAIN  → their host AllowedIPs (/32, /128)
 *   our devices (we are a gateway)    DEV.NAME.DOMAIN → the device's addresses
 *   a gateway's devices (lighthouse)  DEV.GW.DOMAIN → what the gateway published (names.ts)
 *   the lighthouses' answers          whatever they answered, kept for ANSWER_TTL (positive)
 *                                     or NEGATIVE_TTL (not found)
 *
 * Names are handled relative to the domain ("bob", "phone.gw"), lowercase, as names.ts keys them.
 *
 * May touch: nothing but its own cache; it reads the engine's peers and certificates.
 */
import type { Engine } from '../core/engine.js';
import { inside } from '../core/directory.js';

/** How long a lighthouse's answer is kept here (and the TTL given out for names from it). */
export const ANSWER_TTL_MS = 30_000;
/** How long a lighthouse's "no such name" is kept. */
export const NEGATIVE_TTL_MS = 5_000;
/** Cached lighthouse answers at most (past that the oldest go first). */
export const MAX_CACHED = 4096;

export const DEFAULT_DOMAIN = 'mesh';

export type Lookup =
  | { kind: 'found'; addresses: Uint8Array[] }
  | { kind: 'absent' }
  /** Not known here: only a lighthouse can say. */
  | { kind: 'unknown' };

interface Cached {
  addresses: Uint8Array[] | null; // null: the lighthouse said there is no such name
  until: number;
}

function hostAddresses(engine: Engine, p: Parameters<Engine['allowedIpsOf']>[0]): Uint8Array[] {
  if (p.cert) return p.cert.addresses.map((a) => a.addr);
  return engine.allowedIpsOf(p).filter((a) => a.cidr === a.addr.length * 8).map((a) => a.addr);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class Zone {
  private readonly cache = new Map<string, Cached>();

  constructor(private readonly engine: Engine) {}

  /** The mesh's domain, lowercase, without a trailing dot. */
  get domain(): string {
    return this.engine.meshAuthority?.domain ?? DEFAULT_DOMAIN;
  }

  /**
   * `qname` relative to the domain: "" for the domain itself, "bob" for bob.mesh, null for a
   * name outside it. Case-insensitive (RFC 4343), a trailing dot allowed.
   */
  relative(qname: string): string | null {
    let n = qname.toLowerCase();
    if (n.endsWith('.')) n = n.slice(0, -1);
    const d = this.domain;
    if (n === d) return '';
    if (n.length > d.length + 1 && n.endsWith(d) && n.charCodeAt(n.length - d.length - 1) === 46) return n.slice(0, n.length - d.length - 1);
    return null;
  }

  /** What `name` ("bob", "phone.gw") stands for, from what this node knows at `now`. */
  lookup(name: string, now: number): Lookup {
    const local = this.local(name);
    if (local) return { kind: 'found', addresses: local };
    const c = this.cache.get(name);
    if (c && c.until > now) return c.addresses ? { kind: 'found', addresses: c.addresses } : { kind: 'absent' };
    if (c) this.cache.delete(name);
    return { kind: 'unknown' };
  }

  /** Names this node answers without asking anyone. */
  private local(name: string): Uint8Array[] | null {
    const e = this.engine;
    const own = e.meshAuthority?.own;
    const dot = name.indexOf('.');
    if (dot < 0) {
      if (own && own.name === name) return own.addresses.map((a) => a.addr);
      const p = e.peerByName(name);
      if (p && p.membership !== 'pending') {
        const a = hostAddresses(e, p);
        if (a.length) return a;
      }
      return null;
    }
    const device = name.slice(0, dot);
    const gateway = name.slice(dot + 1);
    if (gateway.includes('.')) return null;
    if (own && own.name === gateway) return e.deviceNames.find((d) => d.name === device)?.addresses ?? null;
    return e.peerByName(gateway)?.deviceNames?.get(device) ?? null;
  }

  /** A lighthouse answered about `name` (addresses null: not found). */
  learn(name: string, addresses: Uint8Array[] | null, now: number): void {
    if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
    this.cache.delete(name); // re-insert: the Map's order is the eviction order
    this.cache.set(name, { addresses: addresses?.map((a) => a.slice()) ?? null, until: now + (addresses ? ANSWER_TTL_MS : NEGATIVE_TTL_MS) });
  }

  /**
   * The reverse zones covering the mesh's networks ("99.10.in-addr.arpa" for 10.99.0.0/16;
   * a prefix that does not end on a label boundary is widened to the one above it), for a
   * resolver that routes by domain (systemd-resolved's `~DOMAIN`).
   */
  reverseZones(): string[] {
    const out: string[] = [];
    for (const n of this.engine.meshAuthority?.networks ?? []) {
      const labels: string[] = [];
      if (n.addr.length === 4) {
        for (let i = 0; i < n.bits >> 3; i++) labels.unshift(String(n.addr[i]));
        out.push([...labels, 'in-addr', 'arpa'].join('.'));
      } else {
        for (let i = 0; i < n.bits >> 2; i++) labels.unshift(((n.addr[i >> 1] >> (i & 1 ? 0 : 4)) & 15).toString(16));
        out.push([...labels, 'ip6', 'arpa'].join('.'));
      }
    }
    return [...new Set(out)];
  }

  /** Is `addr` inside the mesh's networks (its reverse names are ours to answer)? */
  isOverlay(addr: Uint8Array): boolean {
    const nets = this.engine.meshAuthority?.networks ?? [];
    if (nets.some((n) => inside(addr, n))) return true;
    // without a mesh: the static named peers' addresses and our own are still ours
    return this.nameOfAddress(addr, 0) !== null;
  }

  /** The name (relative) that holds overlay address `addr`, or null. */
  nameOfAddress(addr: Uint8Array, now: number): string | null {
    const e = this.engine;
    const own = e.meshAuthority?.own;
    if (own && own.addresses.some((a) => sameBytes(a.addr, addr))) return own.name;
    for (const d of e.deviceNames) if (own && d.addresses.some((a) => sameBytes(a, addr))) return `${d.name}.${own.name}`;
    for (const p of e.listPeers()) {
      const n = p.cert?.name ?? p.name;
      if (!n || p.membership === 'pending') continue;
      if (hostAddresses(e, p).some((a) => sameBytes(a, addr))) return n;
      if (p.deviceNames) for (const [dev, addrs] of p.deviceNames) if (addrs.some((a) => sameBytes(a, addr))) return `${dev}.${n}`;
    }
    for (const [n, c] of this.cache) if (c.addresses && c.until > now && c.addresses.some((a) => sameBytes(a, addr))) return n;
    return null;
  }
}
