/**
 * Typed access to the native addon (native/keymesh.c; see native-notes/). The addon owns no
 * state that matters: JavaScript passes in every buffer and gets counts back.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface TunHandle {
  fd: number;
  name: string;
}
export interface UdpHandle {
  fd: number;
  port: number;
  family: 4 | 6;
}

interface Addon {
  tunOpen(name: string): TunHandle;
  tunReadBatch(fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, maxPackets: number): number;
  tunWriteBatch(fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  udpOpen(port: number): UdpHandle;
  udpSetMark(fd: number, mark: number): void;
  udpRecvBatch(fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, addrs: Uint8Array, ports: Uint16Array, maxPackets: number, locals?: Uint8Array, ifindexes?: Uint32Array): number;
  udpSendBatch(fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, ports: Uint16Array, count: number, locals?: Uint8Array, ifindexes?: Uint32Array): number;
  pollStart(fd: number, onReadable: (error?: 'EPOLLERR') => void): number;
  pollStop(id: number): void;
  closeFd(fd: number): void;
  counters(): { tunWriteErrors: number; udpSendErrors: number; udpTruncated: number; udpSoErrors: number };
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

/** Open /dev/net/tun as interface `name` (IFF_TUN | IFF_NO_PI, non-blocking). Errors carry `code`: ENOTUN, EPERM, EBUSY, EINVAL. */
export const tunOpen = (name: string): TunHandle => a().tunOpen(name);
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
export const udpOpen = (port: number): UdpHandle => a().udpOpen(port);
/** SO_MARK: outgoing tunnel packets carry this firewall mark (0 clears it), for policy routing. */
export const udpSetMark = (fd: number, mark: number): void => a().udpSetMark(fd, mark);
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
 * from a queued ICMP error) is cleared and counted (counters().udpSoErrors) and polling goes on.
 * On a non-socket fd an error condition cannot be cleared (a TUN fd whose interface was deleted):
 * the poll stops and onReadable('EPOLLERR') is called once. An active poll keeps the process
 * alive; a stopped one does not. One poll per fd (a second pollStart on it throws EEXIST).
 */
export const pollStart = (fd: number, onReadable: (error?: 'EPOLLERR') => void): number => a().pollStart(fd, onReadable);
/** Stop and close a poll; unknown or already stopped ids are ignored. */
export const pollStop = (id: number): void => a().pollStop(id);
/** Stop any poll on fd, then close it. Closing a TUN fd removes the (non-persistent) interface. */
export const closeFd = (fd: number): void => a().closeFd(fd);
/** Process-wide drop counters kept by the addon (numbers, exact up to 2^53). */
export const counters = (): { tunWriteErrors: number; udpSendErrors: number; udpTruncated: number; udpSoErrors: number } =>
  a().counters();
