/**
 * IPv4 fragmentation against a naive reassembler (RFC 815's view: each fragment's data placed at
 * offset × 8, the datagram complete when the pieces cover 0..the end marked by MF clear) on
 * random packets, with and without options, some already fragments; each fragment decoded field
 * by field and its header checksum checked with the naive sum; every case that must give 0.
 */
import { describe, expect, it } from 'vitest';
import { fragmentIPv4, fragmentIPv6, fragmentRoom } from '../../src/core/fragment.js';
import { buildV4, buildV6, naiveSum, parseV4, parseV6, prng, randomBytes, type V4Fields } from './support/naive-inet.js';

const rnd = prng(791);
const MAX_FRAGS = 1024;

/** Options as the test sees them: a list of [type, bytes], EOL ending the list, NOP one byte. */
function naiveOptions(opts: Uint8Array): number[][] {
  const list: number[][] = [];
  for (let i = 0; i < opts.length; ) {
    if (opts[i] === 0) break;
    if (opts[i] === 1) {
      list.push([1]);
      i++;
      continue;
    }
    const l = opts[i + 1];
    list.push(Array.from(opts.subarray(i, i + l)));
    i += l;
  }
  return list;
}

/** What later fragments must carry: the copied options, EOL-padded to a 4-byte multiple. */
function expectedLaterOptions(opts: Uint8Array): number[] {
  const out = naiveOptions(opts)
    .filter((o) => (o[0] & 0x80) !== 0)
    .flat();
  while (out.length % 4 !== 0) out.push(0);
  return out;
}

/** A random, well-formed option list (≤ 40 bytes, EOL-padded), mixing copied and uncopied options. */
function randomOptions(): Uint8Array {
  const bytes: number[] = [];
  const kinds = [
    () => [1], // NOP
    () => [0x94, 4, 0, 0], // Router Alert (copied)
    () => [0x83, 7, 4, ...randomBytes(rnd, 4)], // Loose Source Route (copied)
    () => [0x89, 11, 4, ...randomBytes(rnd, 8)], // Strict Source Route (copied)
    () => [0x07, 7, 4, 0, 0, 0, 0], // Record Route (not copied)
    () => [0x44, 12, 5, 0, ...randomBytes(rnd, 8)], // Timestamp (not copied)
    () => [0x82, 11, ...randomBytes(rnd, 9)], // Security (copied)
  ];
  const n = rnd(6);
  for (let i = 0; i < n; i++) {
    const o = kinds[rnd(kinds.length)]();
    if (bytes.length + o.length > 40) break;
    bytes.push(...o);
  }
  while (bytes.length % 4 !== 0) bytes.push(0);
  // sometimes an explicit EOL then padding garbage after it, which must not be read as options
  if (bytes.length <= 36 && rnd(4) === 0) bytes.push(0, 0x83, 0xff, 0xee);
  return Uint8Array.from(bytes);
}

interface Frag {
  ip: V4Fields;
  data: Uint8Array;
  bytes: Uint8Array;
}

function run(pkt: Uint8Array, mtu: number): Frag[] | 0 {
  // stale bytes in out, so that a byte the fragmenter forgets to write shows
  const out = new Uint8Array(200_000).fill(0xa5);
  const offs = new Uint32Array(MAX_FRAGS);
  const lens = new Uint32Array(MAX_FRAGS);
  const n = fragmentIPv4(pkt, 0, pkt.length, mtu, out, offs, lens);
  if (n === 0) return 0;
  const frags: Frag[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = out.slice(offs[i], offs[i] + lens[i]);
    const ip = parseV4(bytes);
    frags.push({ ip, data: bytes.subarray(ip.ihl * 4), bytes });
  }
  // laid out one after another from 0
  let at = 0;
  for (let i = 0; i < n; i++) {
    expect(offs[i]).toBe(at);
    at += lens[i];
  }
  return frags;
}

