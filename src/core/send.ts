/**
 * The send path (whitepaper §5.4.6 and §6.5; the kernel's send.c): IP packets from the TUN
 * device are routed by destination through the allowed-IPs table, padded, sealed under the
 * peer's current keypair with one batched AEAD call and framed in place; packets with no usable
 * session are staged until a handshake completes. A keepalive is an empty transport packet.
 *
 * May touch: the engine's transmit scratch (tx*), routes, counters and sink, and a peer's
 * keypair counters, timers, byte counts, staging queue and endpoint (what was sent on it). It
 * starts handshakes through handshake.ts, copies to candidate paths through paths.ts, hands
 * packets larger than the peer's path carries to pmtu.ts, and clamps the MSS of SYNs (mss.ts).
 */
import { lookupAddress } from './directory.js';
import { MAX_STAGED_PACKETS, PADDING_MULTIPLE, TRANSPORT_HEADER_SIZE } from './constants.js';
import { touch } from './deadline-index.js';
import type { Path } from './endpoint.js';
import type { Engine } from './engine.js';
import { sendInitiation } from './handshake.js';
import { insideMesh } from './device-guard.js';
import { IPV4_DST_OFFSET, IPV4_SRC_OFFSET, IPV6_DST_OFFSET, IPV6_SRC_OFFSET, ipVersion } from './ip.js';
import type { Keypair } from './keypair.js';
import { writeTransportHeader } from './messages.js';
import { clampMss, isTcpSyn, mssFor } from './mss.js';
import { duplicate } from './paths.js';
import { tooBig, WG_OVERHEAD } from './pmtu.js';
import { stockDataSent } from './stock-paths.js';
import type { Peer } from './peer.js';

export const TX_SLOT_EXTRA = TRANSPORT_HEADER_SIZE + PADDING_MULTIPLE + 16; // header + padding + tag

/**
 * Engine.handleTunBatch's work: each packet is routed by destination, then each peer's share is
 * padded, sealed with one AEAD call and framed, in place (or staged, without a usable session).
 */
export function sendTunBatch(engine: Engine, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number, now: number): void {
  if (count > engine.txCap) growTx(engine, count);
  let nPeers = 0;
  for (let i = 0; i < count; i++) {
    engine.txPeerOf[i] = null;
    const o = offs[i];
    const len = lens[i];
    const version = ipVersion(buf, o, len);
    if (version === 0) {
      engine.drop('invalidInnerPacket');
      continue;
    }
    if (len > engine.mtu) {
      engine.drop('tooBig');
      continue;
    }
    const dst = o + (version === 4 ? IPV4_DST_OFFSET : IPV6_DST_OFFSET);
    const peer = engine.routes.lookup(buf, dst, version);
    if (!peer) {
      // mesh: an overlay address no peer holds yet — ask the lighthouses (directory.ts)
      if (!(engine.membership && lookupAddress(engine, buf.subarray(dst, dst + (version === 4 ? 4 : 16)), buf.subarray(o, o + len), now))) engine.drop('noRoute');
      continue;
    }
    // [B] of device-guard.ts: only the mesh reaches a gateway's device
    if (peer.device && !engine.devicesMayLeave && !insideMesh(engine, buf, o + (version === 4 ? IPV4_SRC_OFFSET : IPV6_SRC_OFFSET), version)) {
      engine.drop('deviceOutsideMesh');
      continue;
    }
    // larger than the peer's path carries: answered or fragmented at the tunnel's edge (pmtu.ts)
    if (len > peer.tunnelMtu && tooBig(engine, peer, buf, o, len, version, now)) continue;
    // a SYN toward the peer: what its host sends back to ours must fit the path (mss.ts) — padded,
    // since the peer pads each packet to a multiple of 16 up to its own MTU (§5.4.6), so a segment
    // filling the tunnel MTU exactly would be padded past it: hence the multiple of 16 below
    if (engine.mssClamp && isTcpSyn(buf, o, version) && clampMss(buf, o, len, mssFor(peer.tunnelMtu & ~15, version))) engine.counters.pmtu.mssClamped++;
    engine.txPeerOf[i] = peer;
    let seen = false;
    for (let p = 0; p < nPeers; p++) if (engine.txPeers[p] === peer) seen = true;
    if (!seen) engine.txPeers[nPeers++] = peer;
  }
  for (let p = 0; p < nPeers; p++) {
    const peer = engine.txPeers[p];
    engine.txPeers[p] = undefined as unknown as Peer;
    const kp = peer.keypairs.current;
    const path = peer.endpoint.path;
    let n = 0;
    for (let i = 0; i < count; i++) if (engine.txPeerOf[i] === peer) n++;
    if (!engine.local || !kp || !kp.canSend(now, n) || !path) {
      // No usable session: keep copies until the handshake completes.
      for (let i = 0; i < count; i++) if (engine.txPeerOf[i] === peer) stage(engine, peer, buf.slice(offs[i], offs[i] + lens[i]));
      sendInitiation(engine, peer, false, now);
      continue;
    }
    n = 0;
    let largest = 0;
    const limit = peer.tunnelMtu;
    for (let i = 0; i < count; i++) {
      if (engine.txPeerOf[i] !== peer) continue;
      // §5.4.6: pad with zeros to a multiple of 16, but not beyond the MTU (the path's: pmtu.ts)
      const o = offs[i];
      const len = lens[i];
      const padded = Math.max(len, Math.min(limit, (len + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1)));
      buf.fill(0, o + len, o + padded);
      engine.txSealOffs[n] = o;
      engine.txSealLens[n] = padded;
      if (padded > largest) largest = padded;
      n++;
    }
    // the path's search confirms the size in use while packets of that size go (black holes: plpmtud.ts)
    const active = peer.endpoint.active;
    if (active !== null && active.mtu !== null && active.path === path) active.mtu.bigSent(largest + WG_OVERHEAD, now);
    sealAndSend(engine, peer, kp, path, buf, n, now);
    if (kp.wantsRekeyOnSend(now)) sendInitiation(engine, peer, false, now);
  }
}

