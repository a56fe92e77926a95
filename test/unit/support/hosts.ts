/**
 * Hosts with real local ends, for the tests of address changes: each host has addresses on
 * interfaces, which can be added and deleted under a running engine, and the runtime's own
 * paths (UdpPath, interned by PathTable: remote address and port, local address and interface)
 * and address-change logic (LocalEnds). Only the sockets and the clock are fake:
 *
 *      host A  ─┐                     ┌─  host B
 *   192.0.2.1%2 ├── one IPv4 link ───┤ 192.0.2.2%2
 *   fd00:2::1%2 ├── one IPv6 link ───┤ fd00:2::2%2
 *
 * Sending follows the kernel's rules as keymesh meets them: a path with a local end leaves from
 * that address, and is lost (EADDRNOTAVAIL) if the host no longer has it; a path without one
 * leaves from the host's first address of the family, and is lost (ENETUNREACH) if it has none.
 * A datagram reaches whichever host has its destination address when it is delivered, on the
 * path (its source, our destination address and interface) the runtime would build from
 * IP_PKTINFO. Nothing happens to a host's engine when its addresses change until the test says
 * `react()` — the runtime's answer to netlink — so tests can order the two as they like.
 */
import { Engine, type EngineEvent } from '../../../src/core/engine.js';
import { nobleCrypto } from '../../../src/core/crypto.js';
import { LocalEnds, type LocalEnd } from '../../../src/io/local-ends.js';
import { addressTo16, isMapped, PathTable, UdpPath } from '../../../src/io/udp-path.js';
import { ipBytes, ipPacket, random } from './pair.js';

export const PORT = 51820;

export interface Datagram {
  at: number;
  from: string; // source address:port as text
  to: string;
  src16: Uint8Array;
  dst16: Uint8Array;
  data: Uint8Array;
  /** The host that sent it, and why it never arrived (if it did not). */
  sender: Host;
  fate: 'queued' | 'delivered' | 'EADDRNOTAVAIL' | 'ENETUNREACH' | 'noHost' | 'lost';
}

const text16 = (a: Uint8Array) => new UdpPath(a, 0).address;
const same = (a: Uint8Array, b: Uint8Array) => a.every((x, i) => x === b[i]);

export class Host {
  readonly engine: Engine;
  readonly paths = new PathTable();
  readonly local = new LocalEnds(this.paths);
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly events: EngineEvent[] = [];
  /** Inner packets written to the TUN device. */
  readonly tun: Uint8Array[] = [];
  /** Answer every inner packet with one back (an echo server behind the tunnel). */
  echo = false;
  private readonly echoes: Uint8Array[] = [];
  /** The interface addresses the host has now (what the kernel has, whatever the engine knows). */
  addrs: Array<{ addr: Uint8Array; ifindex: number }> = [];

  constructor(
    readonly name: string,
    readonly net: Hosts,
    readonly tunnelAddr: string,
  ) {
    this.privateKey = nobleCrypto.generatePrivateKey(random);
    this.publicKey = nobleCrypto.publicKey(this.privateKey);
    this.engine = new Engine(
      {
        send: (path, buf, off, len) => net.send(this, path as UdpPath, buf.slice(off, off + len)),
        writeTun: (buf, off, len) => {
          const p = buf.slice(off, off + len);
          this.tun.push(p);
          if (this.echo) this.echoes.push(p);
        },
        event: (e) => this.events.push(e),
      },
      {
        checkDeadlines: true,
        privateKey: this.privateKey,
        random,
        makePaths: (addr, port) => this.local.pathsTo(addr, port),
        addressOf: (p) => (p instanceof UdpPath ? { addr: p.addr16, port: p.port } : null),
      },
    );
  }

  /** The kernel gains an address (no reaction yet: see react()). */
  addAddr(ip: string, ifindex = 2): void {
    this.addrs.push({ addr: addressTo16(ip)!, ifindex });
  }

  /** The kernel loses an address. */
  delAddr(ip: string): void {
    const a = addressTo16(ip)!;
    this.addrs = this.addrs.filter((x) => !same(x.addr, a));
  }

  has(addr16: Uint8Array): { addr: Uint8Array; ifindex: number } | undefined {
    return this.addrs.find((x) => same(x.addr, addr16));
  }

  ends(): LocalEnd[] {
    return this.addrs.map((x) => ({ addr: x.addr, ifindex: x.ifindex, family: isMapped(x.addr) ? 4 : 6 }));
  }