/** Check every fragment and reassemble them naively; compare with the original. */
function checkFragments(pkt: Uint8Array, mtu: number, frags: Frag[]): void {
  const orig = parseV4(pkt);
  const origData = pkt.subarray(orig.ihl * 4);
  const later = expectedLaterOptions(orig.options);
  const buf = new Int16Array(origData.length).fill(-1); // -1: not yet covered
  let endSeen = false;
  frags.forEach((f, i) => {
    const last = i === frags.length - 1;
    expect(f.bytes.length).toBeLessThanOrEqual(mtu);
    expect(f.ip.version).toBe(4);
    expect(f.ip.totalLength).toBe(f.bytes.length);
    expect(naiveSum(f.bytes.subarray(0, f.ip.ihl * 4))).toBe(0xffff);
    expect(f.ip.id).toBe(orig.id);
    expect(f.ip.tos).toBe(orig.tos);
    expect(f.ip.ttl).toBe(orig.ttl);
    expect(f.ip.protocol).toBe(orig.protocol);
    expect(f.ip.src).toEqual(orig.src);
    expect(f.ip.dst).toEqual(orig.dst);
    expect(f.ip.df).toBe(false);
    expect(f.ip.reserved).toBe(orig.reserved);
    expect(f.ip.mf).toBe(last ? orig.mf : true);
    if (i === 0) expect(Array.from(f.ip.options)).toEqual(Array.from(orig.options));
    else expect(Array.from(f.ip.options)).toEqual(later);
    if (!last) {
      expect(f.data.length % 8).toBe(0);
      // as much as fits: 8 more bytes would not
      expect(f.bytes.length + 8).toBeGreaterThan(mtu);
    }
    expect(f.data.length).toBeGreaterThan(0);
    // reassembly relative to the original's own offset
    const rel = (f.ip.fragOffset - orig.fragOffset) * 8;
    expect(rel).toBeGreaterThanOrEqual(0);
    expect(rel + f.data.length).toBeLessThanOrEqual(origData.length);
    let overlap = 0;
    for (let k = 0; k < f.data.length; k++) {
      if (buf[rel + k] !== -1) overlap++;
      buf[rel + k] = f.data[k];
    }
    expect(overlap).toBe(0);
    if (last) endSeen = rel + f.data.length === origData.length;
  });
  expect(endSeen).toBe(true);
  // every byte covered and equal
  let same = true;
  for (let k = 0; k < origData.length; k++) if (buf[k] !== origData[k]) same = false;
  expect(same).toBe(true);
}

