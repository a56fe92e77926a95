/**
 * The data path: the batch pump between the fds and the engine. This is the hot path.
 *
 *   TUN fd ──readable──▶ tunReadBatch ──▶ engine.handleTunBatch ──▶ sink.send ──▶ udpSendBatch
 *   UDP fd ──readable──▶ udpRecvBatch ──▶ engine.handleDatagramBatch ──▶ sink.writeTun ──▶ tunWriteBatch
 *
 * Everything moves in batches of up to BATCH packets: one native call reads or writes a batch,
 * and the engine seals or opens each peer's share of it with one AEAD call. Nothing is copied on
 * the data path: TUN packets are read into slots with room for the transport header and tag and
 * sealed there, and datagrams are opened where recvmmsg put them; the transmit lists just point
 * into those buffers. Only rare messages (handshakes, keepalives) are copied into a side arena.
 *
 * May touch: the TUN and UDP handles the runtime hands it (to read, write and send; it never opens
 * or closes an fd), the engine's batch entry points, the path table (to intern each datagram's
 * path), and the runtime's timer (re-armed after each readiness event). The engine's events go
 * straight to the handler the runtime gives; everything else the runtime does is elsewhere.
 */
import { TRANSPORT_HEADROOM, type Engine, type EngineEvent, type Sink } from '../core/engine.js';
import * as native from './native.js';
import type { PathTable, UdpPath } from './udp-path.js';

export const BATCH = 64;
const MAX_ROUNDS = 16;
/**
 * Handshake messages given their Noise work per turn of the event loop (handshake-gate.ts): about
 * 8 × 4 X25519, ~2 ms here, between reads of the socket; the rest wait for the next turn.
 */
const HANDSHAKE_SLICE = 8;
/** Batches read from the handshake socket per turn of the event loop (256 datagrams: well under 1 ms of triage). */
const HANDSHAKE_ROUNDS = 4;
/** KEYMESH_OFFLOAD=0 turns the TUN and UDP segmentation offloads off (for comparison and tests). */
export const OFFLOAD = process.env.KEYMESH_OFFLOAD !== '0';

/** What the pump uses of the runtime (the Runtime itself: one hidden class, monomorphic calls). */
export interface PumpHost {
  readonly engine: Engine;
  readonly paths: PathTable;
  now(): number;
  /** Keep the one timer armed for the engine's next deadline. */
  armTimer(): void;
}

export class Pump {
  tun: native.TunHandle | null = null;
  udp: native.UdpHandle | null = null;
  /** The engine's output: sealed datagrams and opened packets go to the queues below, events to the runtime. */
  readonly sink: Sink;
  private readonly slot: number;

  // TUN packets in: slot i holds a packet at i*slot + TRANSPORT_HEADROOM, sealed there in place
  private readonly tunIn: Uint8Array;
  private readonly tunInView: Uint8Array; // tunIn from TRANSPORT_HEADROOM on, for tunReadBatch
  private readonly tunInOffs = new Uint32Array(BATCH);
  private readonly tunInLens = new Uint32Array(BATCH);
  // datagrams in: slot i at i*slot, opened there in place
  private readonly udpIn: Uint8Array;
  private readonly udpInOffs = new Uint32Array(BATCH);
  private readonly udpInLens = new Uint32Array(BATCH);
  private readonly udpInAddrs = new Uint8Array(BATCH * 16);
  private readonly udpInPorts = new Uint16Array(BATCH);
  private readonly udpInLocals = new Uint8Array(BATCH * 16);
  private readonly udpInIfindexes = new Uint32Array(BATCH);
  private readonly udpInPaths: UdpPath[] = new Array(BATCH);
  // outgoing datagrams: sealed TUN packets (pointing into tunIn) and copies of everything else (in side)
  private readonly udpOut = new OutQueue(BATCH, true);
  private readonly udpOutSide = new OutQueue(BATCH, true);
  // outgoing TUN packets: opened datagrams (pointing into udpIn) and copies
  private readonly tunOut = new OutQueue(BATCH, false);
  private readonly tunOutSide = new OutQueue(BATCH, false);
  readonly counters = { udpSendShort: 0, tunWriteShort: 0, icmpTimeExceeded: 0, icmpTooBig: 0, icmpOther: 0 };
  // Offloads in use (native/offload.c): chosen once per fd, with the matching batch functions.
  udpOff = { gso: false, gro: false };
  private tunRead = native.tunReadBatch;
  private tunWrite = native.tunWriteBatch;
  private udpRecv = native.udpRecvBatch;
  private udpSend = native.udpSendBatch;
  private tunAgain = false;
  private udpAgain = false;
  private handshakesAgain = false;
  private tunWritten = false;

