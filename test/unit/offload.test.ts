/**
 * The offload logic of native/offload.c, through its pure test entry points (no fds):
 *
 *   offloadSplit(virtio header, super-packet)  what tunReadBatchVnet hands the engine
 *   offloadCoalesce(packets)                   what tunWriteBatchVnet writes to the device
 *
 * Every packet that comes out is checked by a naive checker written here from RFC 791/793/768/
 * 8200 and RFC 1071 (one's complement sum, byte by byte): IPv4 header checksum, TCP/UDP checksum
 * over the pseudo-header, lengths, IDs, sequence numbers and flags.
 */
import { randomBytes } from 'node:crypto';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as native from '../../src/io/native.js';

// ───────────── a naive checker ─────────────

/** RFC 1071: one's complement of the one's complement sum of 16-bit big-endian words. */
function onesSum(chunks: Uint8Array[]): number {
  const all = Buffer.concat(chunks);
  let s = 0;
  for (let i = 0; i < all.length; i += 2) {
    s += (all[i] << 8) | (i + 1 < all.length ? all[i + 1] : 0);
    s = (s & 0xffff) + (s >>> 16);
  }
  return s;
}
const checksum = (chunks: Uint8Array[]) => ~onesSum(chunks) & 0xffff;

const be16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const be32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const put16 = (b: Uint8Array, o: number, v: number) => ((b[o] = (v >> 8) & 0xff), (b[o + 1] = v & 0xff));
const put32 = (b: Uint8Array, o: number, v: number) => {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
};

function pseudo(p: Uint8Array, proto: number, l4len: number): Uint8Array {
  const v6 = p[0] >> 4 === 6;
  const ph = new Uint8Array(v6 ? 40 : 12);
  if (v6) {
    ph.set(p.subarray(8, 40), 0);
    put32(ph, 32, l4len);
    ph[39] = proto;
  } else {
    ph.set(p.subarray(12, 20), 0);
    ph[9] = proto;
    put16(ph, 10, l4len);
  }
  return ph;
}

interface Parsed {
  v6: boolean;
  iphlen: number;
  proto: number;
  l4: Uint8Array;
  payload: Uint8Array;
  id: number;
  seq: number;
  flags: number;
}

/** Parse and verify everything a receiver would; throws on the first thing that is wrong. */
function check(p: Uint8Array): Parsed {
  const v6 = p[0] >> 4 === 6;
  let iphlen: number, proto: number, id = 0;
  if (v6) {
    iphlen = 40;
    proto = p[6];
    expect(be16(p, 4) + 40, 'IPv6 payload length').toBe(p.length);
  } else {
    expect(p[0] >> 4).toBe(4);
    iphlen = (p[0] & 15) * 4;
    proto = p[9];
    expect(be16(p, 2), 'IPv4 total length').toBe(p.length);
    expect(onesSum([p.subarray(0, iphlen)]), 'IPv4 header checksum').toBe(0xffff);
    id = be16(p, 4);
  }
  const l4 = p.subarray(iphlen);
  const sum = onesSum([pseudo(p, proto, l4.length), l4]);
  expect(sum, `${proto === 6 ? 'TCP' : 'UDP'} checksum`).toBe(0xffff);
  let payload: Uint8Array, seq = 0, flags = 0;
  if (proto === 6) {
    const doff = (l4[12] >> 4) * 4;
    payload = l4.subarray(doff);
    seq = be32(l4, 4);
    flags = l4[13];
  } else {
    expect(proto).toBe(17);
    expect(be16(l4, 4), 'UDP length').toBe(l4.length);
    expect(be16(l4, 6), 'UDP checksum is never 0').not.toBe(0);
    payload = l4.subarray(8);
  }
  return { v6, iphlen, proto, l4, payload, id, seq, flags };
}

// ───────────── packet builders ─────────────

const FIN = 0x01, SYN = 0x02, PSH = 0x08, ACK = 0x10, URG = 0x20, CWR = 0x80;

interface TcpOpts {
  v6?: boolean;
  src?: number;
  sport?: number;
  dport?: number;
  seq?: number;
  ack?: number;
  flags?: number;
  window?: number;
  /** urgent pointer (meaningful only with URG, but a field like any other) */
  urgent?: number;
  id?: number;
  ttl?: number;
  options?: Uint8Array;
  payload: Uint8Array;
  /** checksum field: 'full' (valid packet) or 'partial' (pseudo-header sum, as with NEEDS_CSUM) */
  csum?: 'full' | 'partial' | 'bad';
}

function ipHeader(v6: boolean, proto: number, l4len: number, src: number, id: number, ttl: number): Uint8Array {
  if (v6) {
    const h = new Uint8Array(40);
    h[0] = 0x60;
    put16(h, 4, l4len);
    h[6] = proto;
    h[7] = ttl;
    h.set([0xfd, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, src], 8);
    h.set([0xfd, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9], 24);
    return h;
  }
  const h = new Uint8Array(20);
  h[0] = 0x45;
  put16(h, 2, 20 + l4len);
  put16(h, 4, id);
  h[6] = 0x40; // DF
  h[8] = ttl;
  h[9] = proto;
  h.set([10, 0, 0, src], 12);
  h.set([10, 0, 0, 9], 16);
  put16(h, 10, checksum([h]));
  return h;
}