/** Seal buf at txSeal*[0..n) under kp, frame each with its header, and hand it to the sink. */
export function sealAndSend(
  engine: Engine,
  peer: Peer,
  kp: Keypair,
  path: Path,
  buf: Uint8Array,
  n: number,
  now: number,
  sealOffs: Uint32Array = engine.txSealOffs,
  sealLens: Uint32Array = engine.txSealLens,
  /** Copies to paths being validated (make-before-break); not for path probes, which are about one path. */
  duplicates = true,
): void {
  touch(engine, peer);
  kp.reserve(n);
  engine.aead.sealBatch(kp.sendKey, kp.reservedHi, kp.reservedLo, buf, sealOffs, sealLens, n);
  let hi = kp.reservedHi;
  let lo = kp.reservedLo;
  let data = false;
  // Make-before-break: while a candidate path is being validated, copies go there too.
  const dups = duplicates && path === peer.endpoint.path && peer.endpoint.size > 1 ? peer.endpoint.duplicateTargets(0) : null;
  for (let k = 0; k < n; k++) {
    const start = sealOffs[k] - TRANSPORT_HEADER_SIZE;
    writeTransportHeader(buf, start, kp.remoteIndex, hi, lo);
    lo = (lo + 1) >>> 0;
    if (lo === 0) hi = (hi + 1) >>> 0;
    const total = TRANSPORT_HEADER_SIZE + sealLens[k] + 16;
    if (sealLens[k] > 0) data = true;
    peer.txBytes += total;
    engine.counters.txPackets++;
    engine.sink.send(path, buf, start, total);
    if (dups) duplicate(engine, peer, dups, buf, start, total, now);
  }
  peer.timers.anyAuthenticatedPacketTraversal(now);
  peer.timers.anyAuthenticatedPacketSent();
  if (data) {
    peer.timers.dataSent(now, engine.jitterFn);
    if (path === peer.endpoint.path) {
      peer.endpoint.dataSent(now);
      if (!peer.endpoint.speaksKeymesh) stockDataSent(engine, peer, now);
    }
  }
}

function stage(engine: Engine, peer: Peer, packet: Uint8Array): void {
  touch(engine, peer);
  if (peer.staged.length >= MAX_STAGED_PACKETS) {
    peer.staged.shift();
    engine.counters.drops.stagedOverflow++;
  }
  peer.staged.push(packet.slice());
}

