/**
 * Two (or more) engines joined by an in-memory network, with a fake clock. Datagrams are queued
 * per destination and moved by deliver(); nothing is sent until the test says so, so tests can
 * drop, reorder, replay or rewrite traffic.
 *
 * The network can also be made hostile on its own (`impair`): random loss, reordering (a datagram
 * held back for a while on the fake clock, so later ones overtake it) and duplication, drawn from a
 * seeded PRNG so every run is the same; and NAT (`nat`): a host's source address rewritten to an
 * outside address and port, which can be rebound mid-stream. Every datagram's fate is logged
 * (`log`), with the transport header's receiver index and counter, so tests can tell exactly
 * which inner packets the network lost.
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

/**
 * A path with a local end (a multihomed host's: sent from, or received on, one of its own
 * addresses), as the runtime's UdpPath with IP_PKTINFO: remote and local are path ids.
 */
export interface LocalPath extends Path {
  readonly remote: string;
  readonly local: string;
}

export function isLocalPath(p: Path): p is LocalPath {
  return (p as LocalPath).remote !== undefined;
}

export interface Wire {
  from: string;
  to: string;
  data: Uint8Array;
  /** Its entry in Net.log (absent for datagrams a test pushes itself). */
  rec?: WireRecord;
  /** The datagram whose handling made the node send this one (null: a timer or the TUN device). */
  cause?: WireRecord | null;
  /**
   * Sent with a small IP TTL (a NAT opener): it passes the sender's NAT (which maps it) and dies
   * at the next router, which reports "time exceeded" to the sender from a public address.
   */
  ttl?: number;
}

export type Fate = 'queued' | 'held' | 'lost' | 'delivered' | 'filtered' | 'blackholed' | 'noHost' | 'expired' | 'tooBig';

/** What happened to one datagram (a duplicate gets its own record). */
export interface WireRecord {
  /** Fake-clock time it was sent. */
  at: number;
  from: string;
  to: string;
  len: number;
  /** WireGuard message type (first byte). */
  type: number;
  /** For transport data: "receiver/counter", the same for every copy of one sealed packet. */
  key: string | null;
  fate: Fate;
  duplicate: boolean;
  /** The delivered datagram whose handling sent this one (null: a timer or a TUN packet). */
  cause: WireRecord | null;
}

/** Random impairments applied to datagrams as they are sent (those `applies` accepts). */
export interface Impairments {
  /** Probability that a datagram is lost. */
  loss?: number;
  /** Probability that a datagram is held back (so later ones overtake it)… */
  reorder?: number;
  /** …for holdMinMs…holdMs ms of the fake clock (default 1…30). */
  holdMs?: number;
  holdMinMs?: number;
  /** Probability that a datagram arrives twice. */
  duplicate?: number;
  /** Which datagrams are impaired (default: all). */
  applies?: (w: Wire) => boolean;
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seeded(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let x = Math.imul(t ^ (t >>> 15), 1 | t);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
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
      send: (path, buf, off, len) =>
        isLocalPath(path)
          ? net.send({ from: path.local, to: path.remote, data: buf.slice(off, off + len) })
          : net.send({ from: this.sourceFor(path).id, to: path.id, data: buf.slice(off, off + len) }),
      sendTtl: (path, buf, off, len, ttl) => net.send({ from: this.sourceFor(path).id, to: path.id, data: buf.slice(off, off + len), ttl }),
      writeTun: (buf, off, len) => this.tun.push(buf.slice(off, off + len)),
      event: (e) => this.events.push(e),
    };
    this.engine = new Engine(sink, {
      checkDeadlines: true,
      privateKey: this.privateKey,
      random,
      makePaths: (addr, port) => {
        const p = net.pathByAddr(addr, port);
        if (!p) return [];
        // a multihomed host (localEnds): one path from each of its addresses
        return this.localEnds ? [this.path, ...this.extra].map((l) => net.localPath(p.id, l.id)) : [p];
      },
      addressOf: (p) => ({ addr: fakeAddr(p, net), port: portOf(p) }),
      // Path MTU probes are extra traffic the older tests do not count on: test/unit/pmtu.test.ts turns them on
      pmtuDiscovery: false,
      ...opts,
    });
  }

  /** Extra addresses of a multihomed host; a datagram to a path of family F leaves from our family-F address. */
  extra: Path[] = [];
  /**
   * A multihomed host that knows its local ends (as the runtime with IP_PKTINFO): what it receives
   * arrives on a path naming the address it came to, and makePaths gives one path per address.
   */
  localEnds = false;
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
      [this.path, ...this.extra].map((p) => ({ addr: fakeAddr(p, this.net), port: 51820 })),
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
  const id = isLocalPath(p) ? p.remote : p.id;
  return Number(id.slice(id.lastIndexOf(':') + 1));
}

