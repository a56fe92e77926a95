/**
 * Typed access to the native addon (native/keymesh.c; see native-notes/). The addon owns no
 * state that matters: JavaScript passes in every buffer and gets counts back.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** What TUNSETOFFLOAD granted (IFF_VNET_HDR is on whenever this is not null). */
export interface TunOffload {
  vnetHdr: boolean;
  csum: boolean;
  tso4: boolean;
  tso6: boolean;
  ecn: boolean;
  uso: boolean;
}
export interface TunHandle {
  fd: number;
  name: string;
  /** null: a plain TUN device (no virtio header); read/write it with tunReadBatch/tunWriteBatch. */
  offload: TunOffload | null;
}
export interface UdpHandle {
  fd: number;
  /** With udpOpen's splitHandshakes: the socket the kernel steers every non-data datagram to (-1: none, fd gets all). */
  hsFd?: number;
  port: number;
  family: 4 | 6;
}

export interface OffloadCounters {
  tunSuperRead: number;
  tunSegmentsRead: number;
  tunCsumCompleted: number;
  tunBad: number;
  tunTooBig: number;
  tunSuperWritten: number;
  tunSegmentsWritten: number;
  tunWriteErrors: number;
  udpGsoSends: number;
  udpGsoSegments: number;
  udpGsoFallbacks: number;
  udpSendErrors: number;
  udpGroReceives: number;
  udpGroSegments: number;
  udpTruncated: number;
  udpSoErrors: number;
}

type RecvBatch = (fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, addrs: Uint8Array, ports: Uint16Array, maxPackets: number, locals?: Uint8Array, ifindexes?: Uint32Array) => number;
type SendBatch = (fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, ports: Uint16Array, count: number, locals?: Uint8Array, ifindexes?: Uint32Array) => number;

interface Addon {
  tunOpen(name: string, options?: { offload?: boolean }): TunHandle;
  tunReadBatch(fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, maxPackets: number): number;
  tunWriteBatch(fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  udpOpen(port: number, loopbackOnly?: boolean, splitHandshakes?: boolean): UdpHandle;
  packetPair(): [number, number];
  udpSetMark(fd: number, mark: number): void;
  udpSetTtl(fd: number, ttl: number): void;
  routeMtu(addr16: Uint8Array, local16?: Uint8Array, ifindex?: number): number;
  udpErrors(fd: number): IcmpReport[];
  udpRecvBatch(fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, addrs: Uint8Array, ports: Uint16Array, maxPackets: number, locals?: Uint8Array, ifindexes?: Uint32Array): number;
  udpSendBatch(fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, ports: Uint16Array, count: number, locals?: Uint8Array, ifindexes?: Uint32Array): number;
  pollStart(fd: number, onReadable: (error?: 'EPOLLERR' | 'SOERROR') => void): number;
  pollStop(id: number): void;
  closeFd(fd: number): void;
  counters(): { tunWriteErrors: number; udpSendErrors: number; udpTruncated: number; udpSoErrors: number };
  // offload.c (absent from an addon built before it)
  tunReadBatchVnet?: (fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, maxPackets: number) => number;
  tunWriteBatchVnet?: (fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number) => number;
  udpOffload?: (fd: number) => { gso: boolean; gro: boolean };
  udpRecvBatchGro?: RecvBatch;
  udpSendBatchGso?: SendBatch;
  offloadSplit?: (vnetHeader: Uint8Array, packet: Uint8Array, slotSize?: number) => Uint8Array[] | null;
  offloadCoalesce?: (packets: Uint8Array[]) => Array<{ vnet: Uint8Array; packet: Uint8Array; segments: number }>;
  offloadCounters?: () => OffloadCounters;
}

/**
 * Where the built addon lives: build/Release/keymesh_native.node in the package root, found by
 * walking up from this module (src/io/ when run from source, dist/src/io/ when built). Child
 * processes that must load the addon without TypeScript (tests in a network namespace) use it too.
 */
export function addonPath(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'build', 'Release', 'keymesh_native.node');
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error('the keymesh native addon is not built: run `npm ci` (or `npm run build:native`) in the keymesh directory');
}

