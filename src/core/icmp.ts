/**
 * The ICMP errors keymesh sends as the router at the tunnel's far end when an inner packet read
 * from the TUN device does not fit the tunnel's active path:
 *
 * - ICMPv4 Destination Unreachable, code 4 "fragmentation needed and DF set" with the next-hop
 *   MTU (RFC 792 format, RFC 1191 §4), for an IPv4 packet with DF set;
 * - ICMPv6 Packet Too Big (RFC 4443 §3.2, RFC 8201), for an IPv6 packet;
 * - IcmpRateLimit, the token bucket RFC 1812 §4.3.2.8 and RFC 4443 §2.4(f) ask for.
 *
 * The builders are pure: the offending packet is pkt[off..off+len) and the reply is written at
 * out[outOff..); they return the reply's length, or 0 when no error may be sent (RFC 1122
 * §3.2.2, RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)), when the packet is malformed, or when out has no
 * room. Whether a packet needs the error at all (DF set, longer than the path) is the caller's
 * call. `out` may overlap `pkt` (even be the same bytes): the quote is copied first, and the
 * addresses are then read from the copy.
 *
 * Addressing: the reply comes from the offending packet's destination and goes to its source, as
 * if a router past the tunnel said it. The packet's own source is never used as the reply's
 * source: Linux drops an ICMP from one of its own addresses, and one whose source equals its
 * destination, as martian.
 */
import { finishChecksum, sumIPv6Pseudo, sumWords } from './checksum.js';

// — Spec constants —
const PROTO_ICMP = 1;
const PROTO_ICMPV6 = 58;
const ICMP_DEST_UNREACHABLE = 3;
const ICMP_CODE_FRAG_NEEDED = 4; // "fragmentation needed and DF set" (RFC 792)
const ICMPV6_PACKET_TOO_BIG = 2;
/** ICMPv6 types below this are errors (RFC 4443 §2.1). */
const ICMPV6_INFO_MIN = 128;
const ICMP_HEADER_SIZE = 8; // type, code, checksum, then 4 bytes (unused + next-hop MTU, or MTU)
const IPV4_HEADER_SIZE = 20; // our reply carries no options
const IPV6_HEADER_SIZE = 40;
/** An ICMPv4 error is at most 576 bytes in all (RFC 1812 §4.3.2.3). */
const ICMPV4_ERROR_MAX = 576;
/** An ICMPv6 error is at most the IPv6 minimum MTU in all (RFC 4443 §2.4(c)). */
const ICMPV6_ERROR_MAX = 1280;
/** RFC 791's minimum MTU; RFC 8200 §5's for IPv6. */
const IPV4_MTU_MIN = 68;
const IPV6_MTU_MIN = 1280;
/** RFC 1812 §4.3.2.5: errors other than Source Quench go at precedence 6 (internetwork control). */
const TOS_INTERNETWORK_CONTROL = 0xc0;
/** IPv6 extension headers walked to find an ICMPv6 error behind them (RFC 8200 §4). */
const NH_HOP_BY_HOP = 0;
const NH_ROUTING = 43;
const NH_FRAGMENT = 44;
const NH_AH = 51;
const NH_DEST_OPTS = 60;

// — keymesh's choices —
const REPLY_TTL = 64;

