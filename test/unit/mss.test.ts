/**
 * MSS clamping against a full recomputation: SYNs over IPv4 and IPv6 with the MSS option in
 * various places (first, after NOPs, after SACK-permitted, timestamps, window scale; at even and
 * odd distances from the TCP header), their TCP checksum after the incremental update compared
 * with the naive sum over the pseudo-header and the whole segment; the packets that must be left
 * alone byte for byte; mssFor.
 */
import { describe, expect, it } from 'vitest';
import { clampMss, isTcpSyn, mssFor } from '../../src/core/mss.js';
import { buildV4, buildV6, concat, naiveChecksum, parseV4, parseV6, prng, pseudo4, pseudo6, randomBytes } from './support/naive-inet.js';

const rnd = prng(1624);

const SYN = 0x02;
const ACK = 0x10;
const MSS = (v: number) => [2, 4, v >> 8, v & 0xff];
const NOP = [1];
const SACK_OK = [4, 2];
const WSCALE = [3, 3, 7];
const TS = [8, 10, 1, 2, 3, 4, 0, 0, 0, 0];

/** A TCP header with the given options (padded with EOL to 4 bytes) and data; checksum zero. */
function tcpSegment(flags: number, options: number[], data: ArrayLike<number> = []): Uint8Array {
  const opts = options.slice();
  while (opts.length % 4 !== 0) opts.push(0);
  const h = new Uint8Array(20 + opts.length);
  h[0] = 0xc3; // source port 50000
  h[1] = 0x50;
  h[2] = 0x01; // destination port 443
  h[3] = 0xbb;
  h.set([0x12, 0x34, 0x56, 0x78], 4); // sequence number
  h[12] = (h.length / 4) << 4;
  h[13] = flags;
  h[14] = 0xfa; // window
  h[15] = 0xf0;
  h.set(opts, 20);
  return concat(h, data);
}

/** The TCP checksum the naive sum gives for the segment in an IPv4 or IPv6 packet. */
function fullTcpChecksum(pkt: Uint8Array): number {
  const v = pkt[0] >> 4;
  const tcpStart = v === 4 ? (pkt[0] & 15) * 4 : 40;
  const seg = pkt.slice(tcpStart, v === 4 ? parseV4(pkt).totalLength : 40 + parseV6(pkt).payloadLength);
  seg[16] = 0;
  seg[17] = 0;
  if (v === 4) {
    const ip = parseV4(pkt);
    return naiveChecksum(concat(pseudo4(ip.src, ip.dst, 6, seg.length), seg));
  }
  const ip = parseV6(pkt);
  return naiveChecksum(concat(pseudo6(ip.src, ip.dst, 6, seg.length), seg));
}

function withChecksum(pkt: Uint8Array): Uint8Array {
  const tcpStart = pkt[0] >> 4 === 4 ? (pkt[0] & 15) * 4 : 40;
  const c = fullTcpChecksum(pkt);
  pkt[tcpStart + 16] = c >> 8;
  pkt[tcpStart + 17] = c & 0xff;
  return pkt;
}

function syn4(options: number[], flags = SYN, data: ArrayLike<number> = [], ipOptions: number[] = []): Uint8Array {
  return withChecksum(buildV4({ protocol: 6, src: '10.0.0.1', dst: '93.184.216.34', options: ipOptions, payload: tcpSegment(flags, options, data) }));
}

function syn6(options: number[], flags = SYN, data: ArrayLike<number> = []): Uint8Array {
  return withChecksum(buildV6({ nextHeader: 6, src: '2001:db8::1', dst: '2001:db8:ffff::2', payload: tcpSegment(flags, options, data) }));
}

function mssAt(pkt: Uint8Array): number | null {
  const tcpStart = pkt[0] >> 4 === 4 ? (pkt[0] & 15) * 4 : 40;
  const end = tcpStart + (pkt[tcpStart + 12] >> 4) * 4;
  for (let i = tcpStart + 20; i < end; ) {
    if (pkt[i] === 0) return null;
    if (pkt[i] === 1) {
      i++;
      continue;
    }
    if (pkt[i] === 2) return (pkt[i + 2] << 8) | pkt[i + 3];
    i += pkt[i + 1];
  }
  return null;
}

/** Clamp and check: the MSS lowered, the checksum what a full recomputation gives, nothing else changed. */
function expectClamped(pkt: Uint8Array, maxMss: number): void {
  const before = pkt.slice();
  const tcpStart = pkt[0] >> 4 === 4 ? (pkt[0] & 15) * 4 : 40;
  expect(clampMss(pkt, 0, pkt.length, maxMss)).toBe(true);
  expect(mssAt(pkt)).toBe(maxMss);
  const stored = (pkt[tcpStart + 16] << 8) | pkt[tcpStart + 17];
  expect(stored).toBe(fullTcpChecksum(pkt));
  let changed = 0;
  for (let i = 0; i < pkt.length; i++) if (pkt[i] !== before[i]) changed++;
  expect(changed).toBeGreaterThan(0);
  expect(changed).toBeLessThanOrEqual(4); // two MSS bytes, two checksum bytes
}