function load(): Addon {
  return createRequire(import.meta.url)(addonPath()) as Addon;
}

let addon: Addon | null = null;
function a(): Addon {
  return (addon ??= load());
}

/**
 * Open /dev/net/tun as interface `name` (IFF_TUN | IFF_NO_PI, non-blocking). Errors carry `code`:
 * ENOTUN, EPERM, EBUSY, EINVAL. With `{ offload: true }` (and an addon that has offload.c) the
 * device gets IFF_VNET_HDR and whatever TUNSETOFFLOAD grants (`handle.offload`); such a device
 * must be read and written with tunReadBatchVnet / tunWriteBatchVnet only.
 */
export const tunOpen = (name: string, options?: { offload?: boolean }): TunHandle => {
  const h = options?.offload && hasOffload() ? a().tunOpen(name, { offload: true }) : a().tunOpen(name);
  return { fd: h.fd, name: h.name, offload: h.offload ?? null };
};
/** Whether the addon has the offload functions (offload.c). */
export const hasOffload = (): boolean => typeof a().tunReadBatchVnet === 'function' && typeof a().udpOffload === 'function';
/** Read up to maxPackets packets; packet i lands at buf[i*slotSize], length in lengths[i]. Returns the count. */
export const tunReadBatch = (fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, maxPackets: number): number =>
  a().tunReadBatch(fd, buf, slotSize, lengths, maxPackets);
/**
 * Write packets buf[offsets[i]..+lengths[i]]. Returns how many the kernel accepted. A packet the
 * kernel refuses (EINVAL: not IPv4/IPv6, ...) is skipped and counted in counters().tunWriteErrors;
 * EAGAIN stops the batch early, so `written < count` without a counter change means "retry later".
 */
