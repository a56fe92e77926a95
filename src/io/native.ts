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
  udpRecvBatch(fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, addrs: Uint8Array, ports: Uint16Array, maxPackets: number): number;
  udpSendBatch(fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, ports: Uint16Array, count: number): number;
  pollStart(fd: number, onReadable: () => void): number;
  pollStop(id: number): void;
  closeFd(fd: number): void;
  counters(): { tunWriteErrors: number; udpSendErrors: number; udpTruncated: number; udpSoErrors: number };
}

function load(): Addon {
  // From src/io/ (tests) or dist/src/io/ (built): walk up to the package root holding build/.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'build', 'Release', 'keymesh_native.node');
    if (existsSync(candidate)) return createRequire(import.meta.url)(candidate) as Addon;
    dir = path.dirname(dir);
  }
  throw new Error('the keymesh native addon is not built: run `npm ci` (or `npm run build:native`) in the keymesh directory');
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
/** Write packets buf[offsets[i]..+lengths[i]]; a packet the kernel refuses is skipped and counted. Returns how many were written. */
export const tunWriteBatch = (fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number =>
  a().tunWriteBatch(fd, buf, offsets, lengths, count);
/** A dual-stack UDP socket on `port` (0: the kernel picks). Errors carry `code`, e.g. EADDRINUSE. */
export const udpOpen = (port: number): UdpHandle => a().udpOpen(port);
/** SO_MARK: outgoing tunnel packets carry this firewall mark (0 clears it), for policy routing. */
export const udpSetMark = (fd: number, mark: number): void => a().udpSetMark(fd, mark);
/** recvmmsg: datagram i at buf[i*slotSize], source address (16 bytes, IPv4-mapped) at addrs[i*16], port in ports[i]. */
export const udpRecvBatch = (
  fd: number,
  buf: Uint8Array,
  slotSize: number,
  lengths: Uint32Array,
  addrs: Uint8Array,
  ports: Uint16Array,
  maxPackets: number,
): number => a().udpRecvBatch(fd, buf, slotSize, lengths, addrs, ports, maxPackets);
/** sendmmsg: returns how many were sent; a failing datagram is skipped and counted; a full socket buffer stops early. */
export const udpSendBatch = (
  fd: number,
  buf: Uint8Array,
  offsets: Uint32Array,
  lengths: Uint32Array,
  addrs: Uint8Array,
  ports: Uint16Array,
  count: number,
): number => a().udpSendBatch(fd, buf, offsets, lengths, addrs, ports, count);
/** Call onReadable whenever fd is readable (uv_poll on Node's loop). Survives POLLERR. */
export const pollStart = (fd: number, onReadable: () => void): number => a().pollStart(fd, onReadable);
export const pollStop = (id: number): void => a().pollStop(id);
export const closeFd = (fd: number): void => a().closeFd(fd);
export const counters = () => a().counters();