function expectUntouched(pkt: Uint8Array, maxMss = 1000, len = pkt.length): void {
  const before = pkt.slice();
  expect(clampMss(pkt, 0, len, maxMss)).toBe(false);
  expect(pkt).toEqual(before);
}

describe('clampMss', () => {
  const layouts: Array<[string, number[]]> = [
    ['MSS first', MSS(1460)],
    ['NOP, MSS (value at an odd distance)', [...NOP, ...MSS(1460)]],
    ['NOP, NOP, MSS', [...NOP, ...NOP, ...MSS(8960)]],
    ['SACK-permitted, MSS', [...SACK_OK, ...MSS(1440)]],
    ['window scale, MSS (odd)', [...WSCALE, ...MSS(1460)]],
    ['NOP, timestamps, MSS (odd)', [...NOP, ...TS, ...MSS(65535)]],
    ['Linux order: MSS, SACK-permitted, timestamps, NOP, window scale', [...MSS(1460), ...SACK_OK, ...TS, ...NOP, ...WSCALE]],
    ['macOS order: MSS, NOP, wscale, NOP, NOP, TS, SACK-permitted, EOL', [...MSS(1460), ...NOP, ...WSCALE, ...NOP, ...NOP, ...TS, ...SACK_OK, 0]],
    ['unknown option (kind 30, length 6), MSS', [30, 6, 9, 9, 9, 9, ...MSS(1400)]],
    ['last in a full 40-byte option space', [...TS, ...TS, ...TS, ...NOP, ...NOP, ...NOP, ...NOP, ...NOP, ...NOP, ...MSS(1460)]],
  ];

  for (const [name, options] of layouts) {
    it(`IPv4 and IPv6: ${name}`, () => {
      expectClamped(syn4(options), 1380);
      expectClamped(syn6(options), 1360);
      expectClamped(syn4(options, SYN | ACK), 1200); // a SYN-ACK too
      expectClamped(syn4(options, SYN, randomBytes(rnd, 7)), 536); // odd-length segment with data
      expectClamped(syn4(options, SYN, [], [0x94, 4, 0, 0]), 1000); // IPv4 header with options
    });
  }

  it('random MSS values, maxima, payloads and layouts agree with a full recomputation', () => {
    const pieces = [NOP, SACK_OK, WSCALE, TS, [30, 3, 1], [31, 2]];
    for (let n = 0; n < 3000; n++) {
      const before: number[] = [];
      while (before.length < 20 && rnd(2) === 0) before.push(...pieces[rnd(pieces.length)]);
      const after: number[] = [];
      while (after.length < 10 && rnd(2) === 0) after.push(...pieces[rnd(pieces.length)]);
      const mss = 1 + rnd(65535);
      const maxMss = rnd(65536);
      const options = [...before, ...MSS(mss), ...after];
      if (options.length > 40) continue;
      const data = randomBytes(rnd, rnd(50));
      const pkt = rnd(2) === 0 ? syn4(options, SYN, data) : syn6(options, SYN, data);
      if (mss > maxMss) expectClamped(pkt, maxMss);
      else expectUntouched(pkt, maxMss);
    }
  });

  it("isTcpSyn (the data path's first look) lets through every packet clampMss would change, and no non-SYN", () => {
    for (let n = 0; n < 3000; n++) {
      const flags = rnd(2) === 0 ? SYN : rnd(2) === 0 ? ACK : SYN | ACK;
      const options = rnd(2) === 0 ? [...NOP, ...MSS(1460)] : [...WSCALE, ...MSS(9000), ...TS];
      const v4 = rnd(2) === 0;
      const pkt = v4 ? syn4(options, flags, randomBytes(rnd, rnd(20)), rnd(2) === 0 ? [1, 1, 1, 0] : []) : syn6(options, flags, []);
      const version = v4 ? 4 : 6;
      const first = isTcpSyn(pkt, 0, version);
      expect(first).toBe((flags & SYN) !== 0);
      if (clampMss(pkt.slice(), 0, pkt.length, 1200)) expect(first).toBe(true);
    }
    // not TCP, or too short to say: not a SYN
    expect(isTcpSyn(buildV4({ protocol: 17, payload: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2] }), 0, 4)).toBe(false);
    expect(isTcpSyn(buildV4({ protocol: 6, payload: [1, 2] }), 0, 4)).toBe(false);
  });

  it('leaves a small-enough MSS alone', () => {
    expectUntouched(syn4(MSS(1200)), 1380);
    expectUntouched(syn4(MSS(1380)), 1380);
    expectUntouched(syn6([...NOP, ...MSS(536)]), 1360);
  });

  it('leaves a SYN without MSS option alone', () => {
    expectUntouched(syn4([]));
    expectUntouched(syn4([...SACK_OK, ...TS, ...NOP, ...WSCALE]));
    expectUntouched(syn6([...NOP, ...NOP, ...TS]));
  });

  it('leaves segments without SYN alone', () => {
    expectUntouched(syn4(MSS(1460), ACK));
    expectUntouched(syn4(MSS(1460), 0x18)); // PSH, ACK
    expectUntouched(syn4(MSS(1460), 0x01)); // FIN
    expectUntouched(syn6(MSS(1460), ACK));
  });

  it('leaves non-TCP packets alone', () => {
    const seg = tcpSegment(SYN, MSS(1460));
    expectUntouched(buildV4({ protocol: 17, payload: seg }));
    expectUntouched(buildV6({ nextHeader: 17, payload: seg }));
    // IPv6 extension headers are not walked: TCP behind hop-by-hop is not found
    expectUntouched(buildV6({ nextHeader: 0, payload: concat([6, 0, 1, 4, 0, 0, 0, 0], seg) }));
    const notIp = seg.slice();
    expectUntouched(notIp);
  });

  it('leaves IPv4 fragments past offset 0 alone, clamps a first fragment', () => {
    const later = withChecksum(buildV4({ protocol: 6, fragOffset: 3, payload: tcpSegment(SYN, MSS(1460)) }));
    expectUntouched(later);
    const first = withChecksum(buildV4({ protocol: 6, mf: true, payload: tcpSegment(SYN, MSS(1460)) }));
    expectClamped(first, 1380);
  });

  it('stops safely on malformed options', () => {
    const bad: Array<[string, number[]]> = [
      ['length 0 before MSS', [30, 0, ...MSS(1460)]],
      ['length 1 before MSS', [30, 1, 1, 1, ...MSS(1460)]],
      ['length past the header', [30, 40, ...MSS(1460)]],
      ['MSS with length 3', [2, 3, 5, 0xb4]],
      ['MSS with length 5', [2, 5, 5, 0xb4, 0]],
      ['MSS truncated by the data offset', [1, 1, 2, 4]],
      ['EOL before MSS', [0, ...MSS(1460)]],
      ['length byte missing at the end', [1, 1, 1, 30]],
    ];
    for (const [name, options] of bad) {
      const pkt = syn4(options);
      const before = pkt.slice();
      expect(clampMss(pkt, 0, pkt.length, 1000), name).toBe(false);
      expect(pkt, name).toEqual(before);
    }
    // an MSS option cut by the data offset, with data after the header that reads like its value
    const truncated = syn4([1, 1, 2, 4], SYN, [0x05, 0xb4]);
    expect(truncated.length).toBe(46);
    expectUntouched(truncated, 1000);
  });

  it('leaves malformed IP and TCP headers alone', () => {
    const good = syn4(MSS(1460));
    const broken = (f: (p: Uint8Array) => void, len?: number) => {
      const p = good.slice();
      f(p);
      expectUntouched(p, 1000, len ?? p.length);
    };
    broken(() => {}, 19); // shorter than an IPv4 header
    broken((p) => (p[0] = 0x44)); // IHL 4
    broken((p) => (p[3] += 1)); // total length past len
    broken((p) => ((p[2] = 0), (p[3] = 39))); // TCP header cut short
    broken((p) => (p[32] = 0x40)); // data offset 4 words
    broken((p) => (p[32] = 0xf0)); // data offset past the segment
    broken((p) => (p[0] = 0x75)); // version 7
    const good6 = syn6(MSS(1460));
    const b6 = good6.slice();
    b6[5] += 1; // payload length past len
    expectUntouched(b6);
    expectUntouched(good6.slice(), 1000, 39);
    expectUntouched(new Uint8Array(0), 1000, 0);
    // at an offset in a larger buffer it works
    const buf = concat([9, 9, 9], good, [9]);
    expect(clampMss(buf, 3, good.length, 1000)).toBe(true);
    expectClamped(buf.slice(3, 3 + good.length), 900);
  });

  it('rejects a maxMss that is no MSS', () => {
    const pkt = syn4(MSS(1460));
    expect(() => clampMss(pkt, 0, pkt.length, -1)).toThrow(RangeError);
    expect(() => clampMss(pkt, 0, pkt.length, 65536)).toThrow(RangeError);
    expect(() => clampMss(pkt, 0, pkt.length, 1.5)).toThrow(RangeError);
  });
});

describe('mssFor', () => {
  it('is the MTU less IP and TCP headers without options', () => {
    expect(mssFor(1420, 4)).toBe(1380);
    expect(mssFor(1420, 6)).toBe(1360);
    expect(mssFor(1500, 4)).toBe(1460);
    expect(mssFor(1280, 6)).toBe(1220); // RFC 9293's IPv6 default
    expect(mssFor(576, 4)).toBe(536); // and IPv4's
    expect(() => mssFor(40, 4)).toThrow(RangeError);
    expect(() => mssFor(1400.5, 6)).toThrow(RangeError);
  });
});