describe('fragmentIPv4', () => {
  it('a packet that fits is one fragment identical to the input (DF or not)', () => {
    for (const df of [false, true]) {
      const pkt = buildV4({ df, payload: randomBytes(rnd, 1000) });
      const frags = run(pkt, 1020) as Frag[];
      expect(frags.length).toBe(1);
      expect(frags[0].bytes).toEqual(pkt);
    }
    // bytes past the total length are not copied
    const pkt = buildV4({ payload: randomBytes(rnd, 50) });
    const padded = Uint8Array.from([...pkt, 9, 9, 9]);
    const frags = run(padded, 1500) as Frag[];
    expect(frags[0].bytes).toEqual(pkt);
  });

  it('splits 1500 bytes at MTU 576 as RFC 791 would: 552 + 552 + 376 payload', () => {
    const pkt = buildV4({ payload: randomBytes(rnd, 1480), id: 0xbeef, ttl: 9, tos: 0x10, protocol: 6 });
    const frags = run(pkt, 576) as Frag[];
    expect(frags.map((f) => f.data.length)).toEqual([552, 552, 376]);
    expect(frags.map((f) => f.ip.fragOffset)).toEqual([0, 69, 138]);
    expect(frags.map((f) => f.ip.mf)).toEqual([true, true, false]);
    checkFragments(pkt, 576, frags);
  });

  it('later fragments keep only copied options, EOL-padded, and may carry more', () => {
    // Record Route (not copied, 7) + Router Alert (copied, 4) + NOP: 12 bytes of options
    const options = [0x07, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 1];
    const pkt = buildV4({ options, payload: randomBytes(rnd, 300) });
    const frags = run(pkt, 100) as Frag[];
    expect(frags[0].ip.ihl).toBe(8);
    expect(Array.from(frags[0].ip.options)).toEqual(options);
    expect(frags[1].ip.ihl).toBe(6);
    expect(Array.from(frags[1].ip.options)).toEqual([0x94, 4, 0, 0]);
    expect(frags[0].data.length).toBe(64); // (100 − 32) rounded down to 8
    expect(frags[1].data.length).toBe(72); // (100 − 24) rounded down to 8
    checkFragments(pkt, 100, frags);
    // an odd-sized copied option is padded with EOL
    const lsrr = [0x83, 7, 4, 10, 0, 0, 1, 0];
    const p2 = buildV4({ options: lsrr, payload: randomBytes(rnd, 200) });
    const f2 = run(p2, 68) as Frag[];
    expect(Array.from(f2[1].ip.options)).toEqual([0x83, 7, 4, 10, 0, 0, 1, 0]);
    checkFragments(p2, 68, f2);
    // no copied option at all: later fragments have IHL 5
    const p3 = buildV4({ options: [0x07, 7, 4, 0, 0, 0, 0, 0], payload: randomBytes(rnd, 200) });
    const f3 = run(p3, 68) as Frag[];
    expect(f3.slice(1).every((f) => f.ip.ihl === 5)).toBe(true);
    checkFragments(p3, 68, f3);
  });

  it('fragments a fragment: offsets added, MF of the original on the last piece only', () => {
    for (const mf of [true, false]) {
      const pkt = buildV4({ fragOffset: 100, mf, payload: randomBytes(rnd, 1200) });
      const frags = run(pkt, 500) as Frag[];
      expect(frags[0].ip.fragOffset).toBe(100);
      expect(frags.map((f) => f.ip.mf)).toEqual([true, true, mf]);
      checkFragments(pkt, 500, frags);
    }
  });

  it('keeps the reserved flag bit as it came', () => {
    const pkt = buildV4({ payload: randomBytes(rnd, 400) });
    pkt[6] |= 0x80;
    const c = 0xffff - naiveSum([...pkt.subarray(0, 10), 0, 0, ...pkt.subarray(12, 20)]);
    pkt[10] = c >> 8;
    pkt[11] = c & 0xff;
    const frags = run(pkt, 200) as Frag[];
    expect(frags.every((f) => f.ip.reserved)).toBe(true);
    checkFragments(pkt, 200, frags);
  });

  it('random packets reassemble to the original', () => {
    let multi = 0;
    for (let n = 0; n < 2000; n++) {
      const withOptions = rnd(2) === 0;
      const isFragment = rnd(4) === 0;
      const pkt = buildV4({
        id: rnd(65536),
        tos: rnd(256),
        ttl: rnd(256),
        protocol: rnd(256),
        src: `10.${rnd(256)}.${rnd(256)}.${rnd(256)}`,
        dst: `172.16.${rnd(256)}.${rnd(256)}`,
        options: withOptions ? randomOptions() : [],
        fragOffset: isFragment ? rnd(2000) : 0,
        mf: isFragment && rnd(2) === 0,
        payload: randomBytes(rnd, 1 + rnd(3000)),
      });
      const mtu = 68 + rnd(1433);
      const frags = run(pkt, mtu);
      expect(frags, `packet ${n}`).not.toBe(0);
      checkFragments(pkt, mtu, frags as Frag[]);
      if ((frags as Frag[]).length > 1) multi++;
      // the room bound covers what was used
      const room = fragmentRoom(pkt.length, mtu);
      const used = (frags as Frag[]).reduce((s, f) => s + f.bytes.length, 0);
      expect((frags as Frag[]).length).toBeLessThanOrEqual(room.count);
      expect(used).toBeLessThanOrEqual(room.bytes);
    }
    expect(multi).toBeGreaterThan(1300);
  });

  it('returns 0 with DF set on a packet that does not fit', () => {
    const pkt = buildV4({ df: true, payload: randomBytes(rnd, 1400) });
    expect(run(pkt, 1000)).toBe(0);
  });

  it('returns 0 for malformed packets', () => {
    const good = buildV4({ payload: randomBytes(rnd, 200) });
    expect(run(good, 100)).not.toBe(0);
    const bad = (f: (p: Uint8Array) => void) => {
      const p = good.slice();
      f(p);
      return run(p, 100);
    };
    expect(bad((p) => (p[0] = 0x65))).toBe(0); // version
    expect(bad((p) => (p[0] = 0x44))).toBe(0); // IHL < 5
    expect(bad((p) => ((p[2] = 0), (p[3] = 19)))).toBe(0); // total < IHL*4
    expect(bad((p) => (p[3] += 1))).toBe(0); // total > len
    expect(run(good.slice(0, 19), 10)).toBe(0); // shorter than a header
    const offs = new Uint32Array(8);
    const lens = new Uint32Array(8);
    expect(fragmentIPv4(good, 0, good.length + 1, 100, new Uint8Array(2000), offs, lens)).toBe(0); // len past buffer
    // option lengths that do not hold, when fragmenting
    for (const options of [
      [0x94, 0, 0, 0], // length 0
      [0x94, 1, 0, 0], // length 1
      [0x83, 9, 4, 0], // runs past the header
      [1, 1, 1, 0x94], // length byte missing
    ]) {
      const p = buildV4({ options, payload: randomBytes(rnd, 300) });
      expect(run(p, 100), options.join(',')).toBe(0);
      expect(run(p, 1500), 'fits: copied unparsed').not.toBe(0);
    }
  });

  it('returns 0 when the MTU cannot hold the header and 8 bytes', () => {
    const options = new Uint8Array(40).fill(1); // IHL 15
    const pkt = buildV4({ options, payload: randomBytes(rnd, 100) });
    expect(run(pkt, 67)).toBe(0);
    checkFragments(pkt, 68, run(pkt, 68) as Frag[]);
    const plain = buildV4({ payload: randomBytes(rnd, 100) });
    expect(run(plain, 27)).toBe(0);
    checkFragments(plain, 28, run(plain, 28) as Frag[]);
  });

  it('returns 0 when an offset would pass the 13-bit field', () => {
    const pkt = buildV4({ fragOffset: 8000, payload: randomBytes(rnd, 2000) });
    expect(run(pkt, 500)).toBe(0);
    const ok = buildV4({ fragOffset: 8000, payload: randomBytes(rnd, 1000) });
    checkFragments(ok, 500, run(ok, 500) as Frag[]);
  });

  it('returns 0 without room in out, outOffs or outLens, and works with exactly enough', () => {
    const pkt = buildV4({ options: [0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 0], payload: randomBytes(rnd, 1000) });
    const frags = run(pkt, 300) as Frag[];
    const count = frags.length;
    const bytes = frags.reduce((s, f) => s + f.bytes.length, 0);
    const go = (b: number, o: number, l: number) =>
      fragmentIPv4(pkt, 0, pkt.length, 300, new Uint8Array(b), new Uint32Array(o), new Uint32Array(l));
    expect(go(bytes, count, count)).toBe(count);
    expect(go(bytes - 1, count, count)).toBe(0);
    expect(go(bytes, count - 1, count)).toBe(0);
    expect(go(bytes, count, count - 1)).toBe(0);
    const small = buildV4({ payload: randomBytes(rnd, 10) });
    expect(fragmentIPv4(small, 0, small.length, 1500, new Uint8Array(small.length - 1), new Uint32Array(1), new Uint32Array(1))).toBe(0);
    expect(fragmentIPv4(small, 0, small.length, 1500, new Uint8Array(100), new Uint32Array(0), new Uint32Array(1))).toBe(0);
  });

  it('reads the packet at off..off+len of a larger buffer', () => {
    const pkt = buildV4({ payload: randomBytes(rnd, 777) });
    const buf = Uint8Array.from([...randomBytes(rnd, 11), ...pkt, ...randomBytes(rnd, 5)]);
    const out = new Uint8Array(2000);
    const offs = new Uint32Array(8);
    const lens = new Uint32Array(8);
    const n = fragmentIPv4(buf, 11, pkt.length, 300, out, offs, lens);
    expect(n).toBe(3);
    const frags = Array.from({ length: n }, (_, i) => {
      const bytes = out.slice(offs[i], offs[i] + lens[i]);
      const ip = parseV4(bytes);
      return { ip, bytes, data: bytes.subarray(ip.ihl * 4) };
    });
    checkFragments(pkt, 300, frags);
  });
});

