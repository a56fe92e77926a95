/**
 * Start-up warm-up of the data path.
 *
 * V8 runs a new process's JavaScript in its interpreter, then in its baseline tier, and optimizes
 * a function only after it has run many times — with the types it saw meanwhile. On a freshly
 * started node the first few hundred packets therefore pay several times the steady-state cost per
 * hop (measured with `npm run bench:rtt`: ping RTT through keymesh 1.5–1.8× wireguard-go's in the
 * first seconds, level with it later), and code optimized under bulk traffic was deoptimized again
 * by the first lone ping, whose branches it had never seen.
 *
 * So before the interface comes up, the node's own Runtime — the very objects real traffic will
 * meet, since V8's type feedback is about hidden classes and call targets — runs six short
 * sessions with throwaway partner Runtimes, each a handshake and ~1,300 packets: lone pings, bulk
 * batches, IPv4 and IPv6, unroutable packets, both directions and both roles, timer ticks, through
 * the real addon calls, AEAD and handshake (why each of these matters: native-notes/
 * microseconds.md, "Just started"). Each stands on
 * one end of an AF_UNIX packet socket pair (read and written with the TUN batch functions,
 * virtio header and all) and a UDP socket bound to 127.0.0.1; this module plays the kernel on the
 * other ends. Then the partner peer, the sockets and the counters are taken away again. Nothing is
 * reachable from outside. KEYMESH_WARMUP=0 skips it.
 */
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { nobleCrypto } from '../core/crypto.js';
import { DEFAULT_MTU } from '../core/constants.js';
import { interfaceDefaults, type PeerConfig, type WgQuickConfig } from '../config/wgquick.js';
import * as native from './native.js';
import { addressTo16 } from './udp-path.js';

/** A Runtime standing on the warm-up's wire: its readiness handlers, its timer, and the way off again. */
export interface WarmupAttachment {
  tunReadable(): void;
  udpReadable(): void;
  timer(): void;
  detach(): void;
}

/** A Runtime that can stand on the wire: its public key and how to attach it with the given peers. */
export interface WarmupNode {
  publicKey: Uint8Array;
  attach(tunFd: number, offload: native.TunOffload | null, udp: native.UdpHandle, peers: PeerConfig[]): WarmupAttachment;
}

/** Packet traversals (one packet through one node, either direction) to aim for, and a time cap. */
const TARGET_PACKETS = 8000;
const SESSIONS = 6;
const MAX_MS = 2000;

const SLOT = 2048;
const BATCH = 64;
const TUNNEL4 = [
  [10, 213, 0, 1],
  [10, 213, 0, 2],
];
/** Where no peer's allowed IPs lead (a new interface's router solicitations go to ff02::2): dropped as noRoute. */
const NOWHERE4 = [10, 213, 99, 99];
const NOWHERE6 = addressTo16('ff02::2')!;
const TUNNEL6 = [addressTo16('fd00:213::1')!, addressTo16('fd00:213::2')!];

/** One node and the kernel's side of its stand-in TUN device. */
class Side {
  delivered = 0;
  private readonly buf = new Uint8Array(BATCH * SLOT);
  private readonly offs = new Uint32Array(BATCH).map((_, i) => i * SLOT);
  private readonly lens = new Uint32Array(BATCH);

  constructor(
    readonly node: WarmupAttachment,
    private readonly kernelFd: number,
    private readonly vnet: boolean,
    /** This kernel answers every packet delivered to it (as a host answers pings, and data with ACKs). */
    private readonly answers: boolean,
  ) {}

  /** Queue packets for the node to read from its "TUN device". */
  write(packets: Uint8Array[]): void {
    for (let i = 0; i < packets.length; i += BATCH) {
      const n = Math.min(BATCH, packets.length - i);
      for (let k = 0; k < n; k++) {
        this.buf.set(packets[i + k], k * SLOT);
        this.lens[k] = packets[i + k].length;
      }
      (this.vnet ? native.tunWriteBatchVnet : native.tunWriteBatch)(this.kernelFd, this.buf, this.offs, this.lens, n);
    }
  }

