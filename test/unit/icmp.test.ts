/**
 * The ICMP errors of the tunnel edge, decoded field by field by the naive parser of
 * support/naive-inet.ts and checked with its word-at-a-time one's complement sum: ICMPv4
 * "fragmentation needed" (RFC 1191 §4), ICMPv6 Packet Too Big (RFC 4443 §3.2), every case where
 * no error may be sent, and the rate limit against a millisecond-by-millisecond twin.
 */
import { describe, expect, it } from 'vitest';
import { finishChecksum, sumIPv4Pseudo, sumIPv6Pseudo, sumWords } from '../../src/core/checksum.js';
import { IcmpRateLimit, writeFragNeeded, writePacketTooBig } from '../../src/core/icmp.js';
import {
  buildV4,
  buildV6,
  concat,
  naiveSum,
  parseIcmp,
  parseV4,
  parseV6,
  prng,
  pseudo4,
  pseudo6,
  randomBytes,
  v4,
  v6,
} from './support/naive-inet.js';

const rnd = prng(1191);

/** Decode and check everything a fragmentation-needed reply to `pkt` must be. */
function checkFragNeeded(reply: Uint8Array, pkt: Uint8Array, mtu: number): void {
  const ip = parseV4(reply);
  expect(ip.version).toBe(4);
  expect(ip.ihl).toBe(5);
  expect(ip.totalLength).toBe(reply.length);
  expect(ip.df).toBe(false);
  expect(ip.mf).toBe(false);
  expect(ip.fragOffset).toBe(0);
  expect(ip.ttl).toBe(64);
  expect(ip.protocol).toBe(1);
  expect(naiveSum(reply.subarray(0, 20))).toBe(0xffff);
  const orig = parseV4(pkt);
  expect(ip.src).toEqual(orig.dst);
  expect(ip.dst).toEqual(orig.src);
  const icmp = parseIcmp(reply.subarray(20));
  expect(icmp.type).toBe(3);
  expect(icmp.code).toBe(4);
  expect(icmp.rest >>> 16).toBe(0); // unused
  expect(icmp.rest & 0xffff).toBe(mtu);
  expect(naiveSum(reply.subarray(20))).toBe(0xffff);
  // quote: the packet's own bytes, as many as fit 576, never fewer than header + 8 (or all)
  const total = orig.totalLength;
  expect(reply.length).toBeLessThanOrEqual(576);
  expect(icmp.body.length).toBe(Math.min(total, 576 - 28));
  expect(icmp.body.length).toBeGreaterThanOrEqual(Math.min(total, orig.ihl * 4 + 8));
  expect(icmp.body).toEqual(pkt.subarray(0, icmp.body.length));
}

function fragNeeded(pkt: Uint8Array, mtu = 1280, len = pkt.length): Uint8Array | 0 {
  const out = new Uint8Array(600);
  const n = writeFragNeeded(out, 0, pkt, 0, len, mtu);
  return n === 0 ? 0 : out.slice(0, n);
}

