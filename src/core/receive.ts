/**
 * The receive path (whitepaper §5.4.6 and §6.1; the kernel's receive.c): a datagram is dispatched
 * by message type; a run of transport packets for one receiver index is looked up in the index
 * table, checked against the replay window, opened in place with one batched AEAD call and
 * committed, and a payload that is an IP packet from an address the sending peer is allowed is
 * written to the TUN device. Handshake messages go to handshake.ts, extension messages to paths.ts.
 *
 * May touch: the engine's receive scratch (rx*, one*), index table (read), routes, counters and
 * sink, and a peer's keypairs (replay windows, key confirmation), timers, endpoint and byte counts.
 */
import { MESSAGE_COOKIE_REPLY, MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_TRANSPORT_DATA, TRANSPORT_HEADER_SIZE } from './constants.js';
import { touch } from './deadline-index.js';
import type { Path } from './endpoint.js';
import type { DatagramResult, Engine } from './engine.js';
import { fromPending } from './membership.js';
import { EXT_LOOKUP, EXT_LOOKUP_ADDR, EXT_LOOKUP_NAME, EXT_PING, EXT_PONG } from './extension.js';
import { EXT_CERT, EXT_PATH_CHALLENGE, EXT_PATH_RESPONSE, EXT_PMTU_ACK, EXT_PMTU_PROBE, EXT_RELAY, EXT_RELAYED, isExtension } from './extension.js';
import { clampMss, isTcpSyn, mssFor } from './mss.js';
import {
  completeHandshake,
  handleCookieReply,
  handleInitiation,
  handleResponse,
  keepKeyFreshReceiving,
  retireKeypair,
} from './handshake.js';
import { triageHandshake } from './handshake-gate.js';
import { insideMesh } from './device-guard.js';
import { ipDeclaredLength, IPV4_DST_OFFSET, IPV4_SRC_OFFSET, IPV6_DST_OFFSET, IPV6_SRC_OFFSET, ipVersion } from './ip.js';
import type { Keypair } from './keypair.js';
import { messageType, readU32 } from './messages.js';
import { handleExtension, maybeHello, onAuthenticated, sendChallenge } from './paths.js';
import type { Peer } from './peer.js';
import { flushStaged } from './send.js';

/** One datagram, by message type (Engine.handleDatagram, and relayed datagrams after their batch). */
export function receiveDatagram(engine: Engine, data: Uint8Array, path: Path, now: number): DatagramResult {
  const t = messageType(data, 0, data.length);
  switch (t) {
    case MESSAGE_TRANSPORT_DATA: {
      engine.oneOff[0] = 0;
      engine.oneLen[0] = data.length;
      engine.onePath[0] = path;
      return handleTransportRun(engine, data, engine.oneOff, engine.oneLen, engine.onePath, 0, 1, now);
    }
    case MESSAGE_INITIATION:
      return handleInitiation(engine, data, path, now);
    case MESSAGE_RESPONSE:
      return handleResponse(engine, data, path, now);
    case MESSAGE_COOKIE_REPLY:
      return handleCookieReply(engine, data, now);
    default:
      return engine.drop('malformed');
  }
}

/** A handshake message the gate queued (Engine.processHandshakes): its MACs and the load checks are done. */
export function receiveAdmittedHandshake(engine: Engine, data: Uint8Array, path: Path, now: number): DatagramResult {
  return data[0] === MESSAGE_INITIATION ? handleInitiation(engine, data, path, now, true) : handleResponse(engine, data, path, now, true);
}