  /** Take what the node delivered to its "TUN device" (and answer it); returns how many packets. */
  read(): number {
    let total = 0;
    for (;;) {
      const n = (this.vnet ? native.tunReadBatchVnet : native.tunReadBatch)(this.kernelFd, this.buf, SLOT, this.lens, BATCH);
      if (n === 0) break;
      total += n;
      const answers: Uint8Array[] = [];
      if (this.answers) for (let k = 0; k < n; k++) answers.push(reply(this.buf.subarray(k * SLOT, k * SLOT + this.lens[k])));
      if (answers.length) this.write(answers);
    }
    this.delivered += total;
    return total;
  }
}

/** A plausible IP packet of `len` bytes from node `from` to the other node: ICMP echo or TCP, IPv4 or IPv6. */
function packet(from: number, v6: boolean, len: number, tcp: boolean, unrouted = false): Uint8Array {
  const to = 1 - from;
  const p = new Uint8Array(len);
  if (v6) {
    p[0] = 0x60;
    p[4] = (len - 40) >> 8;
    p[5] = (len - 40) & 0xff;
    p[6] = tcp ? 6 : 58;
    p[7] = 64;
    p.set(TUNNEL6[from], 8);
    p.set(unrouted ? NOWHERE6 : TUNNEL6[to], 24);
  } else {
    p[0] = 0x45;
    p[2] = len >> 8;
    p[3] = len & 0xff;
    p[8] = 64;
    p[9] = tcp ? 6 : 1;
    p.set(TUNNEL4[from], 12);
    p.set(unrouted ? NOWHERE4 : TUNNEL4[to], 16);
  }
  return p;
}

/** The answer a host would give: addresses swapped, an ACK-sized packet for TCP, the same size for an echo. */
function reply(p: Uint8Array): Uint8Array {
  const v6 = p[0] >> 4 === 6;
  const tcp = p[v6 ? 6 : 9] === 6;
  const len = tcp ? (v6 ? 72 : 52) : p.length;
  const r = new Uint8Array(len);
  r.set(p.subarray(0, v6 ? 40 : 20));
  if (v6) {
    r.set(p.subarray(24, 40), 8);
    r.set(p.subarray(8, 24), 24);
    r[4] = (len - 40) >> 8;
    r[5] = (len - 40) & 0xff;
  } else {
    r.set(p.subarray(16, 20), 12);
    r.set(p.subarray(12, 16), 16);
    r[2] = len >> 8;
    r[3] = len & 0xff;
  }
  return r;
}

/** The partner's interface: a throwaway key, no addresses, no hooks. */
export function partnerConfig(privateKey: Uint8Array, mtu: number): WgQuickConfig {
  return {
    file: '(warm-up)',
    interface: { privateKey, listenPort: 0, mtu, ...interfaceDefaults() },
    peers: [],
  };
}

/** Side `self`'s one peer: the other side, at its tunnel addresses, with an Endpoint if `knows` (it initiates). */
function peerOf(self: number, peerKey: Uint8Array, peerPort: number, knows: boolean): PeerConfig {
  const peer = 1 - self;
  return {
    publicKey: peerKey,
    allowedIps: [
      { addr: new Uint8Array(TUNNEL4[peer]), cidr: 32, family: 4, text: '' },
      { addr: TUNNEL6[peer], cidr: 128, family: 6, text: '' },
    ],
    endpoint: knows ? { host: '127.0.0.1', port: peerPort } : undefined,
    lighthouse: false,
    line: 0,
  };
}

/**
 * Warm `node` up against a partner made by `makePartner`. Never throws: a machine where it cannot
 * run (no loopback, no addon) just starts cold. Returns how many packets went through a node, how
 * long it took, and why it stopped early if it did.
 */