function tcp(o: TcpOpts): Uint8Array {
  const opts = o.options ?? new Uint8Array(0);
  const th = new Uint8Array(20 + opts.length);
  put16(th, 0, o.sport ?? 40000);
  put16(th, 2, o.dport ?? 5201);
  put32(th, 4, o.seq ?? 1000);
  put32(th, 8, o.ack ?? 77);
  th[12] = ((20 + opts.length) / 4) << 4;
  th[13] = o.flags ?? ACK;
  put16(th, 14, o.window ?? 502);
  put16(th, 18, o.urgent ?? 0);
  th.set(opts, 20);
  const v6 = o.v6 ?? false;
  const ip = ipHeader(v6, 6, th.length + o.payload.length, o.src ?? 1, o.id ?? 0x1234, o.ttl ?? 64);
  const p = Buffer.concat([ip, th, o.payload]);
  const l4 = p.subarray(ip.length);
  const mode = o.csum ?? 'full';
  const ph = pseudo(p, 6, l4.length);
  if (mode === 'partial') put16(l4, 16, onesSum([ph]));
  else put16(l4, 16, checksum([ph, l4]) ^ (mode === 'bad' ? 0x0101 : 0));
  return new Uint8Array(p);
}

function udp(v6: boolean, payload: Uint8Array, csum: 'full' | 'partial' = 'full'): Uint8Array {
  const uh = new Uint8Array(8);
  put16(uh, 0, 5000);
  put16(uh, 2, 6000);
  put16(uh, 4, 8 + payload.length);
  const ip = ipHeader(v6, 17, 8 + payload.length, 1, 0x4321, 64);
  const p = new Uint8Array(Buffer.concat([ip, uh, payload]));
  const l4 = p.subarray(ip.length);
  const ph = pseudo(p, 17, l4.length);
  put16(l4, 6, csum === 'partial' ? onesSum([ph]) : checksum([ph, l4]) || 0xffff);
  return p;
}

/** struct virtio_net_hdr, host (little-endian) order as TUN speaks it. */
function vnet(h: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }): Uint8Array {
  const b = Buffer.alloc(10);
  b[0] = h.flags ?? 0;
  b[1] = h.gsoType ?? 0;
  b.writeUInt16LE(h.hdrLen ?? 0, 2);
  b.writeUInt16LE(h.gsoSize ?? 0, 4);
  b.writeUInt16LE(h.csumStart ?? 0, 6);
  b.writeUInt16LE(h.csumOffset ?? 0, 8);
  return new Uint8Array(b);
}
const readVnet = (b: Uint8Array) => {
  const x = Buffer.from(b);
  return { flags: x[0], gsoType: x[1], hdrLen: x.readUInt16LE(2), gsoSize: x.readUInt16LE(4), csumStart: x.readUInt16LE(6), csumOffset: x.readUInt16LE(8) };
};
const NEEDS_CSUM = 1;
const GSO_TCPV4 = 1, GSO_TCPV6 = 4, GSO_UDP_L4 = 5, GSO_ECN = 0x80;

/** A TSO super-packet as the kernel hands it to a TUN device with TUN_F_TSO*. */
function superTcp(o: TcpOpts & { gso: number }) {
  const pkt = tcp({ ...o, csum: 'partial' });
  const iph = o.v6 ? 40 : 20;
  const hlen = iph + 20 + (o.options?.length ?? 0);
  const h = vnet({ flags: NEEDS_CSUM, gsoType: (o.v6 ? GSO_TCPV6 : GSO_TCPV4) | ((o.flags ?? ACK) & CWR ? GSO_ECN : 0), hdrLen: hlen, gsoSize: o.gso, csumStart: iph, csumOffset: 16 });
  return { h, pkt };
}

/** Expand one write back into the packets it stands for (the receiving kernel's view). */
function expand(w: { vnet: Uint8Array; packet: Uint8Array }): Uint8Array[] {
  const v = readVnet(w.vnet);
  if (v.gsoType === 0) {
    expect(v.flags).toBe(0);
    return [w.packet];
  }
  const segs = native.offloadSplit(w.vnet, w.packet);
  expect(segs).not.toBeNull();
  return segs!;
}