  constructor(
    private readonly rt: PumpHost,
    mtu: number,
    event: (e: EngineEvent) => void,
  ) {
    // One packet per slot, offloads or not: TSO super-packets and coalesced UDP receives are
    // staged inside the addon (64 KiB per fd) and handed over already split to MTU-sized packets.
    this.slot = Math.max(2048, (mtu + 256 + 63) & ~63);
    this.tunIn = new Uint8Array(BATCH * this.slot + TRANSPORT_HEADROOM);
    this.tunInView = this.tunIn.subarray(TRANSPORT_HEADROOM);
    this.udpIn = new Uint8Array(BATCH * this.slot);
    for (let i = 0; i < BATCH; i++) {
      this.tunInOffs[i] = i * this.slot + TRANSPORT_HEADROOM;
      this.udpInOffs[i] = i * this.slot;
    }
    this.udpOutSide.arena(this.slot);
    this.tunOutSide.arena(this.slot);
    this.sink = {
      send: (path, buf, off, len) => {
        const q = buf === this.tunIn ? this.udpOut : this.udpOutSide;
        if (q.full) this.flushUdp();
        q.push(buf, off, len, path as UdpPath);
      },
      sendTtl: (path, buf, off, len, ttl) => this.sendTtl(path as UdpPath, buf, off, len, ttl),
      writeTun: (buf, off, len) => {
        const q = buf === this.udpIn ? this.tunOut : this.tunOutSide;
        if (q.full) this.flushTun();
        q.push(buf, off, len, null);
      },
      event,
    };
  }

  /**
   * The TUN device (or, in the warm-up, what stands in for it) and the batch functions that fit
   * it. Handles are copied into plain objects of one shape, whoever made them (the addon, the
   * warm-up), so the data path sees one hidden class.
   */
  useTun(h: native.TunHandle): native.TunHandle {
    const tun = (this.tun = { fd: h.fd, name: h.name, offload: h.offload });
    // An IFF_VNET_HDR device carries a virtio header on every packet: only the vnet functions fit it.
    this.tunRead = h.offload ? native.tunReadBatchVnet : native.tunReadBatch;
    this.tunWrite = h.offload ? native.tunWriteBatchVnet : native.tunWriteBatch;
    return tun;
  }

  useUdp(u: native.UdpHandle): native.UdpHandle {
    const udp = (this.udp = { fd: u.fd, hsFd: u.hsFd ?? -1, port: u.port, family: u.family });
    this.useUdpOffload(udp);
    return udp;
  }

  /** UDP_SEGMENT / UDP_GRO on a (new) socket when the kernel and the addon have them. */
  private useUdpOffload(u: native.UdpHandle): void {
    this.udpOff = OFFLOAD && native.hasOffload() ? native.udpOffload(u.fd) : { gso: false, gro: false };
    this.udpRecv = this.udpOff.gro ? native.udpRecvBatchGro : native.udpRecvBatch;
    this.udpSend = this.udpOff.gso ? native.udpSendBatchGso : native.udpSendBatch;
  }

  /** Let go of both handles (their fds are the runtime's to close): nothing is read or sent after this. */
  release(): void {
    this.tun = this.udp = null;
  }

  onTunReadable(): void {
    this.tunAgain = false;
    if (!this.tun) return;
    // Stopped on a full batch: more may wait, and with offloads part of it can be segments
    // pending inside the addon, which epoll does not see. Come back after other I/O.
    if (this.drainTun() === BATCH && !this.tunAgain) {
      this.tunAgain = true;
      setImmediate(() => this.onTunReadable());
    }
    this.rt.armTimer();
  }

  onUdpReadable(): void {
    this.udpAgain = false;
    if (!this.udp) return;
    if (this.drainUdp() === BATCH && !this.udpAgain) {
      this.udpAgain = true; // as for TUN: coalesced receives may be pending in the addon
      setImmediate(() => this.onUdpReadable());
    }
    this.runHandshakes();
    // Writing to the TUN device often makes the kernel answer at once, in the write itself (an
    // ICMP echo reply, TCP ACKs): take those now rather than after another trip through epoll.
    if (this.tunWritten && this.tun) {
      this.tunWritten = false;
      if (this.drainTun() === BATCH && !this.tunAgain) {
        this.tunAgain = true;
        setImmediate(() => this.onTunReadable());
      }
    }
    this.rt.armTimer();
  }

