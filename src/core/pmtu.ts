/**
 * Path MTU, the engine's side (plpmtud.ts is the per-path search): which size each path carries,
 * the probes that find it between keymesh nodes, what the kernel knows for stock WireGuard peers,
 * and what the tunnel does with an inner packet that does not fit the active path.
 *
 * Sizes. A path's `Plpmtud` works in WireGuard datagram sizes (the UDP payload). An inner packet
 * of n bytes becomes a datagram of 16 (header) + n padded + 16 (tag) bytes, so the peer's tunnel
 * MTU — the largest inner packet the active path carries unfragmented — is `current − 32`, never
 * above the interface MTU. Relay paths carry the datagram inside a RELAY message to the lighthouse
 * (RELAY_OVERHEAD more), which the probes, sent through the relay like any datagram, measure end to
 * end, so a relayed datagram is never fragmented on the way.
 *
 * Between keymesh nodes (extension version ≥ 3) each validated path is searched with padded
 * PMTU_PROBE messages that the peer acknowledges with PMTU_ACK on the path they came from; they are
 * sealed like all traffic, so neither can be forged. A stock WireGuard peer answers nothing of the
 * kind: its paths use what the kernel knows — the route's MTU (the interface's, or less when an
 * ICMP "fragmentation needed" / "packet too big" reached us) through `routeMtu` — and the errors
 * the socket's error queue reports (handlePacketTooBig).
 *
 * At the tunnel's edge (RFC 1191, RFC 8201, RFC 4459 §3): an inner packet larger than the tunnel
 * MTU is answered as a router would — IPv4 with DF set by an ICMP "fragmentation needed" carrying
 * the tunnel MTU, IPv6 by an ICMPv6 "packet too big", both written into the TUN device and
 * rate-limited — and an IPv4 packet without DF is fragmented here, inside the tunnel, so the outer
 * datagrams never are. The MSS option of TCP SYNs crossing the tunnel is lowered to fit (mss.ts).
 *
 * May touch: a peer's path entries' `mtu`, its `tunnelMtu`, the engine's transmit scratch (to seal
 * probes and fragments), its ICMP scratch and rate limit, counters and sink.
 */
import { PADDING_MULTIPLE, TRANSPORT_HEADER_SIZE } from './constants.js';
import { touch } from './deadline-index.js';
import { isRelay, type Path, type PathEntry } from './endpoint.js';
import type { Engine } from './engine.js';
import { EXT_PMTU_ACK, EXT_PMTU_PROBE, RELAY_HEADER, writeExtension } from './extension.js';
import { fragmentIPv4, fragmentIPv6 } from './fragment.js';
import { writeFragNeeded, writePacketTooBig } from './icmp.js';
import type { Peer } from './peer.js';
import { BASE_PMTU_V4, BASE_PMTU_V6, Plpmtud } from './plpmtud.js';
import { sealAndSend, sendCopies } from './send.js';

/** A transport message's header and Poly1305 tag around the (padded) inner packet. */
export const WG_OVERHEAD = TRANSPORT_HEADER_SIZE + 16;
export const UDP_HEADER = 8;
export const IPV4_HEADER = 20;
export const IPV6_HEADER = 40;
/** What carrying a datagram through a lighthouse adds: the outer transport header and tag, the RELAY header, up to 15 bytes of padding. */
export const RELAY_OVERHEAD = WG_OVERHEAD + RELAY_HEADER + PADDING_MULTIPLE - 1;
/** The smallest inner packet every IPv6 link must carry (RFC 8200 §5). */
export const IPV6_MIN_MTU = 1280;
/** Extension version from which a peer answers PMTU_PROBE. */
export const PMTU_EXT_VERSION = 3;

export type PmtuSource = 'probe' | 'kernel' | 'config';