  /** What the runtime does when netlink reports a change: read the addresses, tell the engine. */
  react(quiet = false): void {
    this.local.apply(this.engine, this.ends(), PORT, this.net.now, quiet);
  }

  /** The engine's active path to `other` ("" when none). */
  activeTo(other: Host): string {
    return this.engine.getPeer(other.publicKey)?.endpoint.path?.id ?? '';
  }

  /** Send one inner packet to `other` through the tunnel. */
  sendTo(other: Host, payload: string): void {
    this.engine.handleTunPacket(ipPacket(this.tunnelAddr, other.tunnelAddr, new TextEncoder().encode(payload)), this.net.now);
  }

  /** Answer what the echo collected (outside the engine's own call). */
  flushEchoes(): void {
    while (this.echoes.length > 0) {
      const p = this.echoes.shift()!;
      const reply = p.slice();
      reply.set(p.subarray(12, 16), 16);
      reply.set(p.subarray(16, 20), 12);
      this.engine.handleTunPacket(reply, this.net.now);
    }
  }
}

export class Hosts {
  now = 1_000_000;
  readonly hosts: Host[] = [];
  queue: Datagram[] = [];
  readonly log: Datagram[] = [];
  /** Decides which datagrams the network loses (after the sender's own checks). */
  lose: (d: Datagram) => boolean = () => false;

  add(name: string, tunnelAddr: string, addrs: string[]): Host {
    const h = new Host(name, this, tunnelAddr);
    for (const a of addrs) h.addAddr(a);
    h.react(true); // bring-up: local ends known, nothing to tell anyone yet
    this.hosts.push(h);
    return h;
  }

  /** Make a and b peers; `a` knows b's address `bAddr` (a literal endpoint: no local end), b knows nothing of a. */
  connect(a: Host, b: Host, bAddr: string): void {
    const cidr = 32;
    a.engine.upsertPeer({ publicKey: b.publicKey, endpoint: a.paths.get(addressTo16(bAddr)!, 0, PORT), allowedIps: [{ addr: ipBytes(b.tunnelAddr), cidr }] }, this.now);
    b.engine.upsertPeer({ publicKey: a.publicKey, endpoint: null, allowedIps: [{ addr: ipBytes(a.tunnelAddr), cidr }] }, this.now);
  }

  send(from: Host, path: UdpPath, data: Uint8Array): void {
    let src: { addr: Uint8Array; ifindex: number } | undefined;
    let fate: Datagram['fate'] = 'queued';
    if (path.hasLocal) {
      src = from.has(path.local16);
      if (!src) fate = 'EADDRNOTAVAIL';
    } else {
      src = from.addrs.find((x) => (isMapped(x.addr) ? 4 : 6) === path.family);
      if (!src) fate = 'ENETUNREACH';
    }
    const d: Datagram = {
      at: this.now,
      from: src ? `${text16(src.addr)}:${PORT}` : '?',
      to: path.remoteId,
      src16: src?.addr ?? new Uint8Array(16),
      dst16: path.addr16,
      data,
      sender: from,
      fate,
    };
    this.log.push(d);
    if (fate !== 'queued') return;
    if (this.lose(d)) d.fate = 'lost';
    else this.queue.push(d);
  }

  /** Deliver queued datagrams (and what they provoke) until the network is quiet. */
  deliver(): void {
    for (let guard = 0; this.queue.length > 0; guard++) {
      if (guard > 100_000) throw new Error('the network never goes quiet');
      const d = this.queue.shift()!;
      const to = this.hosts.find((h) => h.has(d.dst16));
      if (!to) {
        d.fate = 'noHost';
        continue;
      }
      d.fate = 'delivered';
      const end = to.has(d.dst16)!;
      const path = to.paths.get(d.src16, 0, PORT, end.addr, 0, end.ifindex);
      to.engine.handleDatagram(d.data, path, this.now);
      for (const h of this.hosts) h.flushEchoes();
    }
  }

  /** Advance the fake clock to now + ms, firing every engine's timers at their deadlines and delivering. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 100_000) throw new Error(`timers never settle at ${this.now}`);
      let next = Infinity;
      for (const h of this.hosts) next = Math.min(next, h.engine.nextDeadline());
      if (next > end) break;
      this.now = Math.max(this.now, next);
      for (const h of this.hosts) h.engine.tick(this.now);
      this.deliver();
    }
    this.now = end;
  }
}