  /**
   * The handshake socket is readable (udpOpen's splitHandshakes): at most HANDSHAKE_ROUNDS
   * batches per turn of the event loop, triaged and queued (handshake-gate.ts), then one slice of
   * their work. What is left stays in the socket (epoll reports it again next turn, after the
   * data) and, under a flood, the kernel drops from its full buffer: handshakes only.
   */
  onHandshakeReadable(): void {
    const hs = this.udp?.hsFd ?? -1;
    if (hs < 0) return;
    for (let round = 0; round < HANDSHAKE_ROUNDS; round++) {
      // no UDP_GRO on this socket: the plain batch read
      const n = native.udpRecvBatch(hs, this.udpIn, this.slot, this.udpInLens, this.udpInAddrs, this.udpInPorts, BATCH, this.udpInLocals, this.udpInIfindexes);
      if (n === 0) break;
      this.handleReceived(n);
      if (n < BATCH) break;
    }
    this.runHandshakes();
    this.rt.armTimer();
  }

  /** One slice of the queued handshakes; another turn of the event loop for the rest. */
  private runHandshakes(): void {
    this.handshakesAgain = false;
    if (!this.udp || this.rt.engine.pendingHandshakes === 0) return;
    const left = this.rt.engine.processHandshakes(this.rt.now(), HANDSHAKE_SLICE);
    this.flush();
    if (left > 0 && !this.handshakesAgain) {
      this.handshakesAgain = true;
      setImmediate(() => {
        this.runHandshakes();
        this.rt.armTimer();
      });
    }
  }

  /** Read, process and send TUN packets until drained (or MAX_ROUNDS batches); returns the last batch's size. */
  private drainTun(): number {
    let n = 0;
    for (let round = 0; round < MAX_ROUNDS && this.tun; round++) {
      // tunInView starts TRANSPORT_HEADROOM into tunIn, so packet i lands at tunInOffs[i].
      n = this.tunRead(this.tun.fd, this.tunInView, this.slot, this.tunInLens, BATCH);
      if (n === 0) break;
      this.rt.engine.handleTunBatch(this.tunIn, this.tunInOffs, this.tunInLens, n, this.rt.now());
      this.flush();
      if (n < BATCH) break;
    }
    return n;
  }

  /** Receive, process and deliver datagrams until drained (or MAX_ROUNDS batches); returns the last batch's size. */
  private drainUdp(): number {
    let n = 0;
    for (let round = 0; round < MAX_ROUNDS && this.udp; round++) {
      n = this.udpRecv(
        this.udp.fd,
        this.udpIn,
        this.slot,
        this.udpInLens,
        this.udpInAddrs,
        this.udpInPorts,
        BATCH,
        this.udpInLocals,
        this.udpInIfindexes,
      );
      if (n === 0) break;
      this.handleReceived(n);
      if (n < BATCH) break;
    }
    return n;
  }

  /** The n datagrams just read into udpIn: their paths, then the engine, then what it queued goes out. */
  private handleReceived(n: number): void {
    // Each datagram's path includes where it arrived (our address and interface): replies and
    // traffic on that path leave the same way.
    const paths = this.rt.paths;
    for (let i = 0; i < n; i++) {
      this.udpInPaths[i] = paths.get(this.udpInAddrs, i * 16, this.udpInPorts[i], this.udpInLocals, i * 16, this.udpInIfindexes[i]);
    }
    this.rt.engine.handleDatagramBatch(this.udpIn, this.udpInOffs, this.udpInLens, this.udpInPaths, n, this.rt.now());
    this.flush();
  }

  /** One datagram with its own TTL (a NAT opener): whatever is queued goes first, then it, alone. */
  private sendTtl(path: UdpPath, buf: Uint8Array, off: number, len: number, ttl: number): void {
    this.flushUdp();
    if (!this.udp) return;
    const q = this.udpOutSide;
    q.push(buf, off, len, path);
    native.udpSetTtl(this.udp.fd, ttl);
    try {
      const sent = native.udpSendBatch(this.udp.fd, q.buf!, q.offs, q.lens, q.addrs, q.ports, 1, q.locals, q.ifindexes);
      if (sent < 1) this.counters.udpSendShort++;
    } finally {
      native.udpSetTtl(this.udp.fd, -1);
      q.clear();
    }
  }

