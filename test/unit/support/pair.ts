/**
 * Two (or more) engines joined by an in-memory network, with a fake clock. Datagrams are queued
 * per destination and moved by deliver(); nothing is sent until the test says so, so tests can
 * drop, reorder, replay or rewrite traffic.
 */
import { randomBytes } from 'node:crypto';
import { Engine, type EngineEvent, type EngineOptions, type Sink } from '../../../src/core/engine.js';
import type { Path } from '../../../src/core/endpoint.js';
import { nobleCrypto } from '../../../src/core/crypto.js';
import { parseIp } from '../../../src/config/wgquick.js';

export function makePath(name: string, port = 51820): Path {
  const bytes = new TextEncoder().encode(`${name}:${port}`);
  return { id: `${name}:${port}`, hostId: name, cookieBytes: bytes };
}

export const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

export interface Wire {
  from: string;
  to: string;
  data: Uint8Array;
}

export class Node {
  readonly engine: Engine;
  readonly tun: Uint8Array[] = [];
  readonly events: EngineEvent[] = [];
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
  path: Path;
  constructor(
    readonly name: string,
    readonly net: Net,
    opts: Partial<EngineOptions> = {},
  ) {
    this.privateKey = nobleCrypto.generatePrivateKey(random);
    this.publicKey = nobleCrypto.publicKey(this.privateKey);
    this.path = makePath(name);
    const sink: Sink = {
      send: (path, buf, off, len) => net.queue.push({ from: this.sourceFor(path).id, to: path.id, data: buf.slice(off, off + len) }),
      writeTun: (buf, off, len) => this.tun.push(buf.slice(off, off + len)),
      event: (e) => this.events.push(e),
    };
    this.engine = new Engine(sink, {
      privateKey: this.privateKey,
      random,
      makePaths: (addr, port) => {
        const p = net.pathByAddr(addr, port);
        return p ? [p] : [];
      },
      addressOf: (p) => ({ addr: fakeAddr(p), port: portOf(p) }),
      ...opts,
    });
  }

  /** Extra addresses of a multihomed host; a datagram to a path of family F leaves from our family-F address. */
  extra: Path[] = [];
  private sourceFor(to: Path): Path {
    const fam = to.hostId.endsWith('6') ? 6 : 4;
    for (const p of [this.path, ...this.extra]) if ((p.hostId.endsWith('6') ? 6 : 4) === fam) return p;
    return this.path;
  }

  /** Give the host another address (a second interface) and tell its engine about all of them. */
  addAddress(path: Path): void {
    this.extra.push(path);
    this.net.nodes.set(path.id, this);
    this.net.paths.set(path.id, path);
    this.engine.setLocalAddresses(
      [this.path, ...this.extra].map((p) => ({ addr: fakeAddr(p), port: 51820 })),
      this.net.now,
    );
  }

  /** The host moves to a new address: its old one stops receiving, it sends from the new one. */
  moveTo(path: Path): void {
    this.net.nodes.delete(this.path.id);
    this.path = path;
    this.net.nodes.set(path.id, this);
    this.net.paths.set(path.id, path);
  }

  /** Put this host behind a NAT (its own address becomes private to it); null: on the public network. */
  behind(nat: FakeNat | null): void {
    if (nat) this.net.natOf.set(this.path.id, nat);
    else this.net.natOf.delete(this.path.id);
  }
}

export function portOf(p: Path): number {
  return Number(p.id.slice(p.id.lastIndexOf(':') + 1));
}

/**
 * A NAT in front of private hosts. Mapping: 'cone' keeps one public port per private source
 * (endpoint-independent, port-preserving); 'symmetric' takes a new public port for every
 * destination. Filtering (both): a datagram comes in on a public port only from an address and
 * port that port has sent to (address- and port-dependent, as Linux conntrack).
 */
export class FakeNat {
  private nextPort = 40000;
  private readonly byPublic = new Map<string, { priv: Path; allowed: Set<string> }>();
  private readonly byPrivate = new Map<string, Path>();
  /** Datagrams dropped at the NAT (unsolicited). */
  dropped = 0;
  constructor(
    readonly net: Net,
    readonly name: string,
    readonly kind: 'cone' | 'symmetric',
  ) {
    net.nats.set(name, this);
  }

  outbound(priv: Path, dst: Path): Path {
    const key = this.kind === 'cone' ? priv.id : `${priv.id}>${dst.id}`;
    let pub = this.byPrivate.get(key);
    if (!pub) {
      pub = makePath(this.name, this.kind === 'cone' ? portOf(priv) : this.nextPort++);
      this.byPrivate.set(key, pub);
      this.byPublic.set(pub.id, { priv, allowed: new Set() });
      this.net.paths.set(pub.id, pub);
    }
    this.byPublic.get(pub.id)!.allowed.add(dst.id);
    return pub;
  }

  inbound(pubId: string, src: Path): Path | null {
    const m = this.byPublic.get(pubId);
    if (!m || !m.allowed.has(src.id)) {
      this.dropped++;
      return null;
    }
    return m.priv;
  }

  /** Forget every mapping (a reboot, or conntrack flushed). */
  flush(): void {
    this.byPublic.clear();
    this.byPrivate.clear();
  }
}