/**
 * A NAT in front of private hosts. Mapping: 'cone' keeps one public port per private source
 * (endpoint-independent, port-preserving); 'symmetric' takes a new public port for every
 * destination. Filtering (both): a datagram comes in on a public port only from an address and
 * port that port has sent to (address- and port-dependent, as Linux conntrack).
 *
 * 'plain' is Linux masquerade with no inbound filter, modelled on conntrack: a flow (private
 * source → destination) keeps the public port it was given, port-preserving unless that tuple is
 * taken; a datagram from outside that matches no flow is "for the router itself" and leaves an
 * unreplied entry (outside source → public port) behind — and a later flow from inside to that
 * source then clashes with it and is given another public port. Every entry expires after
 * PLAIN_TIMEOUT without traffic (30 s, Linux's unreplied UDP timeout); traffic refreshes it.
 */
export const PLAIN_TIMEOUT = 30_000;

export class FakeNat {
  /** 'plain': flows by "private>destination" → public port and last use; stale local entries by "source>public port". */
  private readonly flows = new Map<string, { pub: Path; priv: Path; dst: string; seen: number }>();
  private readonly stale = new Map<string, number>();
  /** 'plain': datagrams that ended at the router itself (and left a stale entry). */
  local = 0;
  private nextPort = 40000;
  private readonly byPublic = new Map<string, { priv: Path; allowed: Set<string> }>();
  private readonly byPrivate = new Map<string, Path>();
  /** Datagrams dropped at the NAT (unsolicited). */
  dropped = 0;
  constructor(
    readonly net: Net,
    readonly name: string,
    readonly kind: 'cone' | 'symmetric' | 'plain',
  ) {
    net.nats.set(name, this);
  }

  private alive(seen: number): boolean {
    return this.net.now - seen < PLAIN_TIMEOUT;
  }

  outbound(priv: Path, dst: Path): Path {
    if (this.kind === 'plain') {
      const k = `${priv.id}>${dst.id}`;
      const f = this.flows.get(k);
      if (f && this.alive(f.seen)) {
        f.seen = this.net.now;
        return f.pub;
      }
      // port-preserving, unless the reply tuple (dst → us:port) is taken by a stale entry or another flow
      const taken = (port: number) => {
        const id = `${this.name}:${port}`;
        const st = this.stale.get(`${dst.id}>${id}`);
        if (st !== undefined && this.alive(st)) return true;
        for (const g of this.flows.values()) if (g.pub.id === id && g.dst === dst.id && this.alive(g.seen)) return true;
        return false;
      };
      let port = portOf(priv);
      while (taken(port)) port = this.nextPort++;
      const pub = makePath(this.name, port);
      this.net.paths.set(pub.id, pub);
      this.flows.set(k, { pub, priv, dst: dst.id, seen: this.net.now });
      return pub;
    }
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
    if (this.kind === 'plain') {
      for (const f of this.flows.values()) {
        if (f.pub.id === pubId && f.dst === src.id && this.alive(f.seen)) {
          f.seen = this.net.now;
          return f.priv;
        }
      }
      this.stale.set(`${src.id}>${pubId}`, this.net.now); // for the router itself: an unreplied entry, refreshed
      this.local++;
      return null;
    }
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
    this.flows.clear();
    this.stale.clear();
  }
}

/**
 * A fake 16-byte address for a fake path (the host name's bytes), so ADDRESSES can carry it — or,
 * for a host given one with net.ipv4(), that IPv4 address (v4-mapped), so the engine treats it
 * as IPv4 (NAT openers, punch.ts).
 */
export function fakeAddr(p: Path, net?: Net): Uint8Array {
  const v4 = net?.v4.get(p.hostId);
  if (v4) return Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4);
  const out = new Uint8Array(16);
  out.set(new TextEncoder().encode(p.hostId).subarray(0, 16));
  return out;
}