describe('writeFragNeeded', () => {
  it('answers a large UDP packet: addresses swapped, MTU, checksums, 576-byte cap', () => {
    const pkt = buildV4({ src: '10.1.2.3', dst: '192.0.2.77', df: true, tos: 0x2e, ttl: 17, payload: randomBytes(rnd, 1480) });
    const reply = fragNeeded(pkt, 1372);
    expect(reply).not.toBe(0);
    const r = reply as Uint8Array;
    expect(r.length).toBe(576);
    checkFragNeeded(r, pkt, 1372);
    expect(parseV4(r).src).toEqual(v4('192.0.2.77'));
    expect(parseV4(r).dst).toEqual(v4('10.1.2.3'));
  });

  it('quotes a short packet whole, and header + options + 8 bytes', () => {
    const small = buildV4({ payload: randomBytes(rnd, 12), df: true });
    checkFragNeeded(fragNeeded(small) as Uint8Array, small, 1280);
    expect((fragNeeded(small) as Uint8Array).length).toBe(28 + 32);
    const opts = new Uint8Array(40).fill(1); // 40 NOPs: IHL 15
    const withOpts = buildV4({ options: opts, payload: randomBytes(rnd, 8), df: true });
    const r = fragNeeded(withOpts) as Uint8Array;
    checkFragNeeded(r, withOpts, 1280);
    expect(r.length).toBe(28 + 68);
  });

  it('quotes only the declared total length, not bytes after it', () => {
    const pkt = buildV4({ payload: randomBytes(rnd, 30), df: true });
    const padded = concat(pkt, [0xaa, 0xbb, 0xcc]);
    const r = fragNeeded(padded) as Uint8Array;
    expect(r.length).toBe(28 + pkt.length);
    checkFragNeeded(r, pkt, 1280);
  });

  it('writes at outOff and needs exactly the reply’s room there', () => {
    const pkt = buildV4({ payload: randomBytes(rnd, 100), df: true });
    const need = 28 + pkt.length;
    const out = new Uint8Array(7 + need);
    expect(writeFragNeeded(out, 7, pkt, 0, pkt.length, 1400)).toBe(need);
    checkFragNeeded(out.slice(7), pkt, 1400);
    expect(writeFragNeeded(new Uint8Array(6 + need), 7, pkt, 0, pkt.length, 1400)).toBe(0);
    expect(writeFragNeeded(new Uint8Array(need - 1), 0, pkt, 0, pkt.length, 1400)).toBe(0);
  });

  it('reads the packet at off..off+len of a larger buffer', () => {
    const pkt = buildV4({ payload: randomBytes(rnd, 700), df: true });
    const buf = concat(randomBytes(rnd, 13), pkt, randomBytes(rnd, 9));
    const out = new Uint8Array(576);
    expect(writeFragNeeded(out, 0, buf, 13, pkt.length, 1300)).toBe(576);
    checkFragNeeded(out, pkt, 1300);
  });

  it('may write over the packet itself (in place)', () => {
    const pkt = buildV4({ payload: randomBytes(rnd, 900), df: true });
    const expected = fragNeeded(pkt, 1300) as Uint8Array;
    const buf = concat(pkt, new Uint8Array(28));
    expect(writeFragNeeded(buf, 0, buf, 0, pkt.length, 1300)).toBe(576);
    expect(buf.subarray(0, 576)).toEqual(expected);
  });

  it('answers ICMP queries but no ICMP error (types 3, 4, 5, 11, 12)', () => {
    for (const type of [0, 8, 13, 14, 17]) {
      const pkt = buildV4({ protocol: 1, payload: [type, 0, 0, 0, 1, 2, 3, 4], df: true });
      expect(fragNeeded(pkt), `type ${type}`).not.toBe(0);
    }
    for (const type of [3, 4, 5, 11, 12]) {
      const pkt = buildV4({ protocol: 1, payload: [type, 0, 0, 0, 1, 2, 3, 4], df: true });
      expect(fragNeeded(pkt), `type ${type}`).toBe(0);
    }
    // an ICMP packet too short to show its type might be an error
    expect(fragNeeded(buildV4({ protocol: 1, payload: [], df: true }))).toBe(0);
    // the same type byte in another protocol is just data
    expect(fragNeeded(buildV4({ protocol: 17, payload: [3, 4, 0, 0], df: true }))).not.toBe(0);
  });

  it('answers a first fragment but not a later one', () => {
    expect(fragNeeded(buildV4({ mf: true, payload: randomBytes(rnd, 64) }))).not.toBe(0);
    expect(fragNeeded(buildV4({ fragOffset: 1, payload: randomBytes(rnd, 64) }))).toBe(0);
    expect(fragNeeded(buildV4({ fragOffset: 0x1000, mf: true, payload: randomBytes(rnd, 64) }))).toBe(0);
  });

  it('is silent for sources that are not one host', () => {
    for (const src of ['0.0.0.0', '0.1.2.3', '127.0.0.1', '224.0.0.1', '239.255.255.250', '240.0.0.1', '255.255.255.255']) {
      expect(fragNeeded(buildV4({ src, payload: randomBytes(rnd, 40), df: true })), src).toBe(0);
    }
    for (const src of ['1.0.0.0', '126.255.255.255', '128.0.0.1', '223.255.255.255']) {
      expect(fragNeeded(buildV4({ src, dst: '10.9.9.9', payload: randomBytes(rnd, 40), df: true })), src).not.toBe(0);
    }
  });

  it('is silent for multicast and broadcast destinations (and others that cannot be our source)', () => {
    for (const dst of ['224.0.0.1', '239.1.2.3', '255.255.255.255', '240.0.0.9', '0.0.0.0', '127.0.0.53']) {
      expect(fragNeeded(buildV4({ dst, payload: randomBytes(rnd, 40), df: true })), dst).toBe(0);
    }
  });

  it('is silent when the packet’s source equals its destination', () => {
    expect(fragNeeded(buildV4({ src: '10.0.0.5', dst: '10.0.0.5', payload: randomBytes(rnd, 40), df: true }))).toBe(0);
  });

  it('returns 0 for malformed packets', () => {
    const good = buildV4({ payload: randomBytes(rnd, 40), df: true });
    expect(fragNeeded(good)).not.toBe(0);
    const bad = (f: (p: Uint8Array) => void, len?: number) => {
      const p = good.slice();
      f(p);
      return fragNeeded(p, 1280, len ?? p.length);
    };
    expect(bad((p) => (p[0] = 0x65))).toBe(0); // version 6
    expect(bad((p) => (p[0] = 0x44))).toBe(0); // IHL 4
    expect(bad(() => {}, 19)).toBe(0); // shorter than any header
    expect(bad((p) => ((p[2] = 0), (p[3] = 61)))).toBe(0); // total length > len
    expect(bad((p) => ((p[2] = 0), (p[3] = 19)))).toBe(0); // total length < IHL*4
    expect(fragNeeded(good, 1280, good.length + 1)).toBe(0); // len past the buffer
    // IHL 6 with len 23: header longer than the bytes given
    const short = good.slice(0, 23);
    short[0] = 0x46;
    expect(fragNeeded(short, 1280, 23)).toBe(0);
  });

  it('rejects an MTU field it cannot express', () => {
    const pkt = buildV4({ payload: randomBytes(rnd, 40), df: true });
    expect(() => writeFragNeeded(new Uint8Array(600), 0, pkt, 0, pkt.length, 67)).toThrow(RangeError);
    expect(() => writeFragNeeded(new Uint8Array(600), 0, pkt, 0, pkt.length, 65536)).toThrow(RangeError);
    expect(() => writeFragNeeded(new Uint8Array(600), 0, pkt, 0, pkt.length, 1280.5)).toThrow(RangeError);
  });

  it('random packets: every reply decodes right', () => {
    for (let n = 0; n < 1000; n++) {
      const optLen = rnd(3) === 0 ? 4 * rnd(11) : 0;
      const pkt = buildV4({
        src: `${1 + rnd(126)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`,
        dst: `${128 + rnd(96)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`,
        protocol: rnd(2) ? 6 : 17,
        tos: rnd(256),
        ttl: 1 + rnd(255),
        id: rnd(65536),
        df: true,
        options: new Uint8Array(optLen).fill(1),
        payload: randomBytes(rnd, rnd(1600)),
      });
      const mtu = 68 + rnd(1500);
      const r = fragNeeded(pkt, mtu);
      expect(r).not.toBe(0);
      checkFragNeeded(r as Uint8Array, pkt, mtu);
    }
  });
});