/** A fake 16-byte address for a fake path (the host name's bytes), so ADDRESSES can carry it. */
export function fakeAddr(p: Path): Uint8Array {
  const out = new Uint8Array(16);
  out.set(new TextEncoder().encode(p.hostId).subarray(0, 16));
  return out;
}

export class Net {
  queue: Wire[] = [];
  /** Path ids whose datagrams silently vanish (in either direction). */
  blackholes = new Set<string>();

  pathByAddr(addr: Uint8Array, port: number): Path | null {
    for (const p of this.paths.values()) if (Buffer.from(fakeAddr(p)).equals(Buffer.from(addr)) && p.id.endsWith(`:${port}`)) return p;
    return null;
  }
  nodes = new Map<string, Node>();
  /** NATs by name (their public host name), and which NAT each private source path is behind. */
  nats = new Map<string, FakeNat>();
  natOf = new Map<string, FakeNat>();
  /** Every path ever used as a source, by id (an attacker's too). */
  paths = new Map<string, Path>();
  now = 1_000_000;

  add(name: string, opts: Partial<EngineOptions> = {}): Node {
    const n = new Node(name, this, opts);
    this.nodes.set(n.path.id, n);
    this.paths.set(n.path.id, n.path);
    return n;
  }

  /** Deliver queued datagrams (and whatever they provoke) until the network is quiet. Returns how many moved. */
  deliver(filter: (w: Wire) => boolean = () => true, max = 10_000): number {
    let moved = 0;
    while (this.queue.length > 0 && moved < max) {
      const w = this.queue.shift()!;
      if (!filter(w) || this.blackholes.has(w.from) || this.blackholes.has(w.to)) continue;
      let from = this.paths.get(w.from);
      let toId = w.to;
      const outNat = this.natOf.get(w.from);
      const dst = this.paths.get(w.to);
      if (outNat && from && dst) from = outNat.outbound(from, dst);
      const inNat = this.nats.get(w.to.slice(0, w.to.lastIndexOf(':')));
      if (inNat && from) {
        const priv = inNat.inbound(w.to, from);
        if (!priv) continue;
        toId = priv.id;
      }
      if (from && (this.blackholes.has(from.id) || this.blackholes.has(toId))) continue;
      const to = this.nodes.get(toId);
      if (!to || !from) continue;
      to.engine.handleDatagram(w.data, from, this.now);
      moved++;
    }
    return moved;
  }

  /** Advance the fake clock, firing every engine's timers on the way (at each deadline), delivering traffic. */
  advance(ms: number, deliver = true): void {
    const end = this.now + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 100_000) throw new Error(`timers never settle at ${this.now}: ${[...this.nodes.values()].map((n) => n.engine.nextDeadline()).join(', ')}`);
      let next = Infinity;
      for (const n of this.nodes.values()) next = Math.min(next, n.engine.nextDeadline());
      if (next > end) break;
      this.now = Math.max(this.now, next);
      for (const n of this.nodes.values()) n.engine.tick(this.now);
      if (deliver) this.deliver();
    }
    this.now = end;
  }
}

/** Configure a and b as each other's peers; `endpoints` says who knows whose address. */
export function connect(
  a: Node,
  aAllowed: Array<[string, number]>,
  b: Node,
  bAllowed: Array<[string, number]>,
  opts: { psk?: Uint8Array; pskB?: Uint8Array; aKnowsB?: boolean; bKnowsA?: boolean; now?: number } = {},
): void {
  const now = opts.now ?? 0;
  a.engine.upsertPeer(
    {
      publicKey: b.publicKey,
      presharedKey: opts.psk,
      endpoint: opts.aKnowsB === false ? null : b.path,
      allowedIps: bAllowed.map(([ip, c]) => ({ addr: ipBytes(ip), cidr: c })),
    },
    now,
  );
  b.engine.upsertPeer(
    {
      publicKey: a.publicKey,
      presharedKey: opts.pskB ?? opts.psk,
      endpoint: opts.bKnowsA === false ? null : a.path,
      allowedIps: aAllowed.map(([ip, c]) => ({ addr: ipBytes(ip), cidr: c })),
    },
    now,
  );
}

export function ipBytes(s: string): Uint8Array {
  const ip = parseIp(s);
  if (!ip) throw new Error(`not an IP address: ${s}`);
  return ip.bytes;
}

/** A minimal IPv4 (protocol 253, experimental) or IPv6 packet from src to dst with the given payload. */
export function ipPacket(src: string, dst: string, payload: Uint8Array): Uint8Array {
  const s = ipBytes(src);
  const d = ipBytes(dst);
  if (s.length === 4) {
    const p = new Uint8Array(20 + payload.length);
    p[0] = 0x45;
    p[2] = p.length >> 8;
    p[3] = p.length & 0xff;
    p[8] = 64;
    p[9] = 253;
    p.set(s, 12);
    p.set(d, 16);
    p.set(payload, 20);
    return p;
  }
  const p = new Uint8Array(40 + payload.length);
  p[0] = 0x60;
  p[4] = payload.length >> 8;
  p[5] = payload.length & 0xff;
  p[6] = 253;
  p[7] = 64;
  p.set(s, 8);
  p.set(d, 24);
  p.set(payload, 40);
  return p;
}