function isMappedV4(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/** The IP family of a path's outer packets (a relay path: that of its lighthouse's active path). */
function familyOf(engine: Engine, path: Path): 4 | 6 {
  let p: Path | null = path;
  if (isRelay(path)) p = engine.peers.get(path.via!)?.endpoint.path ?? null;
  const a = p && engine.addressOf ? engine.addressOf(p) : null;
  return a && !isMappedV4(a.addr) ? 6 : 4;
}

/** The kernel's MTU for the route a path's datagrams take (a relay path: the one to its lighthouse), or null. */
function kernelMtu(engine: Engine, path: Path): number | null {
  if (!engine.routeMtu) return null;
  let p: Path | null = path;
  if (isRelay(path)) p = engine.peers.get(path.via!)?.endpoint.path ?? null;
  const m = p ? engine.routeMtu(p) : null;
  return m && m > 0 ? m : null;
}

/** Does this peer take part in path MTU discovery (a keymesh peer that answers PMTU_PROBE)? */
export function probing(engine: Engine, peer: Peer): boolean {
  return engine.pmtuDiscovery && peer.endpoint.speaksKeymesh && peer.extVersion >= PMTU_EXT_VERSION;
}

/** What the outer packet adds to a datagram on this path: IP and UDP headers, and the RELAY wrapping on a relay path. */
function overheadOf(engine: Engine, path: Path): number {
  const v6 = familyOf(engine, path) === 6;
  return (v6 ? IPV6_HEADER : IPV4_HEADER) + UDP_HEADER + (isRelay(path) ? RELAY_OVERHEAD : 0);
}

/** A path entry's search, made on first use with its base, its largest size worth having and its overhead. */
export function pmtuOf(engine: Engine, peer: Peer, e: PathEntry): Plpmtud {
  if (e.mtu) return e.mtu;
  const overhead = overheadOf(engine, e.path);
  const v6 = overhead - UDP_HEADER - (isRelay(e.path) ? RELAY_OVERHEAD : 0) === IPV6_HEADER;
  const base = (v6 ? BASE_PMTU_V6 : BASE_PMTU_V4) - overhead;
  const m = new Plpmtud(base, maxFor(engine, e, overhead), overhead);
  e.mtu = m;
  e.mtuSource = probing(engine, peer) ? 'probe' : engine.routeMtu ? 'kernel' : 'config';
  return m;
}

/** The largest datagram worth having on a path: the tunnel MTU's, within what the kernel says the route carries. */
function maxFor(engine: Engine, e: PathEntry, overhead: number): number {
  const want = engine.mtu + WG_OVERHEAD;
  const k = kernelMtu(engine, e.path);
  return k === null ? want : Math.min(want, k - overhead);
}

/** Recompute the peer's tunnel MTU from its active path (after anything that may change it). */
export function refreshTunnelMtu(engine: Engine, peer: Peer): void {
  const a = peer.endpoint.active;
  let t = engine.mtu;
  if (a?.mtu) t = Math.min(t, a.mtu.current - WG_OVERHEAD);
  if (t !== peer.tunnelMtu) {
    const from = peer.tunnelMtu;
    peer.tunnelMtu = t;
    if (a) engine.sink.event({ type: 'pmtu-changed', peer, path: a.path, from, to: t, pmtu: a.mtu ? a.mtu.pmtu : null, source: a.mtuSource });
  }
}

/**
 * A path became the active one (or the peer turned out to speak keymesh): search it — from full
 * size if it was never searched, else from what it carried — or, for a stock peer, take what the
 * kernel knows now.
 */
export function pmtuActivated(engine: Engine, peer: Peer, now: number): void {
  const a = peer.endpoint.active;
  if (!a) return;
  if (!a.mtu && !probing(engine, peer) && maxFor(engine, a, overheadOf(engine, a.path)) >= engine.mtu + WG_OVERHEAD) {
    // a stock peer whose route carries full size: nothing to keep (10,000 idle peers stay small)
    refreshTunnelMtu(engine, peer);
    return;
  }
  const m = pmtuOf(engine, peer, a);
  const overhead = m.overhead;
  m.setMax(maxFor(engine, a, overhead), now);
  if (probing(engine, peer)) {
    a.mtuSource = 'probe';
    if (m.state !== 'searching') m.start(now, m.searchedAt === -Infinity);
    touch(engine, peer);
  } else {
    a.mtuSource = engine.routeMtu ? 'kernel' : 'config';
    m.current = m.max;
    m.state = 'complete';
  }
  refreshTunnelMtu(engine, peer);
}

/** A path was validated (a spare, say): search it once, so a failover knows what it carries. */
export function pmtuValidated(engine: Engine, peer: Peer, e: PathEntry, now: number): void {
  if (!probing(engine, peer) || e === peer.endpoint.active) return;
  const m = pmtuOf(engine, peer, e);
  if (m.searchedAt !== -Infinity) return;
  m.start(now, false);
  touch(engine, peer);
}

/** When the peer's path MTU work is next due (Infinity: none). */
export function pmtuDeadline(engine: Engine, peer: Peer): number {
  if (!probing(engine, peer)) return Infinity;
  let t = Infinity;
  for (const e of peer.endpoint.values()) if (e.mtu) t = Math.min(t, e.mtu.deadline(e.srtt));
  return t;
}

/** Probes due at `now` on the peer's paths. */
export function firePmtu(engine: Engine, peer: Peer, now: number): void {
  if (!probing(engine, peer)) return;
  const active = peer.endpoint.active;
  for (const e of peer.endpoint.list()) {
    const m = e.mtu;
    if (!m) continue;
    const holes = m.blackHoles;
    for (const size of m.due(now, e.srtt, e.lastReceive)) sendPmtuProbe(engine, peer, e, m, size, now);
    if (m.blackHoles !== holes) engine.counters.pmtu.blackHoles++;
    if (e === active) refreshTunnelMtu(engine, peer);
  }
}

/** Seal a PMTU_PROBE padded to exactly `size` bytes on the wire and send it on e's path. */
function sendPmtuProbe(engine: Engine, peer: Peer, e: PathEntry, m: Plpmtud, size: number, now: number): void {
  const kp = peer.keypairs.current;
  const plain = size - WG_OVERHEAD;
  if (!kp || !kp.canSend(now) || plain < 8 || plain > engine.mtu) return;
  const id = m.sent(size, now);
  const base = TRANSPORT_HEADER_SIZE;
  const n = writeExtension(engine.txBuf, base, { type: EXT_PMTU_PROBE, id, size: 0 });
  engine.txBuf.fill(0, base + n, base + plain);
  engine.txSealOffs[0] = base;
  engine.txSealLens[0] = plain;
  sealAndSend(engine, peer, kp, e.path, engine.txBuf, 1, now, engine.txSealOffs, engine.txSealLens, false);
  peer.endpoint.sent(e, size, now);
  engine.counters.pmtu.probes++;
  engine.counters.pmtu.probeBytes += size + m.overhead;
}

/** A PMTU_PROBE of `wireLen` bytes arrived on `path`: acknowledge it there, saying the size it arrived with. */
export function onPmtuProbe(engine: Engine, peer: Peer, path: Path, id: number, wireLen: number, now: number): void {
  engine.sendExtension(peer, path, { type: EXT_PMTU_ACK, id, size: wireLen }, now);
}

/** The peer acknowledged our probe `id` on `path`. */
export function onPmtuAck(engine: Engine, peer: Peer, path: Path, id: number, size: number, now: number): void {
  const e = peer.endpoint.entryFor(path);
  if (!e?.mtu) return;
  e.mtu.acked(id, size, now);
  touch(engine, peer);
  if (e === peer.endpoint.active) refreshTunnelMtu(engine, peer);
}

/**
 * The kernel reported that a datagram we sent to addr:port did not fit: an ICMP "fragmentation
 * needed" / "packet too big" naming `mtu` (the IP-level MTU of the next hop), or a local EMSGSIZE.
 * `payload` is the start of the datagram as quoted: it must be one of ours — a transport message
 * to a receiver index of the peer's — so a blind attacker cannot shrink a path (RFC 8899 §4.6.1).
 * A stock peer's path takes the size at once; a keymesh path takes it as a hint and searches.
 */
export function onPacketTooBig(engine: Engine, addr: Uint8Array, port: number, mtu: number, payload: Uint8Array, now: number): void {
  engine.counters.pmtu.tooBigReports++;
  if (!engine.addressOf || payload.length < 8 || payload[0] !== 4 || mtu < 68) return;
  const index = (payload[4] | (payload[5] << 8) | (payload[6] << 16) | (payload[7] << 24)) >>> 0;
  for (const peer of engine.peers.values()) {
    const kps = peer.keypairs;
    if (kps.current?.remoteIndex !== index && kps.previous?.remoteIndex !== index && kps.next?.remoteIndex !== index) continue;
    for (const e of peer.endpoint.list()) {
      if (isRelay(e.path)) continue;
      const a = engine.addressOf(e.path);
      if (!a || a.port !== port || !a.addr.every((b, i) => b === addr[i])) continue;
      const fresh = e.mtu === null;
      const m = pmtuOf(engine, peer, e);
      const size = mtu - m.overhead;
      if (size >= m.current) {
        // (made just now, it already took the kernel's new figure for the route as its limit)
        if (fresh && e === peer.endpoint.active) refreshTunnelMtu(engine, peer);
        continue;
      }
      engine.counters.pmtu.tooBigApplied++;
      if (probing(engine, peer)) m.tooBig(size, now);
      else {
        m.setMax(size, now);
        m.current = m.max;
      }
      touch(engine, peer);
      if (e === peer.endpoint.active) refreshTunnelMtu(engine, peer);
    }
    return;
  }
}

/**
 * The tunnel's edge: the inner packet buf[off..off+len) (IP version `version`) is larger than the
 * peer's tunnel MTU. Returns true when it was dealt with here: answered with ICMP and dropped, or
 * fragmented and sent (an IPv4 packet without DF; an IPv6 packet no larger than IPv6's minimum
 * MTU, which must be carried whatever the path: RFC 8200 §5). False: send it as it is.
 */
export function tooBig(engine: Engine, peer: Peer, buf: Uint8Array, off: number, len: number, version: 4 | 6, now: number): boolean {
  const mtu = peer.tunnelMtu;
  const c = engine.counters.pmtu;
  if (version === 4 && (buf[off + 6] & 0x40) === 0) {
    const n = fragmentIPv4(buf, off, len, mtu, engine.fragBuf, engine.fragOffs, engine.fragLens);
    if (n === 0) {
      engine.drop('pmtuTooBig');
      return true;
    }
    c.fragmented++;
    c.fragments += n;
    sendCopies(engine, peer, engine.fragBuf, engine.fragOffs, engine.fragLens, n, now);
    return true;
  }
  if (version === 6 && len <= IPV6_MIN_MTU) {
    // Every IPv6 link carries 1280 bytes (RFC 8200 §5) and no IPv6 host may be told less, so a
    // tunnel whose path carries less must fragment (RFC 2473 §7.1). The kernel will not fragment
    // our outer datagrams at a size it does not know, so the inner packet is fragmented here,
    // with a Fragment header; only the peer's host sees the pieces, and reassembles them.
    const r = engine.random(4);
    const id = ((r[0] << 24) | (r[1] << 16) | (r[2] << 8) | r[3]) >>> 0;
    const n = fragmentIPv6(buf, off, len, mtu, id, engine.fragBuf, engine.fragOffs, engine.fragLens);
    if (n === 0) return false; // (a Hop-by-Hop or Routing header: goes as it is)
    c.ipv6MinMtu++;
    c.fragments += n;
    sendCopies(engine, peer, engine.fragBuf, engine.fragOffs, engine.fragLens, n, now);
    return true;
  }
  // While a search after a black hole settles, the size to tell the host is not known yet: an
  // ICMP now would pin it to the base for ten minutes (plpmtud.ts). The packet is dropped as the
  // black hole would have; the host's retransmission gets the right answer.
  const a = peer.endpoint.active;
  if (a?.mtu?.settling && !a.mtu.optimistic) {
    engine.drop('pmtuSettling');
    return true;
  }
  engine.drop('pmtuTooBig');
  if (!engine.icmpLimit.allow(now)) {
    c.icmpRateLimited++;
    return true;
  }
  const n =
    version === 4
      ? writeFragNeeded(engine.icmpBuf, 0, buf, off, len, mtu)
      : writePacketTooBig(engine.icmpBuf, 0, buf, off, len, Math.max(mtu, IPV6_MIN_MTU));
  if (n > 0) {
    c.icmpSent++;
    engine.sink.writeTun(engine.icmpBuf, 0, n);
  }
  return true;
}