describe('fragmentRoom', () => {
  it('bounds the room for every IHL', () => {
    expect(fragmentRoom(1000, 1500)).toEqual({ count: 1, bytes: 1000 });
    // 1500 at 576 without options: 3 fragments, 1500 + 2 × 20 bytes
    const plain = fragmentRoom(1500, 576);
    expect(plain.count).toBeGreaterThanOrEqual(3);
    expect(plain.bytes).toBeGreaterThanOrEqual(1540);
    // the worst header at MTU 68 leaves 8 bytes a fragment
    const worst = fragmentRoom(65535, 68);
    expect(worst.count).toBeGreaterThanOrEqual(Math.ceil((65535 - 60) / 8));
    expect(fragmentRoom(100, 27)).toEqual({ count: 0, bytes: 0 });
    // the bound holds against real worst cases: IHL 15 with all options copied
    for (const mtu of [68, 69, 75, 76, 100, 576, 1280]) {
      const opts = [];
      for (let i = 0; i < 10; i++) opts.push(0x94, 4, 0, 0);
      const pkt = buildV4({ options: opts, payload: randomBytes(rnd, 4000) });
      const frags = run(pkt, mtu) as Frag[];
      const room = fragmentRoom(pkt.length, mtu);
      expect(frags.length).toBeLessThanOrEqual(room.count);
      expect(frags.reduce((s, f) => s + f.bytes.length, 0)).toBeLessThanOrEqual(room.bytes);
      const plainPkt = buildV4({ payload: randomBytes(rnd, 4000) });
      const pf = run(plainPkt, mtu) as Frag[];
      expect(pf.length).toBeLessThanOrEqual(fragmentRoom(plainPkt.length, mtu).count);
    }
  });
});