/** Engine.handleDatagramBatch: runs of transport packets for one receiver index go to handleTransportRun together. */
export function receiveDatagramBatch(engine: Engine, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, paths: Path[], count: number, now: number): void {
  let i = 0;
  while (i < count) {
    const o = offs[i];
    const type = messageType(buf, o, lens[i]);
    if (type !== MESSAGE_TRANSPORT_DATA) {
      // Not data: sorted out before any cryptography; a handshake that deserves the work is
      // copied into the handshake queue (handshake-gate.ts), the rest dropped without a copy.
      if (type === MESSAGE_INITIATION || type === MESSAGE_RESPONSE) triageHandshake(engine, type, buf, o, lens[i], paths[i], now);
      else if (type === MESSAGE_COOKIE_REPLY) handleCookieReply(engine, buf.subarray(o, o + lens[i]), now);
      else engine.drop('malformed');
      i++;
      continue;
    }
    const receiver = readU32(buf, o + 4);
    let j = i + 1;
    while (j < count && messageType(buf, offs[j], lens[j]) === MESSAGE_TRANSPORT_DATA && readU32(buf, offs[j] + 4) === receiver) j++;
    handleTransportRun(engine, buf, offs, lens, paths, i, j - i, now);
    i = j;
  }
}

/** Transport packets offs[first..first+n) all carrying the same receiver index. */
function handleTransportRun(
  engine: Engine,
  buf: Uint8Array,
  offs: Uint32Array,
  lens: Uint32Array,
  paths: Path[],
  first: number,
  n: number,
  now: number,
): DatagramResult {
  const receiver = readU32(buf, offs[first] + 4);
  const entry = engine.indexes.get(receiver);
  if (!entry || !entry.keypair) {
    engine.counters.drops.unknownIndex += n;
    return 'unknownIndex';
  }
  const { peer, keypair } = entry;
  touch(engine, peer); // once per run of datagrams for this keypair: its timers are about to move
  if (!keypair.canReceive(now)) {
    engine.counters.drops.expiredKeypair += n;
    return 'expiredKeypair';
  }
  if (n > engine.rxCap) growRx(engine, n);
  // Replay check before AEAD (cheap rejection), commit after (only authenticated counters count).
  let m = 0;
  let result: DatagramResult = 'replay';
  for (let k = first; k < first + n; k++) {
    const o = offs[k];
    const lo = readU32(buf, o + 8);
    const hi = readU32(buf, o + 12);
    if (!keypair.replay.check(hi, lo)) {
      engine.counters.drops.replay++;
      continue;
    }
    engine.rxHis[m] = hi;
    engine.rxLos[m] = lo;
    engine.rxOffs[m] = o + TRANSPORT_HEADER_SIZE;
    engine.rxLens[m] = lens[k] - TRANSPORT_HEADER_SIZE;
    engine.rxIdx[m] = k;
    m++;
  }
  if (m === 0) return result;
  engine.aead.openBatch(keypair.receiveKey, engine.rxHis, engine.rxLos, buf, engine.rxOffs, engine.rxLens, m, engine.rxOk);
  for (let q = 0; q < m; q++) {
    if (!engine.rxOk[q]) {
      engine.counters.drops.badAead++;
      result = 'badAead';
      continue;
    }
    // Only the highest-numbered packet so far may move the peer's endpoint (as RFC 9000 §9.3):
    // one overtaken on an old path must not drag the session back there.
    const newest = keypair !== peer.keypairs.previous && keypair.replay.isNewest(engine.rxHis[q], engine.rxLos[q]);
    if (!keypair.replay.commit(engine.rxHis[q], engine.rxLos[q])) {
      engine.counters.drops.replay++;
      result = 'replay';
      continue;
    }
    result = onAuthenticatedTransport(engine, peer, keypair, buf, engine.rxOffs[q], engine.rxLens[q] - 16, lens[engine.rxIdx[q]], paths[engine.rxIdx[q]], now, newest);
  }
  return result;
}

