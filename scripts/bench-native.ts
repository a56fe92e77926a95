/**
 * Micro-benchmark of the native addon's UDP batches against node:dgram, on loopback, in this
 * process. Build first (`npm run build`), then `node dist/scripts/bench-native.js`.
 *
 * What it measures, per datagram of SIZE bytes:
 *   - native: wall time inside udpSendBatch (sendmmsg, batches of BATCH) and inside udpRecvBatch
 *     (recvmmsg) draining the receiving socket right after each send batch;
 *   - native with offloads: the same with udpSendBatchGso (UDP_SEGMENT: the batch is one message)
 *     and udpRecvBatchGro (UDP_GRO: loopback keeps the GSO packet whole; the addon cuts it up);
 *   - dgram: wall time of a round of BATCH socket.send() calls plus the 'message' events that
 *     deliver them to another dgram socket (send and receive cannot be told apart there).
 * Loopback delivers inside the sending syscall, so the kernel half of receiving is counted in the
 * send figure and no packet is in flight between the two; compare the send+recv sums.
 */
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import * as native from '../src/io/native.js';

const SIZE = 1420;
const BATCH = 64;
const DURATION_MS = 1000;

function benchNative(offload = false): { sendUs: number; recvUs: number; packets: number; dropped: number } {
  const tx = native.udpOpen(0);
  const rx = native.udpOpen(0);
  if (offload) {
    native.udpOffload(tx.fd);
    native.udpOffload(rx.fd);
  }
  const send = offload ? native.udpSendBatchGso : native.udpSendBatch;
  const recv = offload ? native.udpRecvBatchGro : native.udpRecvBatch;
  const slot = 2048;
  const out = new Uint8Array(BATCH * SIZE).fill(0xab);
  const offs = new Uint32Array(BATCH).map((_, i) => i * SIZE);
  const lens = new Uint32Array(BATCH).fill(SIZE);
  const addrs = new Uint8Array(16 * BATCH);
  const ports = new Uint16Array(BATCH).fill(rx.port);
  for (let i = 0; i < BATCH; i++) addrs.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1], i * 16);
  const inBuf = new Uint8Array(BATCH * slot);
  const inLens = new Uint32Array(BATCH);
  const inAddrs = new Uint8Array(16 * BATCH);
  const inPorts = new Uint16Array(BATCH);
  let sendMs = 0;
  let recvMs = 0;
  let sent = 0;
  let received = 0;
  const end = performance.now() + DURATION_MS;
  while (performance.now() < end) {
    const t0 = performance.now();
    sent += send(tx.fd, out, offs, lens, addrs, ports, BATCH);
    const t1 = performance.now();
    let n: number;
    do {
      n = recv(rx.fd, inBuf, slot, inLens, inAddrs, inPorts, BATCH);
      received += n;
    } while (n === BATCH);
    recvMs += performance.now() - t1;
    sendMs += t1 - t0;
  }
  native.closeFd(tx.fd);
  native.closeFd(rx.fd);
  return { sendUs: (sendMs * 1000) / sent, recvUs: (recvMs * 1000) / Math.max(received, 1), packets: received, dropped: sent - received };
}

async function benchDgram(): Promise<{ roundUs: number; packets: number }> {
  const tx = dgram.createSocket('udp4');
  const rx = dgram.createSocket('udp4');
  await new Promise<void>((r) => rx.bind(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => tx.bind(0, '127.0.0.1', () => r()));
  const port = rx.address().port;
  const payload = Buffer.alloc(SIZE, 0xab);
  let received = 0;
  let waiting: (() => void) | null = null;
  let target = 0;
  rx.on('message', () => {
    received++;
    if (received >= target && waiting) {
      const w = waiting;
      waiting = null;
      w();
    }
  });
  const t0 = performance.now();
  while (performance.now() - t0 < DURATION_MS) {
    target = received + BATCH;
    const done = new Promise<void>((r) => (waiting = r));
    for (let i = 0; i < BATCH; i++) tx.send(payload, port, '127.0.0.1');
    // Loopback can drop under a burst; do not wait forever for a lost datagram.
    await Promise.race([done, new Promise((r) => setTimeout(r, 50))]);
  }
  const ms = performance.now() - t0;
  tx.close();
  rx.close();
  return { roundUs: (ms * 1000) / received, packets: received };
}

const n = benchNative();
const g = native.hasOffload() ? benchNative(true) : null;
const d = await benchDgram();
console.log(`UDP on loopback, ${SIZE}-byte datagrams, batches of ${BATCH}, ${DURATION_MS} ms each:`);
console.log(`  native  sendmmsg  ${n.sendUs.toFixed(2)} µs/datagram`);
console.log(`  native  recvmmsg  ${n.recvUs.toFixed(2)} µs/datagram   (${n.packets} datagrams, ${n.dropped} not received)`);
console.log(`  native  send+recv ${(n.sendUs + n.recvUs).toFixed(2)} µs/datagram`);
if (g) {
  console.log(`  native  UDP_SEGMENT ${g.sendUs.toFixed(2)} µs/datagram`);
  console.log(`  native  UDP_GRO     ${g.recvUs.toFixed(2)} µs/datagram   (${g.packets} datagrams, ${g.dropped} not received)`);
  console.log(`  native  send+recv ${(g.sendUs + g.recvUs).toFixed(2)} µs/datagram with offloads`);
}
console.log(`  dgram   send+recv ${d.roundUs.toFixed(2)} µs/datagram   (${d.packets} datagrams, includes event-loop turns)`);
console.log(`  counters: ${JSON.stringify(native.counters())}`);