/** Decode and check everything a Packet Too Big reply to `pkt` must be. */
function checkPacketTooBig(reply: Uint8Array, pkt: Uint8Array, mtu: number, source?: Uint8Array): void {
  const ip = parseV6(reply);
  expect(ip.version).toBe(6);
  expect(ip.payloadLength).toBe(reply.length - 40);
  expect(ip.nextHeader).toBe(58);
  expect(ip.hopLimit).toBe(64);
  const orig = parseV6(pkt);
  expect(ip.src).toEqual(source ?? orig.dst);
  expect(ip.dst).toEqual(orig.src);
  const icmp = parseIcmp(reply.subarray(40));
  expect(icmp.type).toBe(2);
  expect(icmp.code).toBe(0);
  expect(icmp.rest).toBe(mtu);
  expect(naiveSum(concat(pseudo6(ip.src, ip.dst, 58, ip.payloadLength), reply.subarray(40)))).toBe(0xffff);
  const total = 40 + orig.payloadLength;
  expect(reply.length).toBeLessThanOrEqual(1280);
  expect(icmp.body.length).toBe(Math.min(total, 1280 - 48));
  expect(icmp.body).toEqual(pkt.subarray(0, icmp.body.length));
}

function packetTooBig(pkt: Uint8Array, mtu = 1280, localSource?: Uint8Array, len = pkt.length): Uint8Array | 0 {
  const out = new Uint8Array(1400);
  const n = writePacketTooBig(out, 0, pkt, 0, len, mtu, localSource);
  return n === 0 ? 0 : out.slice(0, n);
}

