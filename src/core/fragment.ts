/**
 * IPv4 fragmentation at the tunnel edge (RFC 791 §3.2, "An Example Fragmentation Procedure";
 * RFC 815 for how the receiver puts the pieces back): an inner IPv4 packet with DF clear that
 * does not fit the tunnel's path is split into fragments of at most `mtu` bytes, as a router
 * would, instead of being dropped.
 *
 * Each fragment but the last carries a multiple of 8 payload bytes, because the fragment offset
 * field counts 8-byte units. The first fragment keeps the whole header with all its options;
 * later ones keep only the options whose copied flag is set (RFC 791 §3.1, "Options"), so they
 * may have a shorter header and carry more payload: like RFC 791's procedure, the first fragment
 * is cut at the MTU and the rest is cut again with the shorter header. A packet that is already
 * a fragment is cut the same way: its offset is added to every piece's, and only its last piece
 * keeps its MF flag.
 *
 * Not the hot path, but nothing here allocates: fragments go one after another into the
 * caller's `out` from byte 0 (fragment i at outOffs[i], outLens[i] bytes). `out` must not
 * overlap `pkt`. fragmentRoom() tells how much room to give.
 */
import { finishChecksum, sumWords } from './checksum.js';

const IPV4_HEADER_MIN = 20;
const FLAG_RESERVED = 0x8000;
const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const OFFSET_MASK = 0x1fff;
/** The fragment offset field counts 8-byte units (RFC 791 §3.1). */
const FRAGMENT_UNIT = 8;
const OPT_EOL = 0; // End of Option List
const OPT_NOP = 1; // No Operation
/** Bit 7 of the option type: copy this option into every fragment (RFC 791 §3.1). */
const OPT_COPIED = 0x80;

/**
 * The bytes of the options in pkt[from..end) whose copied flag is set, written at out[at..) when
 * out is given; -1 when an option's length runs outside the header or is below 2. EOL ends the
 * list (what follows it is padding); NOP's copied flag is clear, so NOPs are never copied.
 */
