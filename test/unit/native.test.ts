/**
 * The native addon (native/keymesh.c) against the real kernel.
 *
 *   UDP (this process, loopback, no root needed)
 *     node:dgram udp4 ──┐                        ┌── udpRecvBatch (::ffff:127.0.0.1)
 *     node:dgram udp6 ──┴─► udpOpen [::]:port ───┴── udpRecvBatch (::1)     … and udpSendBatch back
 *
 *   TUN (a child process inside a fresh network namespace km-nt-<random>, root only)
 *     dgram ─► 10.x.y.2 ─► route via tun ─► tunReadBatch
 *     tunWriteBatch(crafted IPv4/UDP to 10.x.y.1) ─► kernel ─► dgram bound on 10.x.y.1
 *
 * Child processes load the addon directly (they run plain JavaScript), so their results come back
 * as one JSON line on stdout and are asserted here.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as native from '../../src/io/native.js';

const isRoot = process.getuid?.() === 0;
const hasIp = spawnSync('ip', ['-V']).status === 0;
const hasPython = spawnSync('python3', ['--version']).status === 0;
const tunSkip = !isRoot ? 'not root' : !hasIp ? 'iproute2 (ip) is not installed' : null;
if (tunSkip) console.warn(`native TUN tests skipped: ${tunSkip} (they create a network namespace and a TUN device)`);

const SLOT = 2048;
const MAX = 256;

function until(pred: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (pred()) resolve();
      else if (Date.now() > end) reject(new Error(`condition not met within ${ms} ms`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function mapped4(a: number, b: number, c: number, d: number): Uint8Array {
  const x = new Uint8Array(16);
  x[10] = x[11] = 0xff;
  x.set([a, b, c, d], 12);
  return x;
}
const LOOP6 = (() => {
  const x = new Uint8Array(16);
  x[15] = 1;
  return x;
})();
const hex = (u: Uint8Array) => Buffer.from(u).toString('hex');

async function bound(type: 'udp4' | 'udp6', addr: string): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, addr, () => resolve());
  });
  return s;
}

/** Receives datagrams for one UdpHandle through pollStart + udpRecvBatch, copying each out. */
class Drain {
  buf = new Uint8Array(SLOT * MAX);
  lens = new Uint32Array(MAX);
  addrs = new Uint8Array(16 * MAX);
  ports = new Uint16Array(MAX);
  got: { data: Buffer; addr: string; port: number }[] = [];
  wakes = 0;
  pollId = -1;
  constructor(readonly fd: number) {}
  start(): this {
    this.pollId = native.pollStart(this.fd, () => {
      this.wakes++;
      this.drain();
    });
    return this;
  }
  drain(): number {
    let total = 0;
    for (;;) {
      const n = native.udpRecvBatch(this.fd, this.buf, SLOT, this.lens, this.addrs, this.ports, MAX);
      for (let i = 0; i < n; i++) {
        this.got.push({
          data: Buffer.from(this.buf.subarray(i * SLOT, i * SLOT + this.lens[i])),
          addr: hex(this.addrs.subarray(i * 16, i * 16 + 16)),
          port: this.ports[i],
        });
      }
      total += n;
      if (n < MAX) return total;
    }
  }
}