export const tunWriteBatch = (fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number =>
  a().tunWriteBatch(fd, buf, offsets, lengths, count);
/** A dual-stack UDP socket on `port` (0: the kernel picks). Errors carry `code`, e.g. EADDRINUSE. */
/**
 * With splitHandshakes, two sockets share the port and the kernel steers by message type (a BPF
 * program on the SO_REUSEPORT group): transport data to `fd`, everything else to `hsFd`, so a
 * handshake flood never fills the buffer data arrives in (native-notes/README.md).
 */
export const udpOpen = (port: number, loopbackOnly = false, splitHandshakes = false): UdpHandle => a().udpOpen(port, loopbackOnly, splitHandshakes);
/** A connected pair of AF_UNIX SOCK_SEQPACKET sockets: one message per write and per read, as on a TUN device. */
export const packetPair = (): [number, number] => a().packetPair();
/** SO_MARK: outgoing tunnel packets carry this firewall mark (0 clears it), for policy routing. */
export const udpSetMark = (fd: number, mark: number): void => a().udpSetMark(fd, mark);

/** IP TTL / IPv6 hop limit for what the socket sends from now on (1–255; -1: the system default). */
export const udpSetTtl = (fd: number, ttl: number): void => a().udpSetTtl(fd, ttl);
/**
 * The MTU the kernel knows for the route to addr16 (IPv4-mapped for IPv4) from the local end
 * local16 / ifindex (all zero / 0: as routing chooses): the interface's, or a smaller path MTU an
 * ICMP message taught it. 0 when there is no route. Sends nothing.
 */
export const routeMtu = (addr16: Uint8Array, local16?: Uint8Array, ifindex = 0): number => a().routeMtu(addr16, local16 ?? new Uint8Array(16), ifindex);

/** One ICMP error about a datagram we sent, from the socket's error queue (IP_RECVERR). */
export interface IcmpReport {
  /** The datagram's destination (16 bytes, IPv4-mapped) and port. */
  addr: Uint8Array;
  port: number;
  /** The router that reported it, or null. */
  offender: Uint8Array | null;
  /** SO_EE_ORIGIN_*: 2 ICMP, 3 ICMPv6, 1 local. */
  origin: number;
  type: number;
  code: number;
  /** The ICMP's extra field (a next-hop MTU for "fragmentation needed" / "packet too big"). */
  info: number;
  /** The first bytes (up to 16) of the reported datagram's payload, as far as the ICMP quoted it. */
  payload: Uint8Array;
}

/** Drain up to 64 entries of the socket's error queue (call again while it returns 64). */
export const udpErrors = (fd: number): IcmpReport[] => a().udpErrors(fd);

/**
 * "Too big": ICMP "fragmentation needed" (type 3 code 4), ICMPv6 "packet too big" (type 2), or a
 * local EMSGSIZE (the interface's MTU); `info` is the MTU in each case.
 */
export function isTooBig(r: IcmpReport): boolean {
  return ((r.origin === 2 && r.type === 3 && r.code === 4) || (r.origin === 3 && r.type === 2) || r.origin === 1) && r.info > 0;
}

/** "Port unreachable": ICMP type 3 code 3, ICMPv6 type 1 code 4. */
export function isPortUnreachable(r: IcmpReport): boolean {
  return (r.origin === 2 && r.type === 3 && r.code === 3) || (r.origin === 3 && r.type === 1 && r.code === 4);
}

/** "Time exceeded" in transit: ICMP type 11 code 0, ICMPv6 type 3 code 0. */
export function isTimeExceeded(r: IcmpReport): boolean {
  return ((r.origin === 2 && r.type === 11) || (r.origin === 3 && r.type === 3)) && r.code === 0;
}
/**
 * recvmmsg. Datagram i lands at buf[i*slotSize], its length in lengths[i], its source address at
 * addrs[i*16..+16] (IPv6, IPv4 as ::ffff:a.b.c.d) and port in ports[i]. Returns the count, 0 when
 * nothing is queued. Datagrams longer than slotSize are dropped (counters().udpTruncated); a
 * queued socket error is consumed and counted (counters().udpSoErrors). With `locals` and
 * `ifindexes`, each datagram's local end is reported too: the address it was sent to (16 bytes)
 * and the interface it arrived on (IP_PKTINFO / IPV6_PKTINFO).
 */
export const udpRecvBatch = (
  fd: number,
  buf: Uint8Array,
  slotSize: number,
  lengths: Uint32Array,
  addrs: Uint8Array,
  ports: Uint16Array,
  maxPackets: number,
  locals?: Uint8Array,
  ifindexes?: Uint32Array,
): number =>
  locals && ifindexes
    ? a().udpRecvBatch(fd, buf, slotSize, lengths, addrs, ports, maxPackets, locals, ifindexes)
    : a().udpRecvBatch(fd, buf, slotSize, lengths, addrs, ports, maxPackets);
/**
 * sendmmsg. Returns how many were sent. A datagram the kernel refuses (ENETUNREACH, EPERM, EINVAL
 * for port 0, an IPv6 destination on an IPv4-only socket) is skipped and counted in
 * counters().udpSendErrors; the rest of the batch still goes. A full socket buffer (EAGAIN,
 * ENOBUFS) stops early: the unsent tail is the caller's to retry or drop (the runtime drops it,
 * as a router would). With `locals` and `ifindexes`, datagram i leaves from source address
 * locals[i*16..] through interface ifindexes[i] (all zero: routing chooses) — the path's local end.
 */
export const udpSendBatch = (
  fd: number,
  buf: Uint8Array,
  offsets: Uint32Array,
  lengths: Uint32Array,
  addrs: Uint8Array,
  ports: Uint16Array,
  count: number,
  locals?: Uint8Array,
  ifindexes?: Uint32Array,
): number =>
  locals && ifindexes
    ? a().udpSendBatch(fd, buf, offsets, lengths, addrs, ports, count, locals, ifindexes)
    : a().udpSendBatch(fd, buf, offsets, lengths, addrs, ports, count);
/**
 * Call onReadable() whenever fd is readable (uv_poll on Node's loop); the callback then drains
 * with the batch reads. Returns a poll id for pollStop. On a socket, an error condition (POLLERR
 * from a queued ICMP error) is cleared and counted (counters().udpSoErrors), polling goes on and
 * onReadable('SOERROR') is called: the caller drains the error queue (udpErrors), or epoll
 * reports it again at once. On a non-socket fd an error condition cannot be cleared (a TUN fd whose interface was deleted):
 * the poll stops and onReadable('EPOLLERR') is called once. An active poll keeps the process
 * alive; a stopped one does not. One poll per fd (a second pollStart on it throws EEXIST).
 */
export const pollStart = (fd: number, onReadable: (error?: 'EPOLLERR' | 'SOERROR') => void): number => a().pollStart(fd, onReadable);
/** Stop and close a poll; unknown or already stopped ids are ignored. */
export const pollStop = (id: number): void => a().pollStop(id);
/** Stop any poll on fd, then close it. Closing a TUN fd removes the (non-persistent) interface. */
export const closeFd = (fd: number): void => a().closeFd(fd);
/** Process-wide drop counters kept by the addon (numbers, exact up to 2^53). */
export const counters = (): { tunWriteErrors: number; udpSendErrors: number; udpTruncated: number; udpSoErrors: number } =>
  a().counters();

// ───────────────────────── offloads (native/offload.c) ─────────────────────────

/**
 * tunReadBatch for an IFF_VNET_HDR device: TSO/USO super-packets come back split into segments
 * (packet i at buf[i*slotSize], lengths[i]) with lengths, IDs, sequence numbers, flags and
 * checksums fixed; segments that do not fit stay pending in the addon for the next call.
 */
export const tunReadBatchVnet = (fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, maxPackets: number): number =>
  a().tunReadBatchVnet!(fd, buf, slotSize, lengths, maxPackets);
/** tunWriteBatch for an IFF_VNET_HDR device: same-flow TCP segments are coalesced (GRO). Returns packets written. */
export const tunWriteBatchVnet = (fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number =>
  a().tunWriteBatchVnet!(fd, buf, offsets, lengths, count);
/** Turn UDP_GRO on for a socket and ask whether UDP_SEGMENT exists. Once gro is true, receive with udpRecvBatchGro only. */
export const udpOffload = (fd: number): { gso: boolean; gro: boolean } => a().udpOffload!(fd);
/** udpRecvBatch for a UDP_GRO socket (same contract; coalesced receives are cut back into datagrams). */
export const udpRecvBatchGro: RecvBatch = (fd, buf, slotSize, lengths, addrs, ports, maxPackets, locals, ifindexes) =>
  locals && ifindexes
    ? a().udpRecvBatchGro!(fd, buf, slotSize, lengths, addrs, ports, maxPackets, locals, ifindexes)
    : a().udpRecvBatchGro!(fd, buf, slotSize, lengths, addrs, ports, maxPackets);
/** udpSendBatch with UDP_SEGMENT (same contract): runs of equal-length datagrams to one destination go as one message. */
export const udpSendBatchGso: SendBatch = (fd, buf, offsets, lengths, addrs, ports, count, locals, ifindexes) =>
  locals && ifindexes
    ? a().udpSendBatchGso!(fd, buf, offsets, lengths, addrs, ports, count, locals, ifindexes)
    : a().udpSendBatchGso!(fd, buf, offsets, lengths, addrs, ports, count);
/** Pure (for tests): what tunReadBatchVnet makes of one read (virtio header + packet); null = dropped (counted). */
export const offloadSplit = (vnetHeader: Uint8Array, packet: Uint8Array, slotSize?: number): Uint8Array[] | null =>
  slotSize === undefined ? a().offloadSplit!(vnetHeader, packet) : a().offloadSplit!(vnetHeader, packet, slotSize);
/** Pure (for tests): the writes tunWriteBatchVnet would make of these packets, in order. */
export const offloadCoalesce = (packets: Uint8Array[]): Array<{ vnet: Uint8Array; packet: Uint8Array; segments: number }> =>
  a().offloadCoalesce!(packets);
/** Process-wide offload counters (segments split and coalesced, GSO sends, GRO receives, drops). */
export const offloadCounters = (): OffloadCounters | null => (hasOffload() ? a().offloadCounters!() : null);
