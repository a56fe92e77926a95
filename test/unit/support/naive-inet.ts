/**
 * Naive twins for the tunnel-edge builders' tests (icmp, fragment, mss): a one's complement sum
 * done the slow way (one 16-bit word at a time, the end-around carry taken at every step), field
 * by field decoders of IPv4, IPv6 and ICMP headers, packet builders whose checksums come from the
 * naive sum, and a seeded PRNG so failures reproduce. Nothing here uses src/core/checksum.ts.
 */

/** One's complement sum of bytes as 16-bit big-endian words, an odd last byte padded with zero. */
export function naiveSum(bytes: ArrayLike<number>, start = 0): number {
  let sum = start;
  for (let i = 0; i < bytes.length; i += 2) {
    const word = bytes[i] * 256 + (i + 1 < bytes.length ? bytes[i + 1] : 0);
    sum += word;
    if (sum > 0xffff) sum -= 0xffff; // end-around carry
  }
  return sum;
}

/** One's complement addition of two 16-bit values. */
export function onesAdd(a: number, b: number): number {
  const s = a + b;
  return s > 0xffff ? s - 0xffff : s;
}

/** The checksum field for bytes summed with the field zero: the complement of the sum. */
export function naiveChecksum(bytes: ArrayLike<number>, start = 0): number {
  return 0xffff - naiveSum(bytes, start);
}

/** The IPv4 pseudo-header (RFC 9293 §3.1) as bytes. */
export function pseudo4(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number[] {
  return [...src, ...dst, 0, protocol, length >> 8, length & 0xff];
}

/** The IPv6 pseudo-header (RFC 8200 §8.1) as bytes. */
export function pseudo6(src: Uint8Array, dst: Uint8Array, nextHeader: number, length: number): number[] {
  return [...src, ...dst, (length >>> 24) & 0xff, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff, 0, 0, 0, nextHeader];
}

export function concat(...parts: ArrayLike<number>[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) for (let i = 0; i < p.length; i++) out.push(p[i]);
  return Uint8Array.from(out);
}

export function v4(s: string): Uint8Array {
  const parts = s.split('.').map((x) => Number(x));
  if (parts.length !== 4 || parts.some((x) => !(x >= 0 && x <= 255))) throw new Error(`bad IPv4 ${s}`);
  return Uint8Array.from(parts);
}

export function v6(s: string): Uint8Array {
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new Error(`bad IPv6 ${s}`);
  const b = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    b[2 * i] = n >> 8;
    b[2 * i + 1] = n & 0xff;
  });
  return b;
}

export interface V4Fields {
  version: number;
  ihl: number;
  tos: number;
  totalLength: number;
  id: number;
  reserved: boolean;
  df: boolean;
  mf: boolean;
  fragOffset: number; // in 8-byte units
  ttl: number;
  protocol: number;
  checksum: number;
  src: Uint8Array;
  dst: Uint8Array;
  options: Uint8Array;
}

export function parseV4(b: Uint8Array): V4Fields {
  const ihl = b[0] & 15;
  return {
    version: b[0] >> 4,
    ihl,
    tos: b[1],
    totalLength: b[2] * 256 + b[3],
    id: b[4] * 256 + b[5],
    reserved: (b[6] & 0x80) !== 0,
    df: (b[6] & 0x40) !== 0,
    mf: (b[6] & 0x20) !== 0,
    fragOffset: (b[6] & 0x1f) * 256 + b[7],
    ttl: b[8],
    protocol: b[9],
    checksum: b[10] * 256 + b[11],
    src: b.slice(12, 16),
    dst: b.slice(16, 20),
    options: b.slice(20, ihl * 4),
  };
}

export interface V6Fields {
  version: number;
  trafficClass: number;
  flowLabel: number;
  payloadLength: number;
  nextHeader: number;
  hopLimit: number;
  src: Uint8Array;
  dst: Uint8Array;
}

export function parseV6(b: Uint8Array): V6Fields {
  return {
    version: b[0] >> 4,
    trafficClass: ((b[0] & 15) << 4) | (b[1] >> 4),
    flowLabel: ((b[1] & 15) << 16) | (b[2] << 8) | b[3],
    payloadLength: b[4] * 256 + b[5],
    nextHeader: b[6],
    hopLimit: b[7],
    src: b.slice(8, 24),
    dst: b.slice(24, 40),
  };
}

export interface IcmpFields {
  type: number;
  code: number;
  checksum: number;
  /** bytes 4..7 as one 32-bit number */
  rest: number;
  body: Uint8Array;
}

export function parseIcmp(b: Uint8Array): IcmpFields {
  return {
    type: b[0],
    code: b[1],
    checksum: b[2] * 256 + b[3],
    rest: b[4] * 2 ** 24 + b[5] * 2 ** 16 + b[6] * 2 ** 8 + b[7],
    body: b.slice(8),
  };
}

export interface V4Spec {
  src?: string;
  dst?: string;
  protocol?: number;
  tos?: number;
  ttl?: number;
  id?: number;
  df?: boolean;
  mf?: boolean;
  fragOffset?: number;
  options?: ArrayLike<number>; // already padded to a multiple of 4
  payload: ArrayLike<number>;
}

/** An IPv4 packet with a correct header checksum (computed by the naive sum). */
export function buildV4(s: V4Spec): Uint8Array {
  const opts = s.options ?? [];
  if (opts.length % 4 !== 0 || opts.length > 40) throw new Error('options must be padded, ≤ 40 bytes');
  const hlen = 20 + opts.length;
  const total = hlen + s.payload.length;
  const p = new Uint8Array(total);
  p[0] = 0x40 | (hlen / 4);
  p[1] = s.tos ?? 0;
  p[2] = total >> 8;
  p[3] = total & 0xff;
  const id = s.id ?? 0x1234;
  p[4] = id >> 8;
  p[5] = id & 0xff;
  const fo = s.fragOffset ?? 0;
  p[6] = (s.df ? 0x40 : 0) | (s.mf ? 0x20 : 0) | (fo >> 8);
  p[7] = fo & 0xff;
  p[8] = s.ttl ?? 64;
  p[9] = s.protocol ?? 17;
  p.set(v4(s.src ?? '10.0.0.1'), 12);
  p.set(v4(s.dst ?? '10.0.0.2'), 16);
  p.set(Array.from(opts), 20);
  p.set(Array.from(s.payload), hlen);
  const c = naiveChecksum(p.subarray(0, hlen));
  p[10] = c >> 8;
  p[11] = c & 0xff;
  return p;
}

export interface V6Spec {
  src?: string;
  dst?: string;
  nextHeader?: number;
  hopLimit?: number;
  payload: ArrayLike<number>;
}

export function buildV6(s: V6Spec): Uint8Array {
  const p = new Uint8Array(40 + s.payload.length);
  p[0] = 0x60;
  p[4] = s.payload.length >> 8;
  p[5] = s.payload.length & 0xff;
  p[6] = s.nextHeader ?? 17;
  p[7] = s.hopLimit ?? 64;
  p.set(v6(s.src ?? 'fd00::1'), 8);
  p.set(v6(s.dst ?? 'fd00::2'), 24);
  p.set(Array.from(s.payload), 40);
  return p;
}

/** xorshift32, seeded: a small deterministic PRNG so failures reproduce. */
export function prng(seed: number): (n: number) => number {
  let x = seed | 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

export function randomBytes(rnd: (n: number) => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rnd(256);
  return b;
}