describe('native UDP: dual-stack socket, recvmmsg/sendmmsg batches, uv_poll', () => {
  const toClose: number[] = [];
  const sockets: dgram.Socket[] = [];
  afterAll(() => {
    for (const fd of toClose) native.closeFd(fd);
    for (const s of sockets) s.close();
  });
  function open(port = 0): native.UdpHandle {
    const h = native.udpOpen(port);
    toClose.push(h.fd);
    return h;
  }
  async function sock(type: 'udp4' | 'udp6', addr: string): Promise<dgram.Socket> {
    const s = await bound(type, addr);
    sockets.push(s);
    return s;
  }

  it('binds [::] dual-stack on a kernel-picked port and refuses a taken port with EADDRINUSE', async () => {
    const h = open(0);
    expect(h.family).toBe(6);
    expect(h.port).toBeGreaterThan(0);
    expect(() => native.udpOpen(h.port)).toThrow(expect.objectContaining({ code: 'EADDRINUSE', message: `UDP port ${h.port} is already in use` }));
    // A port held by an ordinary IPv4 socket is taken for the dual-stack socket too.
    const s = await sock('udp4', '0.0.0.0');
    const p = s.address().port;
    expect(() => native.udpOpen(p)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    expect(() => native.udpOpen(70000)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('receives 100 IPv4 and 100 IPv6 datagrams with their sources, then sends 100 back to each', async () => {
    const h = open(0);
    const d = new Drain(h.fd).start();
    const s4 = await sock('udp4', '127.0.0.1');
    const s6 = await sock('udp6', '::1');
    for (let i = 0; i < 100; i++) {
      s4.send(`v4 ${i}`, h.port, '127.0.0.1');
      s6.send(`v6 ${i}`, h.port, '::1');
    }
    await until(() => d.got.length >= 200);
    expect(d.wakes).toBeGreaterThan(0);
    expect(d.got.length).toBe(200);
    const v4 = d.got.filter((g) => g.data.toString().startsWith('v4 '));
    const v6 = d.got.filter((g) => g.data.toString().startsWith('v6 '));
    expect(v4.map((g) => g.data.toString())).toEqual(Array.from({ length: 100 }, (_, i) => `v4 ${i}`));
    expect(v6.map((g) => g.data.toString())).toEqual(Array.from({ length: 100 }, (_, i) => `v6 ${i}`));
    expect(new Set(v4.map((g) => `${g.addr}:${g.port}`))).toEqual(new Set([`${hex(mapped4(127, 0, 0, 1))}:${s4.address().port}`]));
    expect(new Set(v6.map((g) => `${g.addr}:${g.port}`))).toEqual(new Set([`${hex(LOOP6)}:${s6.address().port}`]));

    // Back: 200 datagrams in one buffer at uneven offsets, alternating destinations.
    const got4: string[] = [];
    const got6: string[] = [];
    s4.on('message', (m, r) => r.port === h.port && got4.push(m.toString()));
    s6.on('message', (m, r) => r.port === h.port && got6.push(m.toString()));
    const buf = Buffer.alloc(200 * 40);
    const offs = new Uint32Array(200);
    const lens = new Uint32Array(200);
    const addrs = new Uint8Array(200 * 16);
    const ports = new Uint16Array(200);
    let at = 3;
    for (let i = 0; i < 200; i++) {
      const to4 = i % 2 === 0;
      const text = `${to4 ? 'back4' : 'back6'} ${i >> 1}`;
      offs[i] = at;
      lens[i] = buf.write(text, at);
      at += lens[i] + 7;
      addrs.set(to4 ? mapped4(127, 0, 0, 1) : LOOP6, i * 16);
      ports[i] = to4 ? s4.address().port : s6.address().port;
    }
    let sent = 0;
    for (let tries = 0; sent < 200 && tries < 100; tries++) {
      // EAGAIN returns early; the unsent tail is ours to retry.
      sent += native.udpSendBatch(h.fd, buf, offs.subarray(sent), lens.subarray(sent), addrs.subarray(sent * 16), ports.subarray(sent), 200 - sent);
      if (sent < 200) await sleep(5);
    }
    expect(sent).toBe(200);
    await until(() => got4.length >= 100 && got6.length >= 100);
    expect(got4).toEqual(Array.from({ length: 100 }, (_, i) => `back4 ${i}`));
    expect(got6).toEqual(Array.from({ length: 100 }, (_, i) => `back6 ${i}`));
    native.pollStop(d.pollId);
  });

  it('skips a datagram the kernel refuses (port 0) and still sends the rest of the batch', async () => {
    const h = open(0);
    const s4 = await sock('udp4', '127.0.0.1');
    const got: string[] = [];
    s4.on('message', (m) => got.push(m.toString()));
    const buf = Buffer.from('firstbadlast');
    const before = native.counters().udpSendErrors;
    const a = mapped4(127, 0, 0, 1);
    const addrs = new Uint8Array(48);
    addrs.set(a, 0);
    addrs.set(a, 16);
    addrs.set(a, 32);
    const p = s4.address().port;
    const sent = native.udpSendBatch(h.fd, buf, new Uint32Array([0, 5, 8]), new Uint32Array([5, 3, 4]), addrs, new Uint16Array([p, 0, p]), 3);
    expect(sent).toBe(2);
    expect(native.counters().udpSendErrors - before).toBe(1);
    await until(() => got.length >= 2);
    expect(got).toEqual(['first', 'last']);
  });

  it('drops and counts a datagram longer than the slot, keeping the ones that fit', async () => {
    const h = open(0);
    const s4 = await sock('udp4', '127.0.0.1');
    const before = native.counters().udpTruncated;
    s4.send(Buffer.alloc(300, 1), h.port, '127.0.0.1');
    s4.send('small', h.port, '127.0.0.1');
    const slot = 64;
    const buf = new Uint8Array(slot * 4);
    const lens = new Uint32Array(4);
    const addrs = new Uint8Array(64);
    const ports = new Uint16Array(4);
    let n = 0;
    await until(() => (n += native.udpRecvBatch(h.fd, buf, slot, lens, addrs, ports, 4)) > 0 && native.counters().udpTruncated > before);
    expect(n).toBe(1);
    expect(lens[0]).toBe(5);
    expect(Buffer.from(buf.subarray(0, 5)).toString()).toBe('small');
    expect(native.counters().udpTruncated - before).toBe(1);
    expect(native.udpRecvBatch(h.fd, buf, slot, lens, addrs, ports, 4)).toBe(0);
  });

  it('keeps polling after sending to a closed port (ICMP port unreachable), and pollStop silences it', async () => {
    const h = open(0);
    const d = new Drain(h.fd).start();
    const closed = await bound('udp4', '127.0.0.1');
    const closedPort = closed.address().port;
    await new Promise<void>((r) => closed.close(() => r()));
    const out = Buffer.from('into the void');
    for (const addr of [mapped4(127, 0, 0, 1), LOOP6]) {
      for (let i = 0; i < 5; i++) {
        expect(native.udpSendBatch(h.fd, out, new Uint32Array([0]), new Uint32Array([out.length]), addr, new Uint16Array([closedPort]), 1)).toBe(1);
      }
    }
    await sleep(50); // let the ICMP errors arrive
    const s4 = await sock('udp4', '127.0.0.1');
    s4.send('still alive', h.port, '127.0.0.1');
    await until(() => d.got.some((g) => g.data.toString() === 'still alive'));

    native.pollStop(d.pollId);
    native.pollStop(d.pollId); // stopping twice is harmless
    const wakes = d.wakes;
    s4.send('unpolled', h.port, '127.0.0.1');
    await sleep(100);
    expect(d.wakes).toBe(wakes);
    expect(d.drain()).toBe(1);
    expect(d.got.at(-1)!.data.toString()).toBe('unpolled');
  });

  it('reports ICMP errors about sent datagrams (udpErrors), and sets the TTL (udpSetTtl)', async () => {
    const h = open(0);
    const closed = await bound('udp4', '127.0.0.1');
    const closedPort = closed.address().port;
    await new Promise<void>((r) => closed.close(() => r()));
    const out = Buffer.from('nobody');
    native.udpSetTtl(h.fd, 3);
    for (const addr of [mapped4(127, 0, 0, 1), LOOP6]) {
      expect(native.udpSendBatch(h.fd, out, new Uint32Array([0]), new Uint32Array([out.length]), addr, new Uint16Array([closedPort]), 1)).toBe(1);
    }
    native.udpSetTtl(h.fd, -1);
    await sleep(50);
    const reports = native.udpErrors(h.fd);
    const v4 = reports.find((r) => r.origin === 2);
    const v6 = reports.find((r) => r.origin === 3);
    expect(v4, JSON.stringify(reports)).toMatchObject({ type: 3, code: 3, port: closedPort }); // port unreachable
    expect(Buffer.from(v4!.addr).equals(Buffer.from(mapped4(127, 0, 0, 1)))).toBe(true);
    expect(v6, JSON.stringify(reports)).toMatchObject({ type: 1, code: 4, port: closedPort });
    expect(native.isTimeExceeded(v4!)).toBe(false);
    expect(native.udpErrors(h.fd)).toEqual([]); // taken
    expect(() => native.udpSetTtl(h.fd, 0)).toThrow(/ttl/);
    expect(() => native.udpSetTtl(h.fd, 256)).toThrow(/ttl/);
  });

  it('a stale poll id does not stop a newer poll that reused its slot; one poll per fd', async () => {
    const h = open(0);
    const first = new Drain(h.fd).start();
    native.pollStop(first.pollId);
    const second = new Drain(h.fd).start();
    expect(second.pollId).not.toBe(first.pollId);
    expect(() => native.pollStart(h.fd, () => {})).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    native.pollStop(first.pollId);
    const s4 = await sock('udp4', '127.0.0.1');
    s4.send('reused', h.port, '127.0.0.1');
    await until(() => second.got.length > 0);
    native.pollStop(second.pollId);
  });

  it('throws EINVAL on caller misuse (buffers smaller than the batch)', () => {
    const h = open(0);
    expect(() => native.udpRecvBatch(h.fd, new Uint8Array(100), SLOT, new Uint32Array(4), new Uint8Array(64), new Uint16Array(4), 4)).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
    expect(() => native.udpSendBatch(h.fd, new Uint8Array(10), new Uint32Array([8]), new Uint32Array([8]), new Uint8Array(16), new Uint16Array([1]), 1)).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
    expect(() => native.tunWriteBatch(h.fd, new Uint8Array(10), new Uint32Array([0]), new Uint32Array([1]), 2)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});

/* ───────────────────────── child processes ───────────────────────── */

/** Runs inside the namespace: every TUN check, results as one JSON line. */
const TUN_CHILD = String.raw`
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
const [addonPath, name, net] = process.argv.slice(2);
const n = createRequire(import.meta.url)(addonPath);
const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const exists = (dev) => { try { ip('link', 'show', 'dev', dev); return true; } catch { return false; } };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(pred, ms = 3000) { const end = Date.now() + ms; while (!pred()) { if (Date.now() > end) throw new Error('timeout'); await sleep(5); } }
const err = (f) => { try { f(); return null; } catch (e) { return { code: e.code, message: e.message }; } };
const out = {};

const tun = n.tunOpen(name);
out.name = tun.name;
out.listed = ip('-o', 'link', 'show').includes(name + ':');
out.second = err(() => n.tunOpen(name));
out.tooLong = err(() => n.tunOpen('x'.repeat(16)));
const picked = n.tunOpen('');
out.picked = picked.name;
out.pickedListed = exists(picked.name);
n.closeFd(picked.fd);
out.pickedGoneAfterClose = !exists(picked.name);

ip('addr', 'add', net + '.1/24', 'dev', name);
ip('link', 'set', 'dev', name, 'up');

// TUN → JS: a datagram routed into the tunnel.
const SLOT = 2048, MAX = 64;
const buf = new Uint8Array(SLOT * MAX), lens = new Uint32Array(MAX);
const packets = [];
let wakes = 0, errors = [];
const pollId = n.pollStart(tun.fd, (e) => {
  wakes++;
  if (e) { errors.push(e); return; }
  for (;;) {
    const c = n.tunReadBatch(tun.fd, buf, SLOT, lens, MAX);
    for (let i = 0; i < c; i++) packets.push(Buffer.from(buf.subarray(i * SLOT, i * SLOT + lens[i])));
    if (c < MAX) break;
  }
});
const sender = dgram.createSocket('udp4');
await new Promise((r) => sender.bind(0, net + '.1', r));
sender.send('through the tun', 4000, net + '.2');
const ours = (p) => p[0] >> 4 === 4 && p[9] === 17 && p.subarray(16, 20).join('.') === net + '.2' && p.readUInt16BE((p[0] & 15) * 4 + 2) === 4000;
await until(() => packets.some(ours));
const p = packets.find(ours);
const ihl = (p[0] & 15) * 4;
out.read = { version: p[0] >> 4, dst: p.subarray(16, 20).join('.'), src: p.subarray(12, 16).join('.'),
  srcPort: p.readUInt16BE(ihl), senderPort: sender.address().port, payload: p.subarray(ihl + 8).toString(), totalLength: p.readUInt16BE(2), length: p.length };
sender.close();

// JS → TUN: a crafted IPv4/UDP packet to our own address, after one the kernel must refuse.
const listener = dgram.createSocket('udp4');
await new Promise((r) => listener.bind(0, net + '.1', r));
const received = [];
listener.on('message', (m, r) => received.push({ text: m.toString(), from: r.address + ':' + r.port }));
const payload = Buffer.from('out of the tun');
const pkt = Buffer.alloc(28 + payload.length);
pkt[0] = 0x45; pkt.writeUInt16BE(pkt.length, 2); pkt.writeUInt16BE(0x4000, 6); pkt[8] = 64; pkt[9] = 17;
Buffer.from(net.split('.').map(Number).concat([2])).copy(pkt, 12);
Buffer.from(net.split('.').map(Number).concat([1])).copy(pkt, 16);
let sum = 0; for (let i = 0; i < 20; i += 2) sum += pkt.readUInt16BE(i);
while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
pkt.writeUInt16BE(~sum & 0xffff, 10);
pkt.writeUInt16BE(5555, 20); pkt.writeUInt16BE(listener.address().port, 22); pkt.writeUInt16BE(8 + payload.length, 24);
payload.copy(pkt, 28);
const wbuf = Buffer.alloc(1000);
wbuf[0] = 0x70; // IP version 7: tun refuses it (EINVAL)
pkt.copy(wbuf, 300);
const before = n.counters().tunWriteErrors;
out.written = n.tunWriteBatch(tun.fd, wbuf, new Uint32Array([0, 300]), new Uint32Array([20, pkt.length]), 2);
out.tunWriteErrors = n.counters().tunWriteErrors - before;
await until(() => received.length > 0);
out.received = received[0];
listener.close();

// Deleting the interface under the poll: told once, no spinning.
const wakesBefore = wakes;
ip('link', 'del', 'dev', name);
await until(() => errors.length > 0);
await sleep(200);
out.afterDelete = { errors, extraWakes: wakes - wakesBefore };
n.pollStop(pollId);
n.closeFd(tun.fd);
// Nothing may keep the event loop alive now: this process must exit by itself.
process.stdout.write(JSON.stringify(out) + '\n');
`;

/** Runs as an unprivileged user: TUN creation and low ports must fail with clear codes. */
const UNPRIVILEGED_CHILD = String.raw`
import { createRequire } from 'node:module';
const n = createRequire(import.meta.url)(process.argv[2]);
const err = (f) => { try { f(); return null; } catch (e) { return { code: e.code, message: e.message }; } };
process.stdout.write(JSON.stringify({ tun: err(() => n.tunOpen(process.argv[3])), lowPort: err(() => n.udpOpen(80)) }) + '\n');
`;

/** A worker thread leaves with an active poll: the env cleanup hook must close it. */
const WORKER_CHILD = String.raw`
import { Worker } from 'node:worker_threads';
const addon = process.argv[2];
const w = new Worker(
  "const n = require(" + JSON.stringify(addon) + "); const h = n.udpOpen(0); n.pollStart(h.fd, () => {}); require('node:worker_threads').parentPort.postMessage('polling');",
  { eval: true },
);
await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
await w.terminate();
// The main thread polls too, then stops: the process must still exit by itself.
const n = (await import('node:module')).createRequire(import.meta.url)(addon);
const h = n.udpOpen(0);
const id = n.pollStart(h.fd, () => {});
n.pollStop(id);
n.closeFd(h.fd);
process.stdout.write('{"ok":true}\n');
`;

interface ChildResult {
  status: string; // 'exit 0', 'exit 1', 'killed (SIGKILL)' (timeouts end that way)
  stdout: string;
  stderr: string;
}
/**
 * The POLLERR pitfall for real. An unconnected UDP socket does not get SO_ERROR from ICMP, a
 * connected one does, and the addon never connects — so python3 hands this child a UDP socket
 * connected to a closed port (fd 3). Sending there brings ICMP port unreachable, SO_ERROR, POLLERR;
 * libuv stops the poll; the addon must clear SO_ERROR and poll again, or the datagram sent later
 * from that port (the only source a connected socket accepts) is never seen.
 */
const SO_ERROR_CHILD = String.raw`
import { createRequire } from 'node:module';
import dgram from 'node:dgram';
const [addonPath, fdArg, peerArg, localArg] = process.argv.slice(2);
const n = createRequire(import.meta.url)(addonPath);
const fd = Number(fdArg), peer = Number(peerArg), local = Number(localArg);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(pred, ms = 3000) { const end = Date.now() + ms; while (!pred()) { if (Date.now() > end) throw new Error('timeout'); await sleep(5); } }
const buf = new Uint8Array(2048 * 8), lens = new Uint32Array(8), addrs = new Uint8Array(128), ports = new Uint16Array(8);
const got = [];
let wakes = 0;
const id = n.pollStart(fd, (e) => {
  wakes++;
  const c = n.udpRecvBatch(fd, buf, 2048, lens, addrs, ports, 8);
  for (let i = 0; i < c; i++) got.push(Buffer.from(buf.subarray(i * 2048, i * 2048 + lens[i])).toString());
});
const before = n.counters().udpSoErrors;
const a = new Uint8Array(16); a[10] = a[11] = 0xff; a.set([127, 0, 0, 1], 12);
const out = Buffer.from('nobody home');
const sent = n.udpSendBatch(fd, out, new Uint32Array([0]), new Uint32Array([out.length]), a, new Uint16Array([peer]), 1);
await until(() => n.counters().udpSoErrors > before);
const soErrors = n.counters().udpSoErrors - before;
const s = dgram.createSocket('udp4');
await new Promise((r) => s.bind(peer, '127.0.0.1', r));
s.send('after the error', local, '127.0.0.1');
await until(() => got.length > 0);
s.close();
n.pollStop(id);
n.closeFd(fd);
process.stdout.write(JSON.stringify({ sent, soErrors, got }) + '\n');
`;

const SO_ERROR_LAUNCHER = `
import socket, subprocess, sys
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.bind(('127.0.0.1', 0))
peer = probe.getsockname()[1]
probe.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(('127.0.0.1', 0))
u.connect(('127.0.0.1', peer))
u.setblocking(False)
cmd = sys.argv[1:] + [str(u.fileno()), str(peer), str(u.getsockname()[1])]
sys.exit(subprocess.run(cmd, pass_fds=[u.fileno()], timeout=15).returncode)
`;

function runChild(argv: string[], timeoutMs = 20_000): Promise<ChildResult> {
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (error, stdout, stderr) => {
      const e = error as (Error & { code?: number | string; signal?: string }) | null;
      const status = !e ? 'exit 0' : e.signal ? `killed (${e.signal})` : `exit ${e.code}`;
      resolve({ status, stdout, stderr });
    });
  });
}
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function parse(r: ChildResult): Record<string, any> {
  if (r.status !== 'exit 0') throw new Error(`child failed, ${r.status} (a timeout means it hung or did not exit by itself):\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

describe('native addon in child processes', () => {
  let dir = '';
  let addon = '';
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'km-native-'));
    chmodSync(dir, 0o755);
    addon = path.join(dir, 'keymesh_native.node');
    copyFileSync(native.addonPath(), addon); // readable by the unprivileged child too
    writeFileSync(path.join(dir, 'tun.mjs'), TUN_CHILD);
    writeFileSync(path.join(dir, 'unprivileged.mjs'), UNPRIVILEGED_CHILD);
    writeFileSync(path.join(dir, 'worker.mjs'), WORKER_CHILD);
    writeFileSync(path.join(dir, 'so-error.mjs'), SO_ERROR_CHILD);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('closes the polls of a terminated worker (env cleanup hook) and lets the process exit after pollStop', async () => {
    const r = parse(await runChild([process.execPath, path.join(dir, 'worker.mjs'), addon]));
    expect(r).toEqual({ ok: true });
  });

  it.skipIf(!hasPython)('clears SO_ERROR after ICMP on a connected UDP socket and keeps polling (POLLERR)', async () => {
    const r = parse(await runChild(['python3', '-c', SO_ERROR_LAUNCHER, process.execPath, path.join(dir, 'so-error.mjs'), addon]));
    expect(r.sent).toBe(1);
    expect(r.soErrors).toBeGreaterThanOrEqual(1);
    expect(r.got).toEqual(['after the error']);
  });

  describe.skipIf(tunSkip)(`TUN device in a fresh network namespace (needs root${tunSkip ? `; skipped: ${tunSkip}` : ''})`, () => {
    const tag = randomBytes(3).toString('hex');
    const ns = `km-nt-${tag}`;
    const tunName = `kmt${tag}`;
    const net = `10.${100 + (randomBytes(1)[0] % 100)}.${randomBytes(1)[0]}`;
    beforeAll(() => {
      execFileSync('ip', ['netns', 'add', ns]);
      execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    });
    afterAll(() => {
      // Deleting the namespace removes anything left in it; the child is gone (exited or killed).
      spawnSync('ip', ['netns', 'del', ns]);
    });

    it('opens, reads, writes, and survives deletion of the interface', async () => {
      const r = parse(await runChild(['ip', 'netns', 'exec', ns, process.execPath, path.join(dir, 'tun.mjs'), addon, tunName, net]));
      expect(r.name).toBe(tunName);
      expect(r.listed).toBe(true);
      expect(r.second).toEqual({ code: 'EBUSY', message: `interface ${tunName} already exists and is in use` });
      expect(r.tooLong.code).toBe('EINVAL');
      expect(r.picked).toMatch(/^tun\d+$/);
      expect(r.pickedListed).toBe(true);
      expect(r.pickedGoneAfterClose).toBe(true);

      expect(r.read).toMatchObject({ version: 4, dst: `${net}.2`, src: `${net}.1`, payload: 'through the tun' });
      expect(r.read.srcPort).toBe(r.read.senderPort);
      expect(r.read.length).toBe(r.read.totalLength);

      expect(r.written).toBe(1);
      expect(r.tunWriteErrors).toBe(1);
      expect(r.received).toEqual({ text: 'out of the tun', from: `${net}.2:5555` });

      expect(r.afterDelete.errors).toEqual(['EPOLLERR']);
      expect(r.afterDelete.extraWakes).toBe(1);
      // The namespace holds no interface of ours any more.
      expect(execFileSync('ip', ['-n', ns, '-o', 'link', 'show'], { encoding: 'utf8' })).not.toContain(tunName);
    });

    it('without root: EPERM for a TUN device, EACCES for a privileged port', async () => {
      const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;
      if (!hasSetpriv) return; // util-linux setpriv is needed to drop privileges
      const r = parse(
        await runChild([
          'ip', 'netns', 'exec', ns,
          'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all',
          process.execPath, path.join(dir, 'unprivileged.mjs'), addon, `${tunName}u`,
        ]),
      );
      expect(r.tun).toEqual({ code: 'EPERM', message: 'creating a TUN device needs root or CAP_NET_ADMIN' });
      expect(r.lowPort.code).toBe('EACCES');
    });
  });
});