function copiedOptions(pkt: Uint8Array, from: number, end: number, out: Uint8Array | null, at: number): number {
  let n = 0;
  let i = from;
  while (i < end) {
    const type = pkt[i];
    if (type === OPT_EOL) break;
    if (type === OPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return -1;
    const optLen = pkt[i + 1];
    if (optLen < 2 || i + optLen > end) return -1;
    if ((type & OPT_COPIED) !== 0) {
      if (out !== null) out.set(pkt.subarray(i, i + optLen), at + n);
      n += optLen;
    }
    i += optLen;
  }
  return n;
}

function writeTotalLength(b: Uint8Array, at: number, total: number): void {
  b[at + 2] = total >>> 8;
  b[at + 3] = total & 0xff;
}

function writeFlagsOffset(b: Uint8Array, at: number, word: number): void {
  b[at + 6] = word >>> 8;
  b[at + 7] = word & 0xff;
}

function writeHeaderChecksum(b: Uint8Array, at: number, hlen: number): void {
  b[at + 10] = 0;
  b[at + 11] = 0;
  const sum = finishChecksum(sumWords(b, at, hlen, 0));
  b[at + 10] = sum >>> 8;
  b[at + 11] = sum & 0xff;
}

/**
 * Split the IPv4 packet pkt[off..off+len) into fragments of at most `mtu` bytes, written into
 * `out` from byte 0 (fragment i at outOffs[i], outLens[i] bytes). Returns the number of
 * fragments: 1, with a copy of the packet, when it already fits (DF or not); 0 when it cannot be
 * fragmented: DF set, malformed (version, IHL, total length, option lengths, or offsets that
 * would pass the 13-bit field), mtu below the header plus 8 bytes, or too little room in out,
 * outOffs or outLens. Bytes past the declared total length are not part of the packet.
 */
export function fragmentIPv4(
  pkt: Uint8Array,
  off: number,
  len: number,
  mtu: number,
  out: Uint8Array,
  outOffs: Uint32Array,
  outLens: Uint32Array,
): number {
  if (!Number.isInteger(mtu) || mtu < 0) throw new RangeError(`fragmentIPv4: mtu must be a non-negative integer, got ${mtu}`);
  if (off < 0 || len < IPV4_HEADER_MIN || off + len > pkt.length) return 0;
  const vihl = pkt[off];
  if (vihl >>> 4 !== 4) return 0;
  const hlen = (vihl & 0x0f) * 4;
  if (hlen < IPV4_HEADER_MIN || hlen > len) return 0;
  const total = (pkt[off + 2] << 8) | pkt[off + 3];
  if (total < hlen || total > len) return 0;

  if (total <= mtu) {
    if (out.length < total || outOffs.length < 1 || outLens.length < 1) return 0;
    out.set(pkt.subarray(off, off + total), 0);
    outOffs[0] = 0;
    outLens[0] = total;
    return 1;
  }

  const flags = (pkt[off + 6] << 8) | pkt[off + 7];
  if ((flags & FLAG_DF) !== 0) return 0;
  if (mtu < hlen + FRAGMENT_UNIT) return 0;
  const copied = copiedOptions(pkt, off + IPV4_HEADER_MIN, off + hlen, null, 0);
  if (copied < 0) return 0;
  // later fragments' header: the fixed part and the copied options, padded to 32-bit words
  const laterHlen = IPV4_HEADER_MIN + ((copied + 3) & ~3);

  const payload = total - hlen;
  const firstData = Math.floor((mtu - hlen) / FRAGMENT_UNIT) * FRAGMENT_UNIT;
  const laterData = Math.floor((mtu - laterHlen) / FRAGMENT_UNIT) * FRAGMENT_UNIT; // ≥ firstData
  const count = 1 + Math.ceil((payload - firstData) / laterData);
  const bytes = total + (count - 1) * laterHlen;
  const baseUnits = flags & OFFSET_MASK;
  const lastStart = firstData + (count - 2) * laterData;
  if (baseUnits + lastStart / FRAGMENT_UNIT > OFFSET_MASK) return 0;
  if (out.length < bytes || outOffs.length < count || outLens.length < count) return 0;

  // every piece keeps the reserved bit as it came; DF is clear here
  const keptFlags = flags & FLAG_RESERVED;
  const lastMf = flags & FLAG_MF;

  // the first fragment: the whole header, options and all, and firstData payload bytes
  out.set(pkt.subarray(off, off + hlen + firstData), 0);
  writeTotalLength(out, 0, hlen + firstData);
  writeFlagsOffset(out, 0, keptFlags | FLAG_MF | baseUnits);
  writeHeaderChecksum(out, 0, hlen);
  outOffs[0] = 0;
  outLens[0] = hlen + firstData;

  // the later header is built once, in the second fragment's place, and copied from there
  const second = hlen + firstData;
  out.set(pkt.subarray(off, off + IPV4_HEADER_MIN), second);
  copiedOptions(pkt, off + IPV4_HEADER_MIN, off + hlen, out, second + IPV4_HEADER_MIN);
  out.fill(OPT_EOL, second + IPV4_HEADER_MIN + copied, second + laterHlen);
  out[second] = 0x40 | (laterHlen >>> 2);

  let at = second;
  let data = firstData; // payload bytes already placed
  for (let i = 1; i < count; i++) {
    const piece = Math.min(laterData, payload - data);
    const last = i === count - 1;
    if (i > 1) out.copyWithin(at, second, second + laterHlen);
    out.set(pkt.subarray(off + hlen + data, off + hlen + data + piece), at + laterHlen);
    writeTotalLength(out, at, laterHlen + piece);
    writeFlagsOffset(out, at, keptFlags | (last ? lastMf : FLAG_MF) | (baseUnits + data / FRAGMENT_UNIT));
    writeHeaderChecksum(out, at, laterHlen);
    outOffs[i] = at;
    outLens[i] = laterHlen + piece;
    at += laterHlen + piece;
    data += piece;
  }
  return count;
}

/**
 * Room that fragmentIPv4 needs for any IPv4 packet of total length `len` (any IHL, any options)
 * at `mtu`: at most `count` fragments and `bytes` bytes of out. A bound over all header sizes,
 * so it may exceed what one packet uses; { count: 0, bytes: 0 } when no header fits with 8
 * payload bytes.
 * Preallocating fragmentRoom(65535, mtu) covers every packet.
 */
export function fragmentRoom(len: number, mtu: number): { count: number; bytes: number } {
  if (len <= mtu) return { count: 1, bytes: len };
  let count = 0;
  let bytes = 0;
  // Each IHL h gives a first fragment of d payload bytes and later ones of at least d (their
  // header is no longer), so at most ceil((len − h) / d) fragments, each with at most h header.
  for (let h = IPV4_HEADER_MIN; h <= 60 && h <= len; h += 4) {
    if (h + FRAGMENT_UNIT > mtu) break;
    const d = Math.floor((mtu - h) / FRAGMENT_UNIT) * FRAGMENT_UNIT;
    const c = Math.ceil((len - h) / d);
    count = Math.max(count, c);
    bytes = Math.max(bytes, len - h + c * h);
  }
  return { count, bytes };
}

// ───────────────────────────── IPv6 ─────────────────────────────

const IPV6_HEADER = 40;
/** The Fragment extension header (RFC 8200 §4.5): next header, reserved, offset ‖ res ‖ M, identification. */
const IPV6_FRAG_HEADER = 8;
const NH_HOP_BY_HOP = 0;
const NH_ROUTING = 43;
const NH_FRAGMENT = 44;

/**
 * Split the IPv6 packet pkt[off..off+len) into fragments of at most `mtu` bytes each, with a
 * Fragment header (RFC 8200 §4.5) of identification `id` right after the fixed header. For the
 * one case a tunnel must (RFC 8200 §5: every link carries 1280-byte packets; RFC 2473 §7.1): a
 * packet of up to 1280 bytes on a path whose tunnel MTU is smaller. Only keymesh's peer's host
 * sees the fragments (they travel inside the tunnel) and reassembles them. Fragments go one
 * after another into `out` from byte 0; returns their number, or 0 when it cannot: malformed,
 * already a fragment, a Hop-by-Hop or Routing header (which must stay in front of the Fragment
 * header: such packets are left as they are), mtu below 40 + 8 + 8, or too little room.
 */
export function fragmentIPv6(
  pkt: Uint8Array,
  off: number,
  len: number,
  mtu: number,
  id: number,
  out: Uint8Array,
  outOffs: Uint32Array,
  outLens: Uint32Array,
): number {
  if (!Number.isInteger(mtu) || mtu < 0) throw new RangeError(`fragmentIPv6: mtu must be a non-negative integer, got ${mtu}`);
  if (off < 0 || len < IPV6_HEADER || off + len > pkt.length || pkt[off] >>> 4 !== 6) return 0;
  const total = IPV6_HEADER + ((pkt[off + 4] << 8) | pkt[off + 5]);
  if (total > len || total <= IPV6_HEADER) return 0;
  const nh = pkt[off + 6];
  if (nh === NH_HOP_BY_HOP || nh === NH_ROUTING || nh === NH_FRAGMENT) return 0;
  const data = Math.floor((mtu - IPV6_HEADER - IPV6_FRAG_HEADER) / FRAGMENT_UNIT) * FRAGMENT_UNIT;
  if (data < FRAGMENT_UNIT) return 0;
  const payload = total - IPV6_HEADER;
  const count = Math.ceil(payload / data);
  if (out.length < total + count * IPV6_FRAG_HEADER + (count - 1) * IPV6_HEADER || outOffs.length < count || outLens.length < count) return 0;
  let at = 0;
  for (let i = 0, done = 0; i < count; i++) {
    const piece = Math.min(data, payload - done);
    out.set(pkt.subarray(off, off + IPV6_HEADER), at);
    const plen = IPV6_FRAG_HEADER + piece;
    out[at + 4] = plen >> 8;
    out[at + 5] = plen & 0xff;
    out[at + 6] = NH_FRAGMENT;
    const f = at + IPV6_HEADER;
    out[f] = nh;
    out[f + 1] = 0;
    const word = done | (i < count - 1 ? 1 : 0); // offset in 8-byte units, already shifted by 3 (done is a multiple of 8) ‖ M
    out[f + 2] = word >> 8;
    out[f + 3] = word & 0xff;
    out[f + 4] = id >>> 24;
    out[f + 5] = (id >>> 16) & 0xff;
    out[f + 6] = (id >>> 8) & 0xff;
    out[f + 7] = id & 0xff;
    out.set(pkt.subarray(off + IPV6_HEADER + done, off + IPV6_HEADER + done + piece), f + IPV6_FRAG_HEADER);
    outOffs[i] = at;
    outLens[i] = IPV6_HEADER + plen;
    at += IPV6_HEADER + plen;
    done += piece;
  }
  return count;
}