/** A transport packet authenticated: plaintext at buf[off .. off+len). */
function onAuthenticatedTransport(
  engine: Engine,
  peer: Peer,
  keypair: Keypair,
  buf: Uint8Array,
  off: number,
  len: number,
  wireLen: number,
  path: Path,
  now: number,
  newest: boolean,
): DatagramResult {
  engine.counters.rxPackets++;
  peer.rxBytes += wireLen;
  keypair.receivedAny = true;
  // (a stock WireGuard twin, in tests, sees no extension channel: an IP version 0 packet, dropped below)
  const ext = len > 0 && engine.extensions && isExtension(buf, off, len) ? buf[off + 1] : 0;
  // control messages may touch other peers (lookups, candidates, punching): rebuild the index;
  // relayed traffic touches exactly the peers it is sealed for (sealRelay) or comes from
  // (lookups touch only the asker, and the peers they send to are touched by sendExtension: a
  // lighthouse answering thousands of them must not rebuild the index of all its members each time)
  if (ext === EXT_LOOKUP || ext === EXT_LOOKUP_ADDR || ext === EXT_LOOKUP_NAME || ext === EXT_PING || ext === EXT_PONG) touch(engine, peer);
  else if (ext !== 0 && ext !== EXT_RELAY && ext !== EXT_RELAYED) engine.allDirty = true;
  // probes of a path say it works, not that the peer wants its traffic there
  if (ext === EXT_PATH_CHALLENGE || ext === EXT_PATH_RESPONSE || ext === EXT_PMTU_PROBE || ext === EXT_PMTU_ACK) {
    const candidate = peer.endpoint.heard(path, now, wireLen);
    if (candidate) sendChallenge(engine, peer, candidate, now);
  } else onAuthenticated(engine, peer, path, wireLen, now, newest);
  peer.timers.anyAuthenticatedPacketReceived();
  peer.timers.anyAuthenticatedPacketTraversal(now);
  if (keypair === peer.keypairs.next) {
    // Key confirmation (§5.4.6): the initiator used the responder's new keypair, so it becomes
    // current, the handshake is complete from our side too, and queued packets can go.
    const dropped = peer.keypairs.received(keypair);
    if (dropped) retireKeypair(engine, dropped);
    completeHandshake(engine, peer, false, now);
    flushStaged(engine, peer, now);
    maybeHello(engine, peer, now);
  }
  keepKeyFreshReceiving(engine, peer, now);
  if (len === 0) return 'keepalive';
  peer.timers.dataReceived(now);
  if (peer.membership === 'pending' && ext !== EXT_CERT) {
    // admitted to nothing but showing its certificate (membership.ts)
    fromPending(engine, peer, now);
    return engine.drop('notAdmitted');
  }
  if (ext !== 0) return handleExtension(engine, peer, path, buf, off, len, now);
  const version = ipVersion(buf, off, len);
  if (version === 0) return engine.drop('invalidInnerPacket');
  const declared = ipDeclaredLength(buf, off, version);
  if (declared > len || declared < (version === 4 ? 20 : 40)) return engine.drop('invalidInnerPacket');
  const src = off + (version === 4 ? IPV4_SRC_OFFSET : IPV6_SRC_OFFSET);
  if (engine.routes.lookup(buf, src, version) !== peer) return engine.drop('disallowedSource');
  // [A] of device-guard.ts: a device reaches the mesh and nothing else
  if (peer.device && !engine.devicesMayLeave && !insideMesh(engine, buf, off + (version === 4 ? IPV4_DST_OFFSET : IPV6_DST_OFFSET), version)) return engine.drop('deviceOutsideMesh');
  // a SYN from the peer's side: what our host may send back must fit the path (mss.ts; the
  // multiple of 16 as in send.ts, so both directions announce the same)
  if (engine.mssClamp && isTcpSyn(buf, off, version) && clampMss(buf, off, declared, mssFor(peer.tunnelMtu & ~15, version))) engine.counters.pmtu.mssClamped++;
  engine.sink.writeTun(buf, off, declared);
  return 'data';
}

/** Room to open a run of n transport packets at once. */
export function growRx(engine: Engine, n: number): void {
  const cap = Math.max(n, engine.rxCap * 2);
  engine.rxCap = cap;
  engine.rxHis = new Uint32Array(cap);
  engine.rxLos = new Uint32Array(cap);
  engine.rxOffs = new Uint32Array(cap);
  engine.rxLens = new Uint32Array(cap);
  engine.rxOk = new Uint8Array(cap);
  engine.rxIdx = new Uint32Array(cap);
}