/** An extension header of `size` bytes (a multiple of 8) naming `next`. */
function extHeader(next: number, size: number): number[] {
  const h = new Array(size).fill(0);
  h[0] = next;
  h[1] = size / 8 - 1;
  return h;
}

describe('writePacketTooBig', () => {
  it('answers a large packet: addresses swapped, 32-bit MTU, pseudo-header checksum, 1280-byte cap', () => {
    const pkt = buildV6({ src: '2001:db8::1', dst: '2001:db8:77::9', payload: randomBytes(rnd, 1460) });
    const r = packetTooBig(pkt, 1400) as Uint8Array;
    expect(r.length).toBe(1280);
    checkPacketTooBig(r, pkt, 1400);
    expect(parseV6(r).src).toEqual(v6('2001:db8:77::9'));
    expect(parseV6(r).dst).toEqual(v6('2001:db8::1'));
    const big = packetTooBig(pkt, 0x12345678) as Uint8Array;
    checkPacketTooBig(big, pkt, 0x12345678);
    expect(Array.from(big.subarray(44, 48))).toEqual([0x12, 0x34, 0x56, 0x78]);
  });

  it('quotes a short packet whole, and not bytes past the payload length', () => {
    const pkt = buildV6({ payload: randomBytes(rnd, 20) });
    const r = packetTooBig(concat(pkt, [1, 2, 3])) as Uint8Array;
    expect(r.length).toBe(48 + 60);
    checkPacketTooBig(r, pkt, 1280);
  });

  it('writes at outOff and needs exactly the reply’s room there; may write in place', () => {
    const pkt = buildV6({ payload: randomBytes(rnd, 300) });
    const need = 48 + pkt.length;
    const out = new Uint8Array(5 + need);
    expect(writePacketTooBig(out, 5, pkt, 0, pkt.length, 1300)).toBe(need);
    checkPacketTooBig(out.slice(5), pkt, 1300);
    expect(writePacketTooBig(new Uint8Array(4 + need), 5, pkt, 0, pkt.length, 1300)).toBe(0);
    const buf = concat(pkt, new Uint8Array(48));
    expect(writePacketTooBig(buf, 0, buf, 0, pkt.length, 1300)).toBe(need);
    expect(buf.slice(0, need)).toEqual(out.slice(5));
  });

  it('answers ICMPv6 informational messages but no ICMPv6 error (types < 128)', () => {
    for (const type of [128, 129, 135, 255]) {
      expect(packetTooBig(buildV6({ nextHeader: 58, payload: [type, 0, 0, 0, 0, 0, 0, 0] })), `type ${type}`).not.toBe(0);
    }
    for (const type of [0, 1, 2, 3, 4, 127]) {
      expect(packetTooBig(buildV6({ nextHeader: 58, payload: [type, 0, 0, 0, 0, 0, 0, 0] })), `type ${type}`).toBe(0);
    }
    expect(packetTooBig(buildV6({ nextHeader: 58, payload: [] }))).toBe(0);
    expect(packetTooBig(buildV6({ nextHeader: 17, payload: [1, 0, 0, 0] }))).not.toBe(0);
  });

  it('finds an ICMPv6 error behind extension headers', () => {
    const err = [1, 4, 0, 0, 0, 0, 0, 0];
    const behind = (nh: number, ...hs: number[][]) => buildV6({ nextHeader: nh, payload: concat(...hs, err) });
    expect(packetTooBig(behind(0, extHeader(58, 8)))).toBe(0); // hop-by-hop
    expect(packetTooBig(behind(60, extHeader(43, 16), extHeader(58, 8)))).toBe(0); // dest opts, routing
    // a first fragment (offset 0, M set) still shows the error
    expect(packetTooBig(behind(44, [58, 0, 0, 1, 0, 0, 0, 7]))).toBe(0);
    // AH counts its length in 4-byte units less 2: 24 bytes here, then the ICMPv6 header
    const ah = [58, 4, ...new Array(22).fill(0)];
    expect(packetTooBig(behind(51, ah))).toBe(0);
    expect(packetTooBig(buildV6({ nextHeader: 51, payload: concat(ah, [128, 0, 0, 0, 0, 0, 0, 0]) }))).not.toBe(0);
    // an echo request behind them is answered
    const echo = [128, 0, 0, 0, 0, 0, 0, 0];
    expect(packetTooBig(buildV6({ nextHeader: 0, payload: concat(extHeader(58, 8), echo) }))).not.toBe(0);
    // a later fragment holds no ICMPv6 header: answered
    expect(packetTooBig(buildV6({ nextHeader: 44, payload: concat([58, 0, 0, 0x10, 0, 0, 0, 7], err) }))).not.toBe(0);
    // a chain that runs past the packet is malformed
    expect(packetTooBig(buildV6({ nextHeader: 0, payload: [58] }))).toBe(0);
    expect(packetTooBig(buildV6({ nextHeader: 44, payload: [58, 0, 0, 0] }))).toBe(0);
  });

  it('is silent for the unspecified, multicast and loopback sources', () => {
    for (const src of ['::', 'ff02::1', 'ff0e::1234', '::1']) {
      expect(packetTooBig(buildV6({ src, payload: randomBytes(rnd, 40) })), src).toBe(0);
    }
    expect(packetTooBig(buildV6({ src: 'fe80::1', payload: randomBytes(rnd, 40) }))).not.toBe(0);
  });

  it('answers a multicast destination from the local unicast source given, and only then', () => {
    const pkt = buildV6({ src: 'fd00::7', dst: 'ff0e::101', payload: randomBytes(rnd, 1400) });
    expect(packetTooBig(pkt)).toBe(0);
    const me = v6('fd00::1');
    const r = packetTooBig(pkt, 1320, me) as Uint8Array;
    checkPacketTooBig(r, pkt, 1320, me);
    // a unicast destination still answers from itself, whatever localSource says
    const uni = buildV6({ src: 'fd00::7', dst: 'fd00::9', payload: randomBytes(rnd, 100) });
    checkPacketTooBig(packetTooBig(uni, 1320, me) as Uint8Array, uni, 1320);
  });

  it('is silent for destinations that cannot be our source, and for source = destination', () => {
    expect(packetTooBig(buildV6({ dst: '::', payload: randomBytes(rnd, 40) }))).toBe(0);
    expect(packetTooBig(buildV6({ dst: '::1', payload: randomBytes(rnd, 40) }))).toBe(0);
    expect(packetTooBig(buildV6({ src: 'fd00::5', dst: 'fd00::5', payload: randomBytes(rnd, 40) }))).toBe(0);
  });

  it('returns 0 for malformed packets and without room', () => {
    const good = buildV6({ payload: randomBytes(rnd, 40) });
    expect(packetTooBig(good)).not.toBe(0);
    const v4pkt = good.slice();
    v4pkt[0] = 0x45;
    expect(packetTooBig(v4pkt)).toBe(0);
    expect(packetTooBig(good.slice(0, 39), 1280, undefined, 39)).toBe(0);
    const long = good.slice();
    long[5] = 41; // payload length past the bytes given
    expect(packetTooBig(long)).toBe(0);
    expect(packetTooBig(good, 1280, undefined, good.length + 1)).toBe(0);
    expect(writePacketTooBig(new Uint8Array(48 + good.length - 1), 0, good, 0, good.length, 1280)).toBe(0);
  });

  it('rejects misuse: MTU below 1280, a localSource that is not 16 unicast bytes', () => {
    const pkt = buildV6({ payload: randomBytes(rnd, 40) });
    const out = new Uint8Array(1400);
    expect(() => writePacketTooBig(out, 0, pkt, 0, pkt.length, 1279)).toThrow(RangeError);
    expect(() => writePacketTooBig(out, 0, pkt, 0, pkt.length, 2 ** 32)).toThrow(RangeError);
    expect(() => writePacketTooBig(out, 0, pkt, 0, pkt.length, 1280, new Uint8Array(4))).toThrow(/16 bytes/);
    expect(() => writePacketTooBig(out, 0, pkt, 0, pkt.length, 1280, v6('ff02::1'))).toThrow(RangeError);
  });

  it('random packets: every reply decodes right', () => {
    for (let n = 0; n < 1000; n++) {
      const hex = () => rnd(65536).toString(16);
      const pkt = buildV6({
        src: `2001:db8:${hex()}::${hex()}`,
        dst: `fd${rnd(256).toString(16).padStart(2, '0')}:${hex()}::${hex()}:${hex()}`,
        nextHeader: rnd(2) ? 6 : 17,
        hopLimit: rnd(256),
        payload: randomBytes(rnd, rnd(3000)),
      });
      const mtu = 1280 + rnd(8000);
      const r = packetTooBig(pkt, mtu);
      expect(r).not.toBe(0);
      checkPacketTooBig(r as Uint8Array, pkt, mtu);
    }
  });
});

