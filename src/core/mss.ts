/**
 * TCP MSS clamping at the tunnel edge: a SYN (or SYN-ACK) crossing the tunnel has its Maximum
 * Segment Size option (RFC 9293 §3.7.1, kind 2, length 4) lowered to what fits the tunnel, so
 * both ends send segments that need neither fragmentation nor a working path-MTU discovery.
 * The packet is changed in place and its TCP checksum updated incrementally (RFC 1624 eqn. 3),
 * so a segment that arrived corrupted stays detectably corrupted.
 *
 * Only an existing MSS option is lowered. A SYN without one is left alone: adding the option
 * would lengthen the segment (data offset, IP total length, maybe past the MTU), and such a peer
 * already assumes the defaults of RFC 9293 §3.7.1, 536 for IPv4 and 1220 for IPv6, which fit any
 * tunnel that can carry the minimum IPv4 576 / IPv6 1280 packets.
 *
 * IPv6 extension headers are not walked: a TCP header behind one (rare on a SYN) is not found,
 * and the packet is left alone. An IPv4 fragment with offset ≠ 0 holds no TCP header.
 */

const PROTO_TCP = 6;
const TCP_HEADER_MIN = 20;
const TCP_FLAG_SYN = 0x02;
const OPT_END = 0; // End of Option List
const OPT_NOP = 1; // No-Operation
const OPT_MSS = 2;
const OPT_MSS_LEN = 4;
/** IPv4 header (20) + TCP header (20), both without options; IPv6 header (40) + TCP (20). */
const V4_OVERHEAD = 40;
const V6_OVERHEAD = 60;

/** The MSS to announce for an inner path of `innerMtu` bytes: the MTU less IP and TCP headers without options. */
export function mssFor(innerMtu: number, version: 4 | 6): number {
  const overhead = version === 4 ? V4_OVERHEAD : V6_OVERHEAD;
  if (!Number.isInteger(innerMtu) || innerMtu <= overhead) {
    throw new RangeError(`mssFor: innerMtu must be an integer above ${overhead} for IPv${version}, got ${innerMtu}`);
  }
  return innerMtu - overhead;
}

function swap16(v: number): number {
  return ((v & 0xff) << 8) | (v >>> 8);
}

/**
 * The data path's cheap first look (every packet passes it): protocol TCP and the SYN flag set,
 * for an IPv4 header of any length or an IPv6 header followed directly by TCP. Bytes past the
 * packet read as `undefined` (0 in the bit test), so a short packet is simply not a SYN here;
 * clampMss checks everything properly.
 */
export function isTcpSyn(pkt: Uint8Array, off: number, version: 4 | 6): boolean {
  if (version === 4) return pkt[off + 9] === PROTO_TCP && (pkt[off + (pkt[off] & 0x0f) * 4 + 13] & TCP_FLAG_SYN) !== 0;
  return pkt[off + 6] === PROTO_TCP && (pkt[off + 40 + 13] & TCP_FLAG_SYN) !== 0;
}

/**
 * If pkt[off..off+len) is a TCP segment with SYN set carrying an MSS option above `maxMss`,
 * lower the option to `maxMss` in place and fix the TCP checksum; true when it changed. Any
 * packet that is not such a segment, malformed ones included, is left alone (false); the option
 * walk stops at End of Option List, or at an option whose length byte is missing, below 2 or
 * past the header, or at an MSS option whose length is not 4.
 */
export function clampMss(pkt: Uint8Array, off: number, len: number, maxMss: number): boolean {
  if (!Number.isInteger(maxMss) || maxMss < 0 || maxMss > 0xffff) {
    throw new RangeError(`clampMss: maxMss must be an integer in 0..65535, got ${maxMss}`);
  }
  if (off < 0 || len < 1 || off + len > pkt.length) return false;
  let tcp: number;
  let segLen: number;
  const version = pkt[off] >>> 4;
  if (version === 4) {
    if (len < 20) return false;
    const hlen = (pkt[off] & 0x0f) * 4;
    const total = (pkt[off + 2] << 8) | pkt[off + 3];
    if (hlen < 20 || total < hlen || total > len) return false;
    if (pkt[off + 9] !== PROTO_TCP) return false;
    if ((((pkt[off + 6] & 0x1f) << 8) | pkt[off + 7]) !== 0) return false;
    tcp = off + hlen;
    segLen = total - hlen;
  } else if (version === 6) {
    if (len < 40) return false;
    segLen = (pkt[off + 4] << 8) | pkt[off + 5];
    if (40 + segLen > len) return false;
    if (pkt[off + 6] !== PROTO_TCP) return false;
    tcp = off + 40;
  } else {
    return false;
  }
  if (segLen < TCP_HEADER_MIN) return false;
  if ((pkt[tcp + 13] & TCP_FLAG_SYN) === 0) return false;
  const dataOffset = (pkt[tcp + 12] >>> 4) * 4;
  if (dataOffset < TCP_HEADER_MIN || dataOffset > segLen) return false;

  const end = tcp + dataOffset;
  let i = tcp + TCP_HEADER_MIN;
  while (i < end) {
    const kind = pkt[i];
    if (kind === OPT_END) return false;
    if (kind === OPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return false;
    const optLen = pkt[i + 1];
    if (optLen < 2 || i + optLen > end) return false;
    if (kind === OPT_MSS) {
      if (optLen !== OPT_MSS_LEN) return false;
      const at = i + 2;
      const old = (pkt[at] << 8) | pkt[at + 1];
      if (old <= maxMss) return false;
      pkt[at] = maxMss >>> 8;
      pkt[at + 1] = maxMss & 0xff;
      // The checksum sums 16-bit words from the TCP header's first byte. A field at an odd
      // distance from it straddles two words, and its share of the one's complement sum is its
      // byte-swapped value (RFC 1071 §2(B), byte order independence): update with that.
      const odd = ((at - tcp) & 1) === 1;
      const m = odd ? swap16(old) : old;
      const m1 = odd ? swap16(maxMss) : maxMss;
      const hc = (pkt[tcp + 16] << 8) | pkt[tcp + 17];
      // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')
      let sum = (~hc & 0xffff) + (~m & 0xffff) + m1;
      sum = (sum & 0xffff) + (sum >>> 16);
      sum = (sum & 0xffff) + (sum >>> 16);
      const hc1 = ~sum & 0xffff;
      pkt[tcp + 16] = hc1 >>> 8;
      pkt[tcp + 17] = hc1 & 0xff;
      return true;
    }
    i += optLen;
  }
  return false;
}