/** Send what waited for a session (or start a handshake if there still is none). */
export function flushStaged(engine: Engine, peer: Peer, now: number): void {
  if (peer.staged.length === 0) return;
  const kp = peer.keypairs.current;
  const path = peer.endpoint.path;
  if (!kp || !path || !kp.canSend(now, peer.staged.length)) {
    sendInitiation(engine, peer, false, now);
    return;
  }
  const packets = peer.staged;
  peer.staged = [];
  if (packets.length > engine.txCap) growTx(engine, packets.length);
  const slot = engine.mtu + TX_SLOT_EXTRA;
  let n = 0;
  for (const p of packets) {
    const base = n * slot + TRANSPORT_HEADER_SIZE;
    if (p.length > 0) engine.txBuf.set(p, base);
    const padded = Math.min(engine.mtu, (p.length + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1));
    engine.txBuf.fill(0, base + p.length, base + padded);
    engine.txSealOffs[n] = base;
    engine.txSealLens[n] = padded;
    n++;
  }
  sealAndSend(engine, peer, kp, path, engine.txBuf, n, now);
}

/**
 * Send copies of n packets (src[offs[k] .. offs[k]+lens[k]), e.g. the fragments of one inner
 * packet: sealed in the transmit scratch, or staged without a usable session.
 */
export function sendCopies(engine: Engine, peer: Peer, src: Uint8Array, offs: Uint32Array, lens: Uint32Array, n: number, now: number): void {
  const kp = peer.keypairs.current;
  const path = peer.endpoint.path;
  if (!engine.local || !kp || !path || !kp.canSend(now, n)) {
    for (let k = 0; k < n; k++) stage(engine, peer, src.subarray(offs[k], offs[k] + lens[k]));
    sendInitiation(engine, peer, false, now);
    return;
  }
  if (n > engine.txCap) growTx(engine, n);
  const slot = engine.mtu + TX_SLOT_EXTRA;
  for (let k = 0; k < n; k++) {
    const base = k * slot + TRANSPORT_HEADER_SIZE;
    const len = lens[k];
    engine.txBuf.set(src.subarray(offs[k], offs[k] + len), base);
    const padded = Math.max(len, Math.min(peer.tunnelMtu, (len + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1)));
    engine.txBuf.fill(0, base + len, base + padded);
    engine.txSealOffs[k] = base;
    engine.txSealLens[k] = padded;
  }
  sealAndSend(engine, peer, kp, path, engine.txBuf, n, now);
}

/** A keepalive is a transport packet with an empty payload (§6.5). Without a session it starts a handshake. */
export function sendKeepalive(engine: Engine, peer: Peer, now: number): void {
  const kp = peer.keypairs.current;
  const path = peer.endpoint.path;
  if (peer.staged.length > 0) {
    flushStaged(engine, peer, now);
    return;
  }
  if (!kp || !path || !kp.canSend(now)) {
    stage(engine, peer, new Uint8Array(0));
    sendInitiation(engine, peer, false, now);
    return;
  }
  engine.txSealOffs[0] = TRANSPORT_HEADER_SIZE;
  engine.txSealLens[0] = 0;
  sealAndSend(engine, peer, kp, path, engine.txBuf, 1, now);
  // §6.2 applies to every packet sent, keepalives included (as in the kernel's and wireguard-go's
  // send paths): an idle session held open by persistent keepalives is rekeyed at REKEY_AFTER_TIME,
  // so it never runs into REJECT_AFTER_TIME with nothing valid to answer the peer's next packet
  if (kp.wantsRekeyOnSend(now)) sendInitiation(engine, peer, false, now);
}

/** Room to seal a batch of n packets (txBuf: n fixed slots of MTU + TX_SLOT_EXTRA bytes). */
export function growTx(engine: Engine, n: number): void {
  const cap = Math.max(n, engine.txCap * 2);
  engine.txCap = cap;
  engine.txBuf = new Uint8Array(cap * (engine.mtu + TX_SLOT_EXTRA));
  engine.txSealOffs = new Uint32Array(cap);
  engine.txSealLens = new Uint32Array(cap);
  engine.txPeerOf = new Array(cap).fill(null);
}