/** The naive twin: the bucket filled one millisecond at a time. */
class TickBucket {
  private tokensMilli: number; // thousandths of a token
  private t: number | null = null;
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokensMilli = burst * 1000;
  }
  allow(now: number): boolean {
    if (this.t === null) this.t = now;
    while (this.t < now) {
      this.t++;
      this.tokensMilli = Math.min(this.burst * 1000, this.tokensMilli + this.perSecond);
    }
    if (this.tokensMilli < 1000) return false;
    this.tokensMilli -= 1000;
    return true;
  }
}

describe('IcmpRateLimit', () => {
  it('allows a burst of 20, then 100 a second', () => {
    const rl = new IcmpRateLimit();
    for (let i = 0; i < 20; i++) expect(rl.allow(1000)).toBe(true);
    expect(rl.allow(1000)).toBe(false);
    expect(rl.allow(1009)).toBe(false);
    expect(rl.allow(1010)).toBe(true);
    expect(rl.allow(1010)).toBe(false);
    // a second of silence refills 100, capped at the burst
    let n = 0;
    while (rl.allow(3000)) n++;
    expect(n).toBe(20);
  });

  it('a clock going backwards refills nothing', () => {
    const rl = new IcmpRateLimit(10, 1);
    expect(rl.allow(5000)).toBe(true);
    expect(rl.allow(0)).toBe(false);
    expect(rl.allow(5099)).toBe(false);
    expect(rl.allow(5100)).toBe(true);
  });

  it('matches a millisecond-by-millisecond bucket on random schedules', () => {
    for (const [perSecond, burst] of [
      [100, 20],
      [1, 1],
      [7, 3],
      [1000, 5],
      [2500, 50],
    ]) {
      const rl = new IcmpRateLimit(perSecond, burst);
      const twin = new TickBucket(perSecond, burst);
      let now = 10_000 + rnd(1000);
      let allowed = 0;
      for (let i = 0; i < 5000; i++) {
        now += rnd(4) === 0 ? rnd(200) : 0;
        const a = rl.allow(now);
        expect(a, `perSecond ${perSecond} burst ${burst} step ${i}`).toBe(twin.allow(now));
        if (a) allowed++;
      }
      expect(allowed).toBeGreaterThan(0);
    }
  });

  it('rejects a bad configuration', () => {
    expect(() => new IcmpRateLimit(0)).toThrow(RangeError);
    expect(() => new IcmpRateLimit(Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(() => new IcmpRateLimit(100, 0)).toThrow(RangeError);
    expect(() => new IcmpRateLimit(100, 1.5)).toThrow(RangeError);
  });
});

describe('checksum helpers', () => {
  it('agree with the word-at-a-time sum, odd lengths and pseudo-headers included', () => {
    for (let n = 0; n < 500; n++) {
      const b = randomBytes(rnd, rnd(3000));
      const off = rnd(Math.max(1, b.length));
      const len = rnd(b.length - off + 1);
      expect(finishChecksum(sumWords(b, off, len, 0))).toBe(0xffff - naiveSum(b.subarray(off, off + len)));
      const a = randomBytes(rnd, 40);
      const upper = rnd(2) ? rnd(65536) : 65536 + rnd(1 << 24); // jumbogram lengths too (RFC 2675)
      const nh = rnd(256);
      expect(finishChecksum(sumIPv6Pseudo(a, 8, a, 24, upper, nh) + sumWords(b, 0, b.length, 0))).toBe(
        0xffff - naiveSum(concat(pseudo6(a.subarray(8, 24), a.subarray(24, 40), nh, upper), b)),
      );
      const p4 = upper & 0xffff;
      expect(finishChecksum(sumIPv4Pseudo(a, 0, p4, nh) + sumWords(b, 0, b.length, 0))).toBe(
        0xffff - naiveSum(concat(pseudo4(a.subarray(12, 16), a.subarray(16, 20), nh, p4), b)),
      );
    }
  });
});