/** The ICMP types that are errors (RFC 1122 §3.2.2): never answered with another error. */
function isIcmpv4Error(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

/**
 * Whether an IPv4 address names one host we may talk to: not in 0/8 ("this network"), 127/8
 * (loopback) or 224/3 (multicast 224/4, class E 240/4 and the limited broadcast
 * 255.255.255.255). RFC 1122 §3.2.2 lists these as sources that "do not define a single host";
 * the same test on the destination keeps the reply's own source from being one of them.
 */
function isUnicast4(b: Uint8Array, at: number): boolean {
  const first = b[at];
  return first !== 0 && first !== 127 && first < 224;
}

function equalBytes(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

/**
 * Write an ICMPv4 "fragmentation needed and DF set" answering the IPv4 packet pkt[off..off+len),
 * announcing `mtu` as the next-hop MTU (RFC 1191 §4). Returns the reply's length, or 0 when no
 * error may be sent: the packet is malformed, a non-first fragment, itself an ICMP error, from a
 * source that is not one host or to a destination that is not one host (multicast, broadcast),
 * or out has no room from outOff. The reply quotes the packet's header and as much of its payload
 * as keeps the reply within 576 bytes (at least the header and 8 bytes, when the packet has them).
 */
export function writeFragNeeded(
  out: Uint8Array,
  outOff: number,
  pkt: Uint8Array,
  off: number,
  len: number,
  mtu: number,
): number {
  if (!Number.isInteger(mtu) || mtu < IPV4_MTU_MIN || mtu > 0xffff) {
    throw new RangeError(`writeFragNeeded: mtu must be an integer in 68..65535, got ${mtu}`);
  }
  if (off < 0 || len < IPV4_HEADER_SIZE || off + len > pkt.length) return 0;
  const vihl = pkt[off];
  if (vihl >>> 4 !== 4) return 0;
  const hlen = (vihl & 0x0f) * 4;
  if (hlen < IPV4_HEADER_SIZE || hlen > len) return 0;
  const total = (pkt[off + 2] << 8) | pkt[off + 3];
  if (total < hlen || total > len) return 0;
  // RFC 1812 §4.3.2.7: not for a non-initial fragment
  if ((((pkt[off + 6] & 0x1f) << 8) | pkt[off + 7]) !== 0) return 0;
  if (!isUnicast4(pkt, off + 12) || !isUnicast4(pkt, off + 16)) return 0;
  if (equalBytes(pkt, off + 12, pkt, off + 16, 4)) return 0;
  if (pkt[off + 9] === PROTO_ICMP) {
    // an ICMP message whose type we cannot see might be an error: stay silent
    if (total <= hlen || isIcmpv4Error(pkt[off + hlen])) return 0;
  }

  const quote = Math.min(total, ICMPV4_ERROR_MAX - IPV4_HEADER_SIZE - ICMP_HEADER_SIZE);
  const icmpLen = ICMP_HEADER_SIZE + quote;
  const replyLen = IPV4_HEADER_SIZE + icmpLen;
  if (outOff < 0 || outOff + replyLen > out.length) return 0;

  const o = outOff;
  const q = o + IPV4_HEADER_SIZE + ICMP_HEADER_SIZE;
  // The quote first: TypedArray#set copies correctly even when out and pkt share bytes, and
  // from here on only the copy is read.
  out.set(pkt.subarray(off, off + quote), q);

  out[o] = 0x45;
  out[o + 1] = TOS_INTERNETWORK_CONTROL;
  out[o + 2] = replyLen >>> 8;
  out[o + 3] = replyLen & 0xff;
  out[o + 4] = 0; // identification: this datagram is never fragmented by us
  out[o + 5] = 0;
  out[o + 6] = 0; // flags (DF clear) and fragment offset
  out[o + 7] = 0;
  out[o + 8] = REPLY_TTL;
  out[o + 9] = PROTO_ICMP;
  out[o + 10] = 0;
  out[o + 11] = 0;
  out.copyWithin(o + 12, q + 16, q + 20); // source := the packet's destination
  out.copyWithin(o + 16, q + 12, q + 16); // destination := the packet's source
  const ipSum = finishChecksum(sumWords(out, o, IPV4_HEADER_SIZE, 0));
  out[o + 10] = ipSum >>> 8;
  out[o + 11] = ipSum & 0xff;

  const c = o + IPV4_HEADER_SIZE;
  out[c] = ICMP_DEST_UNREACHABLE;
  out[c + 1] = ICMP_CODE_FRAG_NEEDED;
  out[c + 2] = 0;
  out[c + 3] = 0;
  out[c + 4] = 0; // unused (RFC 1191 §4)
  out[c + 5] = 0;
  out[c + 6] = mtu >>> 8; // next-hop MTU
  out[c + 7] = mtu & 0xff;
  const icmpSum = finishChecksum(sumWords(out, c, icmpLen, 0));
  out[c + 2] = icmpSum >>> 8;
  out[c + 3] = icmpSum & 0xff;
  return replyLen;
}

function isUnspecified6(b: Uint8Array, at: number): boolean {
  for (let i = 0; i < 16; i++) if (b[at + i] !== 0) return false;
  return true;
}

function isLoopback6(b: Uint8Array, at: number): boolean {
  for (let i = 0; i < 15; i++) if (b[at + i] !== 0) return false;
  return b[at + 15] === 1;
}

/**
 * Whether the IPv6 packet (already checked to be `total` bytes long) carries an ICMPv6 error,
 * or might: 1 yes, 0 no, -1 the extension header chain runs past the packet (malformed). The
 * chain is walked through hop-by-hop, routing, destination options, AH and a first fragment's
 * fragment header, so an error behind them is recognised too (RFC 4443 §2.4(e.1)); a non-first
 * fragment does not carry the upper-layer header and is answered.
 */
function carriesIcmpv6Error(pkt: Uint8Array, off: number, total: number): number {
  const end = off + total;
  let nh = pkt[off + 6];
  let p = off + IPV6_HEADER_SIZE;
  for (;;) {
    if (nh === PROTO_ICMPV6) {
      if (p >= end) return 1; // the type is not there to see: stay silent
      return pkt[p] < ICMPV6_INFO_MIN ? 1 : 0;
    }
    if (nh === NH_HOP_BY_HOP || nh === NH_ROUTING || nh === NH_DEST_OPTS || nh === NH_AH) {
      if (p + 2 > end) return -1;
      const size = nh === NH_AH ? (pkt[p + 1] + 2) * 4 : (pkt[p + 1] + 1) * 8;
      nh = pkt[p];
      p += size;
      continue;
    }
    if (nh === NH_FRAGMENT) {
      if (p + 8 > end) return -1;
      if ((((pkt[p + 2] << 8) | pkt[p + 3]) & 0xfff8) !== 0) return 0;
      nh = pkt[p];
      p += 8;
      continue;
    }
    return 0;
  }
}

/**
 * Write an ICMPv6 Packet Too Big answering the IPv6 packet pkt[off..off+len), announcing `mtu`
 * (RFC 4443 §3.2). Returns the reply's length, or 0 when no error may be sent: the packet is
 * malformed, carries an ICMPv6 error (also behind extension headers), comes from the unspecified
 * address, a multicast address or ::1, or out has no room from outOff. The reply quotes as much
 * of the packet as keeps it within 1280 bytes.
 *
 * Unlike other errors, Packet Too Big is sent for a multicast destination (RFC 4443 §2.4(e.3)),
 * but then the reply cannot come from the destination: RFC 4443 §2.2 wants a unicast source, and
 * receivers drop packets from multicast addresses. `localSource` (16 bytes, a unicast address of
 * this node, e.g. its tunnel address) is the source used then; without it, a packet to a multicast
 * address gets no reply (0). It is not used for unicast destinations.
 */
export function writePacketTooBig(
  out: Uint8Array,
  outOff: number,
  pkt: Uint8Array,
  off: number,
  len: number,
  mtu: number,
  localSource?: Uint8Array,
): number {
  if (!Number.isInteger(mtu) || mtu < IPV6_MTU_MIN || mtu > 0xffffffff) {
    throw new RangeError(`writePacketTooBig: mtu must be an integer in 1280..2^32-1, got ${mtu}`);
  }
  if (localSource !== undefined) {
    if (localSource.length !== 16) {
      throw new RangeError(`writePacketTooBig: localSource must be 16 bytes, got length=${localSource.length}`);
    }
    if (localSource[0] === 0xff || isUnspecified6(localSource, 0)) {
      throw new RangeError('writePacketTooBig: localSource must be a unicast address');
    }
  }
  if (off < 0 || len < IPV6_HEADER_SIZE || off + len > pkt.length) return 0;
  if (pkt[off] >>> 4 !== 6) return 0;
  const total = IPV6_HEADER_SIZE + ((pkt[off + 4] << 8) | pkt[off + 5]);
  if (total > len) return 0;
  const src = off + 8;
  const dst = off + 24;
  // RFC 4443 §2.4(e.6): the source must name a single node; ::1 never leaves its host
  if (pkt[src] === 0xff || isUnspecified6(pkt, src) || isLoopback6(pkt, src)) return 0;
  const multicastDst = pkt[dst] === 0xff;
  if (multicastDst && localSource === undefined) return 0;
  // the destination becomes our source, which may be neither of these
  if (isUnspecified6(pkt, dst) || isLoopback6(pkt, dst)) return 0;
  if (equalBytes(pkt, src, pkt, dst, 16)) return 0;
  if (carriesIcmpv6Error(pkt, off, total) !== 0) return 0;

  const quote = Math.min(total, ICMPV6_ERROR_MAX - IPV6_HEADER_SIZE - ICMP_HEADER_SIZE);
  const icmpLen = ICMP_HEADER_SIZE + quote;
  const replyLen = IPV6_HEADER_SIZE + icmpLen;
  if (outOff < 0 || outOff + replyLen > out.length) return 0;

  const o = outOff;
  const q = o + IPV6_HEADER_SIZE + ICMP_HEADER_SIZE;
  out.set(pkt.subarray(off, off + quote), q); // first, as in writeFragNeeded

  out[o] = 0x60; // version 6, traffic class 0, flow label 0
  out[o + 1] = 0;
  out[o + 2] = 0;
  out[o + 3] = 0;
  out[o + 4] = icmpLen >>> 8;
  out[o + 5] = icmpLen & 0xff;
  out[o + 6] = PROTO_ICMPV6;
  out[o + 7] = REPLY_TTL; // hop limit
  if (multicastDst) out.set(localSource!.subarray(0, 16), o + 8);
  else out.copyWithin(o + 8, q + 24, q + 40); // source := the packet's destination
  out.copyWithin(o + 24, q + 8, q + 24); // destination := the packet's source

  const c = o + IPV6_HEADER_SIZE;
  out[c] = ICMPV6_PACKET_TOO_BIG;
  out[c + 1] = 0;
  out[c + 2] = 0;
  out[c + 3] = 0;
  out[c + 4] = mtu >>> 24;
  out[c + 5] = (mtu >>> 16) & 0xff;
  out[c + 6] = (mtu >>> 8) & 0xff;
  out[c + 7] = mtu & 0xff;
  const sum = finishChecksum(sumIPv6Pseudo(out, o + 8, out, o + 24, icmpLen, PROTO_ICMPV6) + sumWords(out, c, icmpLen, 0));
  out[c + 2] = sum >>> 8;
  out[c + 3] = sum & 0xff;
  return replyLen;
}

/**
 * A token bucket for ICMP errors (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)): `perSecond` errors a
 * second on average, up to `burst` at once. One instance is one bucket; keep one per device, or
 * one per source if a flooding source must not silence the errors owed to others. The caller
 * passes a monotonic `now` in milliseconds; a `now` earlier than the last one refills nothing.
 */
export class IcmpRateLimit {
  /** Credit in units of 1/1000 error per `perSecond`: one error costs 1000, a millisecond earns `perSecond`. */
  private credit: number;
  private last = -Infinity;
  private readonly maxCredit: number;

  constructor(
    readonly perSecond = 100,
    readonly burst = 20,
  ) {
    if (!(perSecond > 0) || !Number.isFinite(perSecond)) {
      throw new RangeError(`IcmpRateLimit: perSecond must be a positive number, got ${perSecond}`);
    }
    if (!Number.isInteger(burst) || burst < 1) {
      throw new RangeError(`IcmpRateLimit: burst must be an integer ≥ 1, got ${burst}`);
    }
    this.maxCredit = burst * 1000;
    this.credit = this.maxCredit;
  }

  /** Whether an error may be sent at `now` (ms); if so, its token is spent. */
  allow(now: number): boolean {
    if (now > this.last) {
      // the first call finds last = −∞ and a full bucket: Math.min keeps it full
      this.credit = Math.min(this.maxCredit, this.credit + (now - this.last) * this.perSecond);
      this.last = now;
    }
    if (this.credit < 1000) return false;
    this.credit -= 1000;
    return true;
  }
}