describe('fragmentIPv6 (RFC 8200 §4.5)', () => {
  /** The naive twin: reassemble by the Fragment headers' offsets, field by field. */
  function reassemble6(frags: Uint8Array[]): { header: Uint8Array; nh: number; id: number; payload: Uint8Array } {
    const parts: Array<{ at: number; data: Uint8Array; more: boolean }> = [];
    let nh = -1;
    let id = -1;
    for (const f of frags) {
      const h = parseV6(f);
      expect(h.nextHeader).toBe(44);
      expect(h.payloadLength).toBe(f.length - 40);
      const word = f[42] * 256 + f[43];
      const fid = ((f[44] << 24) | (f[45] << 16) | (f[46] << 8) | f[47]) >>> 0;
      if (id === -1) id = fid;
      expect(fid).toBe(id);
      if (nh === -1) nh = f[40];
      expect(f[40]).toBe(nh);
      parts.push({ at: (word >> 3) * 8, data: f.subarray(48), more: (word & 1) === 1 });
    }
    parts.sort((x, y) => x.at - y.at);
    let end = 0;
    for (const [i, p] of parts.entries()) {
      expect(p.at).toBe(end);
      expect(p.more).toBe(i < parts.length - 1);
      if (p.more) expect(p.data.length % 8).toBe(0);
      end += p.data.length;
    }
    const payload = new Uint8Array(end);
    for (const p of parts) payload.set(p.data, p.at);
    return { header: frags[0].subarray(0, 40), nh, id, payload };
  }

  it('random packets at random MTUs reassemble to the original; every fragment fits', () => {
    const r = prng(8200);
    for (let n = 0; n < 2000; n++) {
      const payload = randomBytes(r, 1 + r(1400));
      const nh = [6, 17, 58, 60][r(4)];
      const pkt = buildV6({ src: 'fd10::1', dst: 'fd10::2', nextHeader: nh, payload });
      const mtu = 56 + r(1300);
      const out = new Uint8Array(8192);
      const offs = new Uint32Array(64);
      const lens = new Uint32Array(64);
      const id = r(2 ** 31) * 2 + r(2);
      const count = fragmentIPv6(pkt, 0, pkt.length, mtu, id, out, offs, lens);
      const need = Math.ceil(payload.length / (Math.floor((mtu - 48) / 8) * 8));
      if (need > 64) {
        expect(count).toBe(0);
        continue;
      }
      expect(count).toBe(need);
      const frags = Array.from({ length: count }, (_, i) => out.slice(offs[i], offs[i] + lens[i]));
      for (const f of frags) expect(f.length).toBeLessThanOrEqual(mtu);
      const back = reassemble6(frags);
      expect(back.nh).toBe(nh);
      expect(back.id).toBe(id >>> 0);
      expect(Buffer.from(back.payload)).toEqual(Buffer.from(payload));
      // the fixed header is the original's but for payload length and next header
      const h = parseV6(back.header);
      const o = parseV6(pkt);
      expect([h.src, h.dst, h.hopLimit, h.flowLabel, h.trafficClass].map(String)).toEqual([o.src, o.dst, o.hopLimit, o.flowLabel, o.trafficClass].map(String));
    }
  });

  it('returns 0 for what it must not or cannot fragment', () => {
    const out = new Uint8Array(4096);
    const offs = new Uint32Array(8);
    const lens = new Uint32Array(8);
    const p = (nh: number) => buildV6({ nextHeader: nh, payload: new Uint8Array(1200) });
    expect(fragmentIPv6(p(0), 0, 1240, 1000, 1, out, offs, lens)).toBe(0); // Hop-by-Hop must stay in front
    expect(fragmentIPv6(p(43), 0, 1240, 1000, 1, out, offs, lens)).toBe(0); // Routing likewise
    expect(fragmentIPv6(p(44), 0, 1240, 1000, 1, out, offs, lens)).toBe(0); // already a fragment
    expect(fragmentIPv6(p(17), 0, 1240, 55, 1, out, offs, lens)).toBe(0); // no room for 8 bytes of data
    expect(fragmentIPv6(p(17), 0, 1239, 1000, 1, out, offs, lens)).toBe(0); // payload length past the buffer
    expect(fragmentIPv6(buildV4({ payload: new Uint8Array(1200) }), 0, 1220, 1000, 1, out, offs, lens)).toBe(0); // not IPv6
    expect(fragmentIPv6(p(17), 0, 1240, 1000, 1, new Uint8Array(100), offs, lens)).toBe(0); // no room in out
    expect(fragmentIPv6(p(17), 0, 1240, 1000, 1, out, new Uint32Array(1), lens)).toBe(0); // nor in the arrays
    expect(fragmentIPv6(p(17), 0, 1240, 1000, 1, out, offs, lens)).toBe(2);
  });
});