const TS_OPT = new Uint8Array([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP timestamps

const skip = native.hasOffload() ? false : 'the addon was built without offload.c';

describe.skipIf(skip)('offload: splitting super-packets read from TUN', () => {
  for (const v6 of [false, true]) {
    it(`TSO ${v6 ? 'IPv6' : 'IPv4'}: lengths, IDs, sequence numbers, flags, checksums`, () => {
      const payload = new Uint8Array(randomBytes(10_001));
      const seq0 = 0xffff_f000; // wraps around 2^32 inside the packet
      const gso = 1368;
      const { h, pkt } = superTcp({ v6, payload, seq: seq0, flags: ACK | PSH | CWR, options: TS_OPT, gso, id: 0xfffe });
      const segs = native.offloadSplit(h, pkt)!;
      expect(segs).not.toBeNull();
      expect(segs.length).toBe(Math.ceil(payload.length / gso));
      const parts: Uint8Array[] = [];
      segs.forEach((s, i) => {
        const p = check(s);
        expect(p.proto).toBe(6);
        expect(p.payload.length).toBe(i < segs.length - 1 ? gso : payload.length - gso * (segs.length - 1));
        expect(p.seq).toBe((seq0 + i * gso) >>> 0);
        if (!v6) expect(p.id).toBe((0xfffe + i) & 0xffff);
        expect(!!(p.flags & CWR), `CWR on segment ${i}`).toBe(i === 0);
        expect(!!(p.flags & PSH), `PSH on segment ${i}`).toBe(i === segs.length - 1);
        expect(p.flags & ACK).toBe(ACK);
        expect(Buffer.from(p.l4.subarray(20, 32))).toEqual(Buffer.from(TS_OPT)); // options copied
        parts.push(p.payload);
      });
      expect(Buffer.concat(parts)).toEqual(Buffer.from(payload));
    });
  }

  it('FIN goes on the last segment only; a payload that is an exact multiple makes no empty segment', () => {
    const payload = new Uint8Array(randomBytes(1400 * 3));
    const { h, pkt } = superTcp({ payload, flags: ACK | FIN, gso: 1400 });
    const segs = native.offloadSplit(h, pkt)!;
    expect(segs.length).toBe(3);
    expect(segs.map((s) => check(s).flags & FIN)).toEqual([0, 0, FIN]);
  });

  for (const v6 of [false, true]) {
    it(`USO ${v6 ? 'IPv6' : 'IPv4'}: UDP lengths and checksums`, () => {
      const payload = new Uint8Array(randomBytes(5000));
      const pkt = udp(v6, payload, 'partial');
      const iph = v6 ? 40 : 20;
      const h = vnet({ flags: NEEDS_CSUM, gsoType: GSO_UDP_L4, hdrLen: iph + 8, gsoSize: 1200, csumStart: iph, csumOffset: 6 });
      const segs = native.offloadSplit(h, pkt)!;
      expect(segs.length).toBe(5);
      const parts = segs.map((s, i) => {
        const p = check(s);
        if (!v6) expect(p.id).toBe(0x4321 + i);
        return p.payload;
      });
      expect(Buffer.concat(parts)).toEqual(Buffer.from(payload));
    });
  }

  it('NEEDS_CSUM on a single packet: the checksum is completed (TCP and UDP, both families)', () => {
    for (const v6 of [false, true]) {
      const iph = v6 ? 40 : 20;
      const t = tcp({ v6, payload: new Uint8Array(randomBytes(333)), csum: 'partial' });
      const [ot] = native.offloadSplit(vnet({ flags: NEEDS_CSUM, csumStart: iph, csumOffset: 16 }), t)!;
      check(ot);
      const u = udp(v6, new Uint8Array(randomBytes(77)), 'partial');
      const [ou] = native.offloadSplit(vnet({ flags: NEEDS_CSUM, csumStart: iph, csumOffset: 6 }), u)!;
      check(ou);
      // without NEEDS_CSUM the packet passes untouched
      const full = tcp({ v6, payload: new Uint8Array(randomBytes(50)) });
      expect(Buffer.from(native.offloadSplit(vnet({}), full)![0])).toEqual(Buffer.from(full));
    }
  });

  it('bad headers are counted drops: protocol mismatch, gso_size 0, segment larger than a slot, UFO', () => {
    const before = native.offloadCounters()!.tunBad;
    const payload = new Uint8Array(3000);
    const { pkt } = superTcp({ payload, gso: 1000 });
    const v6pkt = superTcp({ v6: true, payload, gso: 1000 }).pkt;
    expect(native.offloadSplit(vnet({ flags: 1, gsoType: GSO_TCPV6, gsoSize: 1000, csumStart: 20, csumOffset: 16 }), pkt)).toBeNull();
    expect(native.offloadSplit(vnet({ flags: 1, gsoType: GSO_TCPV4, gsoSize: 1000, csumStart: 40, csumOffset: 16 }), v6pkt)).toBeNull();
    expect(native.offloadSplit(vnet({ flags: 1, gsoType: GSO_TCPV4, gsoSize: 0 }), pkt)).toBeNull();
    expect(native.offloadSplit(vnet({ flags: 1, gsoType: GSO_TCPV4, gsoSize: 2500 }), pkt, 2048)).toBeNull();
    expect(native.offloadSplit(vnet({ flags: 1, gsoType: 3, gsoSize: 1000 }), pkt)).toBeNull();
    expect(native.offloadSplit(vnet({ flags: 1, gsoType: GSO_UDP_L4, gsoSize: 1000 }), pkt)).toBeNull();
    expect(native.offloadSplit(vnet({ flags: NEEDS_CSUM, csumStart: 5000, csumOffset: 16 }), pkt)).toBeNull();
    expect(native.offloadCounters()!.tunBad - before).toBe(7);
  });
});

describe.skipIf(skip)('offload: coalescing TCP segments written to TUN (GRO)', () => {
  function stream(o: { v6?: boolean; n: number; mss: number; last?: number; seq?: number; src?: number; flagsLast?: number; sport?: number }) {
    const out: Uint8Array[] = [];
    let seq = o.seq ?? 5000;
    for (let i = 0; i < o.n; i++) {
      const len = i === o.n - 1 && o.last !== undefined ? o.last : o.mss;
      const flags = i === o.n - 1 && o.flagsLast !== undefined ? o.flagsLast : ACK;
      out.push(tcp({ v6: o.v6, src: o.src, sport: o.sport, seq, flags, id: 100 + i, options: TS_OPT, payload: new Uint8Array(randomBytes(len)) }));
      seq = (seq + len) >>> 0;
    }
    return out;
  }

  for (const v6 of [false, true]) {
    it(`${v6 ? 'IPv6' : 'IPv4'}: one flow becomes one super-packet with a correct virtio header`, () => {
      const pkts = stream({ v6, n: 10, mss: 1368, last: 500, flagsLast: ACK | PSH });
      const w = native.offloadCoalesce(pkts);
      expect(w.length).toBe(1);
      expect(w[0].segments).toBe(10);
      const iph = v6 ? 40 : 20;
      const v = readVnet(w[0].vnet);
      expect(v).toEqual({ flags: NEEDS_CSUM, gsoType: v6 ? GSO_TCPV6 : GSO_TCPV4, hdrLen: iph + 32, gsoSize: 1368, csumStart: iph, csumOffset: 16 });
      const sp = w[0].packet;
      expect(sp.length).toBe(iph + 32 + 9 * 1368 + 500);
      if (v6) expect(be16(sp, 4)).toBe(sp.length - 40);
      else {
        expect(be16(sp, 2)).toBe(sp.length);
        expect(onesSum([sp.subarray(0, 20)])).toBe(0xffff);
        expect(be16(sp, 4)).toBe(100); // the first segment's ID
      }
      // the checksum field holds the pseudo-header sum with the whole TCP length (not inverted)
      expect(be16(sp, iph + 16)).toBe(onesSum([pseudo(sp, 6, sp.length - iph)]));
      expect(sp[iph + 13]).toBe(ACK | PSH);
      // the receiving kernel's segmentation gives back exactly what went in
      expect(expand(w[0]).map((x) => Buffer.from(x))).toEqual(pkts.map((x) => Buffer.from(x)));
    });
  }

  it('round trip: split then coalesce gives the original super-packet byte for byte', () => {
    for (const v6 of [false, true]) {
      const { h, pkt } = superTcp({ v6, payload: new Uint8Array(randomBytes(40_000)), seq: 0xfffff000, flags: ACK | PSH | CWR, options: TS_OPT, gso: 1368, id: 9 });
      const segs = native.offloadSplit(h, pkt)!;
      const w = native.offloadCoalesce(segs);
      expect(w.length).toBe(1);
      expect(Buffer.from(w[0].packet)).toEqual(Buffer.from(pkt));
      expect(Buffer.from(w[0].vnet)).toEqual(Buffer.from(h));
    }
  });

  it('what must not be merged is not: gaps, other ACK, window, urgent pointer, options, TTL, IDs, SYN/FIN/URG, bad checksums, after PSH, after a short one, over 64 KiB', () => {
    const base = () => stream({ n: 3, mss: 1000 });
    const cases: Array<[string, (p: Uint8Array[]) => Uint8Array[]]> = [
      ['sequence gap', (p) => [p[0], tcp({ seq: 5000 + 1001, id: 101, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['other ACK', (p) => [p[0], tcp({ seq: 6000, id: 101, ack: 78, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['other window', (p) => [p[0], tcp({ seq: 6000, id: 101, window: 9, options: TS_OPT, payload: new Uint8Array(1000) })]],
      // found by fuzz/tun_write: segmentation copies the first one's urgent pointer into every segment
      ['other urgent pointer, URG clear', (p) => [p[0], tcp({ seq: 6000, id: 101, urgent: 0x13, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['other options', (p) => [p[0], tcp({ seq: 6000, id: 101, options: new Uint8Array([1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 2]), payload: new Uint8Array(1000) })]],
      ['FIN', (p) => [p[0], tcp({ seq: 6000, id: 101, flags: ACK | FIN, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['URG', (p) => [p[0], tcp({ seq: 6000, id: 101, flags: ACK | URG, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['SYN', (p) => [tcp({ seq: 4999, flags: SYN, payload: new Uint8Array(0) }), p[0]]],
      ['CWR later', (p) => [p[0], tcp({ seq: 6000, id: 101, flags: ACK | CWR, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['bad checksum', (p) => [p[0], tcp({ seq: 6000, id: 101, options: TS_OPT, payload: new Uint8Array(1000), csum: 'bad' })]],
      ['after PSH', () => [tcp({ seq: 5000, id: 100, flags: ACK | PSH, options: TS_OPT, payload: new Uint8Array(1000) }), tcp({ seq: 6000, id: 101, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['after a short one', (p) => [tcp({ seq: 5000, id: 100, options: TS_OPT, payload: new Uint8Array(500) }), tcp({ seq: 5500, id: 101, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['bigger than the first', (p) => [p[0], tcp({ seq: 6000, id: 101, options: TS_OPT, payload: new Uint8Array(1001) })]],
      ['other TTL', (p) => [p[0], tcp({ seq: 6000, id: 101, ttl: 3, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['IPv4 ID not the next one', (p) => [p[0], tcp({ seq: 6000, id: 102, options: TS_OPT, payload: new Uint8Array(1000) })]],
      ['bad IPv4 header checksum', (p) => {
        const q = tcp({ seq: 6000, id: 101, options: TS_OPT, payload: new Uint8Array(1000) });
        q[10] ^= 1;
        return [p[0], q];
      }],
    ];
    // the control: the same second packet with nothing changed is merged
    const control = [base()[0], tcp({ seq: 6000, id: 101, options: TS_OPT, payload: new Uint8Array(1000) })];
    expect(native.offloadCoalesce(control).length).toBe(1);
    for (const [what, mk] of cases) {
      const pkts = mk(base());
      const w = native.offloadCoalesce(pkts);
      expect(w.length, what).toBe(pkts.length);
      w.forEach((x, i) => {
        expect(readVnet(x.vnet).gsoType, what).toBe(0);
        expect(Buffer.from(x.packet), what).toEqual(Buffer.from(pkts[i]));
      });
    }
    // 64 KiB: 70 segments of 1000 bytes can never be one packet
    const big = stream({ n: 70, mss: 1000 });
    const w = native.offloadCoalesce(big);
    for (const x of w) expect(x.packet.length).toBeLessThanOrEqual(65535);
    expect(w.length).toBeGreaterThan(1);
    expect(w.flatMap(expand).map((x) => Buffer.from(x))).toEqual(big.map((x) => Buffer.from(x)));
  });

  it('random mixes of flows, UDP and ACKs: per-flow order and bytes are preserved, every write checks out', () => {
    for (let round = 0; round < 8; round++) {
      const flows = [
        stream({ n: 20, mss: 1368, src: 1, sport: 1, last: 17 }),
        stream({ n: 15, mss: 1200, src: 2, sport: 2, v6: true }),
        stream({ n: 12, mss: 900, src: 3, sport: 3, flagsLast: ACK | PSH }),
        Array.from({ length: 8 }, (_, i) => udp(i % 2 === 1, new Uint8Array(randomBytes(100 + i)))),
        Array.from({ length: 5 }, (_, i) => tcp({ src: 4, sport: 4, seq: 1 + i, payload: new Uint8Array(0) })), // pure ACKs
      ];
      const key = (p: Uint8Array) => {
        const v6 = p[0] >> 4 === 6;
        const proto = v6 ? p[6] : p[9];
        const iph = v6 ? 40 : 20;
        return proto === 17 ? 'udp' : `${v6 ? p[23] : p[15]}:${be16(p, iph)}`;
      };
      // interleave randomly, keeping each flow's own order
      const idx = flows.map(() => 0);
      const batch: Uint8Array[] = [];
      while (batch.length < flows.reduce((n, f) => n + f.length, 0)) {
        const f = Math.floor(Math.random() * flows.length);
        if (idx[f] < flows[f].length) batch.push(flows[f][idx[f]++]);
      }
      const writes = native.offloadCoalesce(batch);
      const got = new Map<string, Buffer[]>();
      for (const w of writes) {
        for (const p of expand(w)) {
          check(p);
          const k = key(p);
          got.set(k, [...(got.get(k) ?? []), Buffer.from(p)]);
        }
      }
      const want = new Map<string, Buffer[]>();
      for (const p of batch) want.set(key(p), [...(want.get(key(p)) ?? []), Buffer.from(p)]);
      expect(got).toEqual(want);
      expect(writes.length).toBeLessThan(batch.length); // something was coalesced
    }
  });
});

describe.skipIf(skip)('offload: malformed input never crashes', () => {
  it('random virtio headers and packets: null (counted) or well-formed segments', () => {
    const good = superTcp({ payload: new Uint8Array(randomBytes(6000)), gso: 1400, options: TS_OPT });
    const good6 = superTcp({ v6: true, payload: new Uint8Array(randomBytes(6000)), gso: 1400 });
    for (let i = 0; i < 4000; i++) {
      let h: Uint8Array, p: Uint8Array;
      const mode = i % 4;
      if (mode === 0) {
        h = new Uint8Array(randomBytes(10));
        p = new Uint8Array(randomBytes(Math.floor(Math.random() * 200)));
      } else {
        const src = i % 2 ? good : good6;
        h = Uint8Array.from(src.h);
        p = Uint8Array.from(src.pkt);
        // flip a few random bytes of the header or the packet's headers, or truncate
        for (let k = 0; k < 3; k++) {
          if (Math.random() < 0.5) h[Math.floor(Math.random() * 10)] = Math.floor(Math.random() * 256);
          else p[Math.floor(Math.random() * 80)] = Math.floor(Math.random() * 256);
        }
        if (mode === 3) p = p.subarray(0, Math.floor(Math.random() * p.length));
      }
      const before = native.offloadCounters()!.tunBad;
      const out = native.offloadSplit(h, p, 2048);
      if (out === null) {
        expect(native.offloadCounters()!.tunBad).toBe(before + 1);
        continue;
      }
      for (const s of out) expect(s.length).toBeLessThanOrEqual(2048);
      if (readVnet(h).gsoType !== 0 && out.length > 0) {
        // a split packet's segments are all internally consistent
        for (const s of out) check(s);
      }
    }
  });

  it('mutated TCP segments through the coalescer: no crash, nothing lost or duplicated, every merge checks out', () => {
    for (let round = 0; round < 200; round++) {
      let seq = 1;
      const pkts = Array.from({ length: 12 }, (_, i) => {
        const p = tcp({ v6: round % 2 === 1, seq, id: i, options: TS_OPT, payload: new Uint8Array(randomBytes(600)) });
        seq += 600;
        return p;
      });
      for (let k = 0; k < 4; k++) {
        const p = pkts[Math.floor(Math.random() * pkts.length)];
        const mode = Math.random();
        if (mode < 0.6) p[Math.floor(Math.random() * 60)] = Math.floor(Math.random() * 256);
        else pkts[pkts.indexOf(p)] = p.subarray(0, Math.floor(Math.random() * p.length)); // truncated
      }
      const w = native.offloadCoalesce(pkts);
      const out = w.flatMap((x) => (readVnet(x.vnet).gsoType === 0 ? [x.packet] : expand(x).map((s) => (check(s), s))));
      const sorted = (l: Uint8Array[]) => l.map((x) => Buffer.from(x).toString('hex')).sort();
      expect(sorted(out)).toEqual(sorted(pkts));
    }
  });

  it('random bytes through the coalescer come out unchanged and in order (nothing is merged)', () => {
    for (let i = 0; i < 300; i++) {
      const pkts = Array.from({ length: 1 + Math.floor(Math.random() * 20) }, () => new Uint8Array(randomBytes(Math.floor(Math.random() * 300))));
      const w = native.offloadCoalesce(pkts);
      expect(w.map((x) => Buffer.from(x.packet))).toEqual(pkts.map((x) => Buffer.from(x)));
      for (const x of w) expect(readVnet(x.vnet).gsoType).toBe(0);
    }
  });
});

describe.skipIf(skip)('offload: UDP_SEGMENT and UDP_GRO on real sockets (loopback)', () => {
  function recvAll(fd: number, want: number, max: number, gro: boolean) {
    const SLOT = 2048;
    const buf = new Uint8Array(SLOT * max);
    const lens = new Uint32Array(max);
    const addrs = new Uint8Array(16 * max);
    const ports = new Uint16Array(max);
    const locals = new Uint8Array(16 * max);
    const ifx = new Uint32Array(max);
    const got: Array<{ data: Buffer; port: number; local: string }> = [];
    const end = Date.now() + 3000;
    while (got.length < want && Date.now() < end) {
      const n = (gro ? native.udpRecvBatchGro : native.udpRecvBatch)(fd, buf, SLOT, lens, addrs, ports, max, locals, ifx);
      for (let i = 0; i < n; i++) {
        got.push({ data: Buffer.from(buf.subarray(i * SLOT, i * SLOT + lens[i])), port: ports[i], local: Buffer.from(locals.subarray(i * 16, i * 16 + 16)).toString('hex') });
      }
    }
    return got;
  }

  it('100 datagrams go out in a few GSO sends and come back one by one through small receive batches, in order', () => {
    const a = native.udpOpen(0);
    const b = native.udpOpen(0);
    try {
      expect(native.udpOffload(a.fd)).toEqual({ gso: true, gro: true });
      expect(native.udpOffload(b.fd).gro).toBe(true);
      const count = 100;
      const sizes = Array.from({ length: count }, (_, i) => (i === 63 || i === count - 1 ? 500 : 1000));
      const datagrams = sizes.map((n) => new Uint8Array(randomBytes(n)));
      const buf = new Uint8Array(2048 * count);
      const offs = new Uint32Array(count);
      const lens = new Uint32Array(count);
      const addrs = new Uint8Array(16 * count);
      const ports = new Uint16Array(count);
      const to = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
      datagrams.forEach((d, i) => {
        offs[i] = i * 2048 + 7; // not contiguous: one iovec per datagram
        lens[i] = d.length;
        buf.set(d, offs[i]);
        addrs.set(to, i * 16);
        ports[i] = b.port;
      });
      const c0 = native.offloadCounters()!;
      expect(native.udpSendBatchGso(a.fd, buf, offs, lens, addrs, ports, count)).toBe(count);
      const c1 = native.offloadCounters()!;
      // runs: 0..63 (64 max, the 64th is the shorter last one), 64..99 (last shorter)
      expect(c1.udpGsoSends - c0.udpGsoSends).toBe(2);
      expect(c1.udpGsoSegments - c0.udpGsoSegments).toBe(count);
      const got = recvAll(b.fd, count, 7, true);
      expect(got.map((g) => g.data)).toEqual(datagrams.map((d) => Buffer.from(d)));
      for (const g of got) {
        expect(g.port).toBe(a.port);
        expect(g.local).toBe(Buffer.from(to).toString('hex')); // the local end still comes with each
      }
      expect(native.offloadCounters()!.udpGroReceives).toBeGreaterThan(c1.udpGroReceives);
      expect(recvAll(b.fd, 1, 7, true).length).toBe(0); // nothing left over, nothing duplicated
    } finally {
      native.closeFd(a.fd);
      native.closeFd(b.fd);
    }
  });

  it('a socket without UDP_GRO receives GSO sends as ordinary datagrams; different destinations are not grouped', () => {
    const a = native.udpOpen(0);
    const b = native.udpOpen(0);
    const c = native.udpOpen(0);
    try {
      native.udpOffload(a.fd);
      const count = 12;
      const buf = new Uint8Array(1200 * count);
      const offs = new Uint32Array(count);
      const lens = new Uint32Array(count).fill(1200);
      const addrs = new Uint8Array(16 * count);
      const ports = new Uint16Array(count);
      const to = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
      for (let i = 0; i < count; i++) {
        offs[i] = i * 1200;
        buf.set(randomBytes(1200), offs[i]);
        addrs.set(to, i * 16);
        ports[i] = i < 6 || i >= 9 ? b.port : c.port; // b ×6, c ×3, b ×3
      }
      const c0 = native.offloadCounters()!;
      expect(native.udpSendBatchGso(a.fd, buf, offs, lens, addrs, ports, count)).toBe(count);
      expect(native.offloadCounters()!.udpGsoSends - c0.udpGsoSends).toBe(3);
      const atB = recvAll(b.fd, 9, 64, false);
      const atC = recvAll(c.fd, 3, 64, false);
      const slice = (i: number) => Buffer.from(buf.subarray(offs[i], offs[i] + 1200));
      expect(atB.map((g) => g.data)).toEqual([0, 1, 2, 3, 4, 5, 9, 10, 11].map(slice));
      expect(atC.map((g) => g.data)).toEqual([6, 7, 8].map(slice));
    } finally {
      for (const s of [a, b, c]) native.closeFd(s.fd);
    }
  });
});

/* ───────────── a real TUN device with IFF_VNET_HDR (root, own network namespace) ───────────── */

/**
 * Inside the namespace: a TUN device with offloads, a python3 sender using UDP_SEGMENT towards
 * an address routed into it (the kernel hands the TUN one USO super-packet per send), and
 * tunReadBatchVnet draining it 3 slots at a time, so most segments wait in the addon between
 * calls. Prints the offloads, the segments (hex) and the counters as one JSON line.
 */
const USO_CHILD = String.raw`
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
const [addonPath, name, net] = process.argv.slice(2);
const n = createRequire(import.meta.url)(addonPath);
const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });
const tun = n.tunOpen(name, { offload: true });
ip('addr', 'add', net + '.1/24', 'dev', name);
ip('link', 'set', name, 'up');
execFileSync('python3', ['-c', [
  'import socket',
  's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
  's.setsockopt(17, 103, 1000)',
  'data = bytes((i * 7 + 3) & 255 for i in range(9500))',
  's.sendto(data, ("' + net + '.2", 9999))',
  's.sendto(data[::-1], ("' + net + '.2", 9999))',
].join('\n')]);
const SLOT = 2048, MAX = 3;
const buf = new Uint8Array(SLOT * MAX), lens = new Uint32Array(MAX);
const segs = [];
const end = Date.now() + 3000;
while (segs.length < 20 && Date.now() < end) {
  const k = n.tunReadBatchVnet(tun.fd, buf, SLOT, lens, MAX);
  for (let i = 0; i < k; i++) {
    const p = buf.subarray(i * SLOT, i * SLOT + lens[i]);
    if (p[0] >> 4 === 4 && p[9] === 17 && ((p[22] << 8) | p[23]) === 9999) segs.push(Buffer.from(p).toString('hex'));
  }
}
const counters = n.offloadCounters();
// UDP_SEGMENT refused: segments bigger than the route's MTU make sendmsg fail; the addon tries the
// datagrams one by one instead. keymesh's sockets never fragment (IP_PMTUDISC_PROBE: path MTU is
// src/core/pmtu.ts's business), so those fail too — with a local EMSGSIZE report naming the MTU on
// the error queue — while datagrams that fit go out in one UDP_SEGMENT send.
ip('link', 'set', name, 'mtu', '1280');
const u = n.udpOpen(0);
const gso = n.udpOffload(u.fd).gso;
const COUNT = 10, LEN = 1400;
const sbuf = new Uint8Array(COUNT * LEN), offs = new Uint32Array(COUNT), slens = new Uint32Array(COUNT).fill(LEN);
const addrs = new Uint8Array(16 * COUNT), ports = new Uint16Array(COUNT).fill(9999);
const dst = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, ...net.split('.').map(Number), 2];
for (let i = 0; i < COUNT; i++) { offs[i] = i * LEN; addrs.set(dst, i * 16); }
const f0 = n.offloadCounters().udpGsoFallbacks;
const sent = n.udpSendBatchGso(u.fd, sbuf, offs, slens, addrs, ports, COUNT);
const fallbacks = n.offloadCounters().udpGsoFallbacks - f0;
const reports = n.udpErrors(u.fd).map((r) => ({ origin: r.origin, info: r.info }));
slens.fill(1200);
const fit = n.udpSendBatchGso(u.fd, sbuf, offs, slens, addrs, ports, COUNT);
const routeMtu = n.routeMtu(new Uint8Array(dst));
console.log(JSON.stringify({ offload: tun.offload, segs, counters, refused: { gso, sent, fallbacks, reports, fit, routeMtu } }));
n.closeFd(u.fd);
n.closeFd(tun.fd);
`;

const isRoot = process.getuid?.() === 0;
const hasTools = spawnSync('ip', ['-V']).status === 0 && spawnSync('python3', ['--version']).status === 0;
const tunSkip = skip || (!isRoot ? 'not root' : !hasTools ? 'ip or python3 missing' : false);

describe.skipIf(tunSkip)('offload: a real TUN device with IFF_VNET_HDR', () => {
  const tag = randomBytes(3).toString('hex');
  const ns = `km-off-${tag}`;
  const net = `10.${100 + (randomBytes(1)[0] % 100)}.${randomBytes(1)[0]}`;
  let dir = '';
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let last: any = null; // the child's report, shared by the two tests below
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'km-offload-'));
    chmodSync(dir, 0o755);
    copyFileSync(native.addonPath(), path.join(dir, 'keymesh_native.node'));
    writeFileSync(path.join(dir, 'uso.mjs'), USO_CHILD);
    execFileSync('ip', ['netns', 'add', ns]);
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('UDP_SEGMENT sends through the TUN come out as checked datagrams, none lost across 3-slot reads', async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile('ip', ['netns', 'exec', ns, process.execPath, path.join(dir, 'uso.mjs'), path.join(dir, 'keymesh_native.node'), `kmo${tag}`, net], { timeout: 15_000 }, (e, stdout, stderr) =>
        e ? reject(new Error(`${e.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const r = (last = JSON.parse(out.trim().split('\n').at(-1)!));
    expect(r.offload).toMatchObject({ vnetHdr: true, csum: true, tso4: true, tso6: true });
    const segs: Uint8Array[] = r.segs.map((h: string) => new Uint8Array(Buffer.from(h, 'hex')));
    expect(segs.length).toBe(20);
    const payloads = segs.map((s) => Buffer.from(check(s).payload));
    expect(payloads.map((p) => p.length)).toEqual([...Array(9).fill(1000), 500, ...Array(9).fill(1000), 500]);
    const data = Buffer.from(Array.from({ length: 9500 }, (_, i) => (i * 7 + 3) & 255));
    expect(Buffer.concat(payloads.slice(0, 10))).toEqual(data);
    expect(Buffer.concat(payloads.slice(10))).toEqual(Buffer.from(data).reverse());
    // with USO granted the kernel handed over super-packets and the addon split them
    if (r.offload.uso) expect(r.counters.tunSuperRead).toBeGreaterThanOrEqual(2);
  });

  it('when the kernel refuses UDP_SEGMENT (segment larger than the path MTU), the datagrams are tried one by one and never fragmented', () => {
    const r = last.refused;
    expect({ gso: r.gso, sent: r.sent, fallbacks: r.fallbacks }).toEqual({ gso: true, sent: 0, fallbacks: 1 });
    // what the kernel knows reaches keymesh: a local EMSGSIZE report with the MTU, and the route's MTU
    expect(r.reports.length).toBeGreaterThan(0);
    expect(r.reports.every((x: { origin: number; info: number }) => x.origin === 1 && x.info === 1280)).toBe(true);
    expect(r.routeMtu).toBe(1280);
    expect(r.fit).toBe(10);
  });
});