  /**
   * A socket reported an error (epoll's POLLERR): take the ICMP reports of both sockets for the
   * engine. An ICMP error is delivered to whichever socket of the SO_REUSEPORT pair the 4-tuple
   * hashes to (no BPF program steers errors), so reports about what the data socket sent can
   * arrive on the handshake socket.
   */
  onUdpErrors(): void {
    if (!this.udp) return;
    this.takeIcmpReports(this.udp.fd);
    const hs = this.udp.hsFd ?? -1;
    if (hs >= 0) this.takeIcmpReports(hs);
    this.flush();
  }

  private takeIcmpReports(fd: number): void {
    for (let round = 0; round < 16; round++) {
      const reports = native.udpErrors(fd);
      for (const r of reports) {
        if (native.isTimeExceeded(r)) {
          this.counters.icmpTimeExceeded++;
          this.rt.engine.handleTimeExceeded(r.addr, r.port, r.offender, r.payload, this.rt.now());
        } else if (native.isTooBig(r)) {
          this.counters.icmpTooBig++;
          this.rt.engine.handlePacketTooBig(r.addr, r.port, r.info, r.payload, this.rt.now());
        } else if (native.isPortUnreachable(r)) {
          this.counters.icmpOther++;
          this.rt.engine.handlePortUnreachable(r.addr, r.port, r.offender, r.payload, this.rt.now());
        } else this.counters.icmpOther++;
      }
      if (reports.length < 64) break;
    }
  }

  private flushUdp(): void {
    for (const q of [this.udpOutSide, this.udpOut]) {
      if (q.count === 0) continue;
      if (this.udp) {
        const sent = this.udpSend(this.udp.fd, q.buf!, q.offs, q.lens, q.addrs, q.ports, q.count, q.locals, q.ifindexes);
        if (sent < q.count) this.counters.udpSendShort += q.count - sent;
      }
      q.clear();
    }
  }

  private flushTun(): void {
    for (const q of [this.tunOutSide, this.tunOut]) {
      if (q.count === 0) continue;
      if (this.tun) {
        const written = this.tunWrite(this.tun.fd, q.buf!, q.offs, q.lens, q.count);
        this.tunWritten = true;
        if (written < q.count) this.counters.tunWriteShort += q.count - written;
      }
      q.clear();
    }
  }

  /** Hand everything the engine queued to the kernel: TUN writes first, then UDP sends. */
  flush(): void {
    this.flushTun();
    this.flushUdp();
  }
}

/**
 * A batch of outgoing packets for one native call: either references into one buffer (zero-copy)
 * or, with an arena, copies of packets from anywhere.
 */
class OutQueue {
  buf: Uint8Array | null = null;
  private own: Uint8Array | null = null;
  private slot = 0;
  readonly offs: Uint32Array;
  readonly lens: Uint32Array;
  readonly addrs: Uint8Array;
  readonly ports: Uint16Array;
  readonly locals: Uint8Array;
  readonly ifindexes: Uint32Array;
  count = 0;

  constructor(
    private readonly cap: number,
    withAddrs: boolean,
  ) {
    this.offs = new Uint32Array(cap);
    this.lens = new Uint32Array(cap);
    this.addrs = new Uint8Array(withAddrs ? cap * 16 : 0);
    this.ports = new Uint16Array(withAddrs ? cap : 0);
    this.locals = new Uint8Array(withAddrs ? cap * 16 : 0);
    this.ifindexes = new Uint32Array(withAddrs ? cap : 0);
  }

  /** Give the queue its own arena: pushed packets are then copied into it. */
  arena(slot: number): void {
    this.slot = slot;
    this.own = new Uint8Array(this.cap * slot);
    this.buf = this.own;
  }

  get full(): boolean {
    return this.count === this.cap;
  }

  push(buf: Uint8Array, off: number, len: number, path: UdpPath | null): void {
    const k = this.count;
    if (this.own) {
      if (len > this.slot) return; // cannot happen: nothing larger than a slot is produced
      this.own.set(buf.subarray(off, off + len), k * this.slot);
      this.offs[k] = k * this.slot;
    } else {
      this.buf = buf; // all references in one queue point into the same buffer
      this.offs[k] = off;
    }
    this.lens[k] = len;
    if (path) {
      this.addrs.set(path.addr16, k * 16);
      this.ports[k] = path.port;
      this.locals.set(path.local16, k * 16);
      this.ifindexes[k] = path.ifindex;
    }
    this.count = k + 1;
  }

  clear(): void {
    this.count = 0;
  }
}