export function warmUp(node: WarmupNode, makePartner: (config: WgQuickConfig) => WarmupNode, offload: native.TunOffload | null, mtu = DEFAULT_MTU): { packets: number; ms: number; error?: string } {
  const t0 = performance.now();
  const fds: number[] = [];
  let attached: Side[] = [];
  let packets = 0;
  try {
    // The stand-in devices take the real device's offload settings (the very object: one shape).
    const vnet = offload !== null;
    const random = (n: number) => new Uint8Array(randomBytes(n));
    const udps = [native.udpOpen(0, true), native.udpOpen(0, true)];
    fds.push(udps[0].fd, udps[1].fd);
    const pairs = [native.packetPair(), native.packetPair()];
    fds.push(...pairs[0], ...pairs[1]);
    // Lone packets (pings, the latency case) most of the time, bulk batches in between.
    const shapes: Array<{ count: number; len: number; tcp: boolean; unrouted?: boolean }> = [
      { count: 1, len: 84, tcp: false },
      { count: 1, len: 84, tcp: false },
      { count: 1, len: 84, tcp: false },
      { count: 1, len: 52, tcp: true },
      { count: 3, len: 1420, tcp: true },
      { count: 64, len: Math.min(1420, mtu), tcp: true },
      { count: 1, len: 56, tcp: false, unrouted: true },
    ];
    // Several sessions, each with a new partner: every handshake draws new random receiver
    // indexes, and V8 must see both kinds a 32-bit index comes in (a small integer below 2^31, a
    // heap number above), or the first real session whose index is of the other kind throws the
    // optimized code away again.
    for (let session = 0; session < SESSIONS && performance.now() - t0 < MAX_MS; session++) {
      const partner = makePartner(partnerConfig(nobleCrypto.generatePrivateKey(random), mtu));
      const nodes = [node, partner];
      // The node plays the client (it has the partner's Endpoint and initiates) in even sessions
      // and the server (no Endpoint: it learns where the partner is from its handshake) in odd
      // ones: the two roles leave the peer's objects in different shapes.
      const knower = session % 2;
      attached = [0, 1].map((i) => new Side(nodes[i].attach(pairs[i][0], offload, udps[i], [peerOf(i, nodes[1 - i].publicKey, udps[1 - i].port, i === knower)]), pairs[i][1], vnet, i === 1));
      const sides = attached;
      for (let round = 0; sides[0].delivered + sides[1].delivered < TARGET_PACKETS / SESSIONS && performance.now() - t0 < MAX_MS; round++) {
        const shape = shapes[round % shapes.length];
        const from = round % 7 === 6 && round > 0 ? 1 - knower : knower; // mostly the client starts, sometimes the server
        const v6 = round % 5 === 4;
        sides[from].write(Array.from({ length: shape.count }, () => packet(from, v6, shape.len, shape.tcp, shape.unrouted)));
        // Let the packets and everything they cause (handshake, answers) cross: loopback
        // delivers within the send, so each step moves everything one hop.
        for (let step = 0; step < (round === 0 ? 16 : 6); step++) {
          for (const s of sides) {
            s.node.tunReadable();
            s.node.udpReadable();
            s.read();
          }
        }
        if (round % 50 === 49) for (const s of sides) s.node.timer();
        // Nothing crosses (no loopback in this namespace, say): stop rather than spin to the cap.
        if (round === 20 && sides[0].delivered + sides[1].delivered === 0) break;
      }
      const crossed = sides[0].delivered + sides[1].delivered;
      packets += crossed;
      for (const s of sides) s.node.detach();
      attached = [];
      if (crossed === 0) break;
    }
    return packets > 0 ? { packets, ms: performance.now() - t0 } : { packets, ms: performance.now() - t0, error: 'no packet crossed the loopback' };
  } catch (e) {
    return { packets, ms: performance.now() - t0, error: (e as Error).message };
  } finally {
    for (const s of attached) s.node.detach();
    for (const fd of fds) native.closeFd(fd);
  }
}