export class Net {
  queue: Wire[] = [];
  /** Path ids whose datagrams silently vanish (in either direction). */
  blackholes = new Set<string>();
  /**
   * Links that carry less than full size: host name (a path id without its port) → the largest
   * datagram (UDP payload) carried to or from it; larger ones silently vanish, as on a path whose
   * router's ICMP "fragmentation needed" is filtered.
   */
  mtus = new Map<string, number>();
  private tooBig(id: string, len: number): boolean {
    const m = this.mtus.get(id.slice(0, id.lastIndexOf(':')));
    return m !== undefined && len > m;
  }
  /** Every datagram sent by a node, in order, with its fate. */
  log: WireRecord[] = [];
  /** Datagrams held back by `reorder`, with the fake-clock time they are let go. */
  held: Array<{ at: number; w: Wire }> = [];
  private impairments: Impairments | null = null;
  private rnd: () => number = seeded(1);
  /** NAT: inside source path id → outside path (rewritten as datagrams leave), and back. */
  private natOut = new Map<string, Path>();
  private natIn = new Map<string, string>();
  /** The datagram being handled right now (what anything sent meanwhile answers). */
  private current: WireRecord | null = null;

  /** Make the network lossy / reordering / duplicating from now on (null: a perfect network again). */
  impair(opts: Impairments | null, seed = 1): void {
    this.impairments = opts;
    this.rnd = seeded(seed);
  }

  /**
   * Put `inside` (a host's own path) behind a NAT: its datagrams leave with source `outside`, and
   * datagrams to `outside` reach it. Calling it again rebinds (conntrack flushed, a new port): the
   * previous outside address no longer reaches the host.
   */
  nat(inside: Path, outside: Path): void {
    const old = this.natOut.get(inside.id);
    if (old) this.natIn.delete(old.id);
    this.natOut.set(inside.id, outside);
    this.natIn.set(outside.id, inside.id);
    this.paths.set(outside.id, outside);
  }

  /** A node hands a datagram to the network: NAT, then the impairments, decide what is queued. */
  send(w: Wire): void {
    w.cause = this.current;
    const out = this.natOut.get(w.from);
    if (out) w.from = out.id;
    const d = w.data;
    const type = d.length > 0 ? d[0] : -1;
    let key: string | null = null;
    if (type === 4 && d.length >= 32) {
      const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
      key = `${v.getUint32(4, true)}/${v.getUint32(12, true) * 2 ** 32 + v.getUint32(8, true)}`;
    }
    const rec = (duplicate: boolean): WireRecord => {
      const r: WireRecord = { at: this.now, from: w.from, to: w.to, len: d.length, type, key, fate: 'queued', duplicate, cause: w.cause ?? null };
      this.log.push(r);
      return r;
    };
    const imp = this.impairments;
    if (!imp || (imp.applies && !imp.applies(w))) {
      this.queue.push({ ...w, rec: rec(false) });
      return;
    }
    const copies = this.rnd() < (imp.duplicate ?? 0) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const c: Wire = { from: w.from, to: w.to, data: i === 0 ? d : d.slice(), cause: w.cause, rec: rec(i > 0) };
      if (this.rnd() < (imp.loss ?? 0)) {
        c.rec!.fate = 'lost';
      } else if (this.rnd() < (imp.reorder ?? 0)) {
        c.rec!.fate = 'held';
        const min = imp.holdMinMs ?? 1;
        this.held.push({ at: this.now + min + Math.floor(this.rnd() * (Math.max(imp.holdMs ?? 30, min) - min + 1)), w: c });
      } else this.queue.push(c);
    }
  }

  /** Held datagrams whose time has come join the end of the queue (behind what overtook them). */
  private release(): void {
    if (this.held.length === 0) return;
    const due = this.held.filter((h) => h.at <= this.now);
    if (due.length === 0) return;
    this.held = this.held.filter((h) => h.at > this.now);
    due.sort((x, y) => x.at - y.at);
    for (const h of due) {
      h.w.rec!.fate = 'queued';
      this.queue.push(h.w);
    }
  }

  private readonly localPaths = new Map<string, LocalPath>();

  /** The path to `remote` from our address `local` (both path ids), one object per pair. */
  localPath(remote: string, local: string): LocalPath {
    const id = `${remote} from ${local}`;
    let p = this.localPaths.get(id);
    if (!p) {
      const r = this.paths.get(remote)!;
      p = { id, hostId: r.hostId, cookieBytes: r.cookieBytes, remote, local };
      this.localPaths.set(id, p);
    }
    return p;
  }

  pathByAddr(addr: Uint8Array, port: number): Path | null {
    for (const p of this.paths.values()) if (Buffer.from(fakeAddr(p, this)).equals(Buffer.from(addr)) && p.id.endsWith(`:${port}`)) return p;
    return null;
  }

  /** Deliver through handleDatagramBatch + processHandshakes (the runtime's way) instead of handleDatagram. */
  batched = false;

  /** TTL-limited datagrams are reported back as "time exceeded" (false: the ICMP is filtered). */
  reportTimeExceeded = true;

  /** Hosts given an IPv4 address (fakeAddr): host name → its four bytes. */
  readonly v4 = new Map<string, number[]>();

  /** Give a host (its paths, whatever the port) the IPv4 address `a.b.c.d`. */
  ipv4(hostId: string, address: string): void {
    this.v4.set(hostId, address.split('.').map(Number));
  }

  /** The router past every NAT that TTL-limited datagrams die at (a public address). */
  static readonly ROUTER = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1);
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
    this.release();
    let moved = 0;
    while (this.queue.length > 0 && moved < max) {
      const w = this.queue.shift()!;
      const fate = (f: Fate) => {
        if (w.rec) w.rec.fate = f;
      };
      if (!filter(w)) {
        fate('filtered');
        continue;
      }
      if (this.blackholes.has(w.from) || this.blackholes.has(w.to)) {
        fate('blackholed');
        continue;
      }
      if (this.mtus.size > 0 && (this.tooBig(w.from, w.data.length) || this.tooBig(w.to, w.data.length))) {
        fate('tooBig');
        continue;
      }
      let from = this.paths.get(w.from);
      let toId = this.natIn.get(w.to) ?? w.to;
      // FakeNat: per-destination mappings (symmetric) and address/port-dependent filtering
      const outNat = this.natOf.get(w.from);
      const dst = this.paths.get(w.to);
      if (outNat && from && dst) from = outNat.outbound(from, dst);
      if (w.ttl !== undefined) {
        // an opener: past the sender's NAT (mapped above), it dies at the next router, which says so
        fate('expired');
        const sender = this.nodes.get(w.from);
        if (sender && dst && this.reportTimeExceeded) sender.engine.handleTimeExceeded(fakeAddr(dst, this), portOf(dst), Net.ROUTER, w.data.subarray(0, 16), this.now);
        continue;
      }
      const inNat = this.nats.get(w.to.slice(0, w.to.lastIndexOf(':')));
      if (inNat && from) {
        const priv = inNat.inbound(w.to, from);
        if (!priv) {
          fate('filtered');
          continue;
        }
        toId = priv.id;
      }
      if (from && (this.blackholes.has(from.id) || this.blackholes.has(toId))) {
        fate('blackholed');
        continue;
      }
      const to = this.nodes.get(toId);
      if (!to || !from) {
        fate('noHost');
        continue;
      }
      fate('delivered');
      this.current = w.rec ?? null;
      if (to.localEnds) from = this.localPath(from.id, toId);
      try {
        if (this.batched) {
          // as the runtime does: through the batch entry point, then the queued handshakes' work
          to.engine.handleDatagramBatch(w.data, Uint32Array.of(0), Uint32Array.of(w.data.length), [from], 1, this.now);
          to.engine.processHandshakes(this.now);
        } else to.engine.handleDatagram(w.data, from, this.now);
      } finally {
        this.current = null;
      }
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
      for (const n of new Set(this.nodes.values())) next = Math.min(next, n.engine.nextDeadline());
      for (const h of this.held) next = Math.min(next, h.at);
      if (next > end) break;
      this.now = Math.max(this.now, next);
      for (const n of new Set(this.nodes.values())) n.engine.tick(this.now);
      if (deliver) this.deliver();
      else this.release();
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

/**
 * A lighthouse l that knows members a (tunnel 10.0.0.1) and b (10.0.0.2); each member lists l as
 * its lighthouse (at l's address) and the other member without an endpoint.
 */
export function lighthouseAndMembers(net: Net, l: Node, a: Node, b: Node): void {
  l.engine.upsertPeer({ publicKey: a.publicKey, allowedIps: [{ addr: ipBytes('10.0.0.1'), cidr: 32 }] }, net.now);
  l.engine.upsertPeer({ publicKey: b.publicKey, allowedIps: [{ addr: ipBytes('10.0.0.2'), cidr: 32 }] }, net.now);
  for (const [m, o, ip] of [
    [a, b, '10.0.0.2'],
    [b, a, '10.0.0.1'],
  ] as const) {
    m.engine.upsertPeer({ publicKey: l.publicKey, endpoint: l.path, lighthouse: true, allowedIps: [{ addr: ipBytes('10.0.9.1'), cidr: 32 }] }, net.now);
    m.engine.upsertPeer({ publicKey: o.publicKey, allowedIps: [{ addr: ipBytes(ip), cidr: 32 }] }, net.now);
  }
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
