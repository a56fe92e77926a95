/**
 * Paths, over the extension channel (keymesh's own, not in the whitepaper: extension.ts is its
 * wire codec, endpoint.ts the per-peer path state): HELLO (does the peer speak keymesh?),
 * PATH_CHALLENGE / PATH_RESPONSE (return-routability validation, RFC 9000 §8.2 in spirit), the
 * probes that keep spare paths warm, ADDRESSES (our addresses, announced), recovery rounds while
 * the active path is dead, and make-before-break copies to candidates within their
 * anti-amplification budget (RFC 9000 §8.1). A stock WireGuard peer keeps the whitepaper §2.1
 * roaming (endpoint.ts). handleExtension also hands the lighthouse messages to
 * lighthouse-lookup.ts and lighthouse-relay.ts.
 *
 * May touch: the engine's transmit scratch (to seal control messages), random, makePaths,
 * addressOf, localAddresses, counters and sink, and a peer's endpoint cache and announced addresses.
 */
import { answerLookupName, onDeviceNames, onNameAnswer, onPing, onPong } from './names.js';
import { onCertPiece, sendOurCert } from './membership.js';
import { answerLookupAddr } from './directory.js';
import { PADDING_MULTIPLE, REKEY_TIMEOUT, TRANSPORT_HEADER_SIZE } from './constants.js';
import { touch } from './deadline-index.js';
import { isRelay, type Path, type PathEntry } from './endpoint.js';
import { keyId, type DatagramResult, type Engine } from './engine.js';
import {
  EXT_ADDRESSES,
  EXT_CERT,
  EXT_LOOKUP_ADDR,
  EXT_LOOKUP_NAME,
  EXT_NAME_ANSWER,
  EXT_NAMES,
  EXT_PING,
  EXT_PONG,
  EXT_CANDIDATES,
  EXT_HELLO,
  EXT_LOOKUP,
  EXT_PATH_CHALLENGE,
  EXT_PATH_RESPONSE,
  EXT_PMTU_ACK,
  EXT_PMTU_PROBE,
  EXT_PUNCH_OPEN,
  EXT_RELAY,
  EXT_RELAYED,
  EXT_VERSION,
  parseExtension,
  TOKEN_LEN,
  writeExtension,
  type ExtMessage,
} from './extension.js';
import { sendInitiation } from './handshake.js';
import { answerLookup, onCandidates } from './lighthouse-lookup.js';
import { onRelayed, relayOn } from './lighthouse-relay.js';
import type { Peer } from './peer.js';
import { onPmtuAck, onPmtuProbe, pmtuActivated, pmtuValidated, WG_OVERHEAD } from './pmtu.js';
import { directAllowed, hold, onPunchOpen } from './punch.js';
import { sealAndSend } from './send.js';

/** Every authenticated packet goes through here: the endpoint cache decides what it means. */
export function onAuthenticated(engine: Engine, peer: Peer, path: Path, bytes: number, now: number, newest = true): void {
  const r = peer.endpoint.authenticatedFrom(path, now, bytes, newest);
  if (r.change) engine.emitEndpointChange(peer, r.change);
  if (r.challenge) sendChallenge(engine, peer, r.challenge, now);
}

export function sendChallenge(engine: Engine, peer: Peer, e: PathEntry, now: number): void {
  // a punched IPv4 candidate: not before our openers and the peer's (punch.ts)
  if (!directAllowed(engine, peer, e, now)) {
    hold(engine, peer, e, now);
    return;
  }
  const token = engine.random(TOKEN_LEN).slice();
  if (sendExtension(engine, peer, e.path, { type: EXT_PATH_CHALLENGE, token }, now, e)) peer.endpoint.challengeSent(e, token, now);
  else peer.endpoint.challengeBlocked(e);
}

/** Ask a peer whether it speaks keymesh (after each handshake, until it answers; a few times at most). */
export function maybeHello(engine: Engine, peer: Peer, now: number): void {
  if (peer.endpoint.speaksKeymesh || peer.hellosSent >= 3 || !engine.extensions || peer.membership === 'pending') return;
  const path = peer.endpoint.path;
  if (!path) return;
  peer.hellosSent++;
  sendExtension(engine, peer, path, { type: EXT_HELLO, reply: false, version: EXT_VERSION }, now);
}

export function handleExtension(engine: Engine, peer: Peer, path: Path, buf: Uint8Array, off: number, len: number, now: number): DatagramResult {
  const m = parseExtension(buf, off, len);
  if (!m) return engine.drop('badExtension');
  switch (m.type) {
    case EXT_HELLO:
      peer.extVersion = m.version;
      if (!m.reply) sendExtension(engine, peer, path, { type: EXT_HELLO, reply: true, version: EXT_VERSION }, now);
      if (!peer.endpoint.speaksKeymesh) {
        peer.endpoint.speaksKeymesh = true;
        engine.sink.event({ type: 'peer-speaks-keymesh', peer });
        if (peer.membership === 'static' && !peer.lighthouse) sendOurCert(engine, peer, now); // a configured keymesh peer: it may want our name
        sendAddresses(engine, peer, now);
        pmtuActivated(engine, peer, now); // it can be probed now
      }
      break;
    case EXT_ADDRESSES: {
      peer.announcedAddresses = m.addresses;
      if (!engine.makePaths) break;
      const paths: Path[] = [];
      for (const a of m.addresses) paths.push(...engine.makePaths(a.addr, a.port));
      for (const e of peer.endpoint.announced(paths)) sendChallenge(engine, peer, e, now);
      break;
    }
    case EXT_PATH_CHALLENGE:
      // Answer on the path the challenge came from: that is what proves return routability.
      sendExtension(engine, peer, path, { type: EXT_PATH_RESPONSE, token: m.token }, now);
      break;
    case EXT_PATH_RESPONSE: {
      const change = peer.endpoint.responseReceived(path, m.token, now);
      if (change) engine.emitEndpointChange(peer, change);
      const e = peer.endpoint.entryFor(path);
      if (e?.validated) pmtuValidated(engine, peer, e, now);
      break;
    }
    case EXT_PMTU_PROBE:
      onPmtuProbe(engine, peer, path, m.id, m.size + WG_OVERHEAD, now);
      break;
    case EXT_PMTU_ACK:
      onPmtuAck(engine, peer, path, m.id, m.size, now);
      break;
    case EXT_LOOKUP:
      answerLookup(engine, peer, path, m.key, now);
      break;
    case EXT_CANDIDATES:
      onCandidates(engine, peer, m.answer, m.key, m.addresses, now);
      break;
    case EXT_RELAY:
      relayOn(engine, peer, m.key, m.data, now);
      break;
    case EXT_RELAYED:
      onRelayed(engine, peer, m.key, m.data);
      break;
    case EXT_LOOKUP_NAME:
      answerLookupName(engine, peer, path, m.name, now);
      break;
    case EXT_NAME_ANSWER:
      onNameAnswer(engine, peer, m.name, m.found, m.key, m.addresses);
      break;
    case EXT_NAMES:
      onDeviceNames(engine, peer, m.first, m.names);
      break;
    case EXT_PING:
      onPing(engine, peer, path, m.token, now);
      break;
    case EXT_PONG:
      onPong(engine, peer, path, m.token, now);
      break;
    case EXT_CERT:
      onCertPiece(engine, peer, m.purpose, m.total, m.offset, m.data, now);
      break;
    case EXT_LOOKUP_ADDR:
      answerLookupAddr(engine, peer, path, m.addr, now);
      break;
    case EXT_PUNCH_OPEN:
      onPunchOpen(engine, peer, now, (e) => sendChallenge(engine, peer, e, now));
      break;
  }
  return 'extension';
}

/** Seal one extension message for `peer` and send it on `path` (respecting the amplification budget). */
export function sendExtension(engine: Engine, peer: Peer, path: Path, m: ExtMessage, now: number, entry?: PathEntry): boolean {
  touch(engine, peer);
  const kp = peer.keypairs.current;
  if (!kp || !kp.canSend(now)) return false;
  const base = TRANSPORT_HEADER_SIZE;
  const len = writeExtension(engine.txBuf, base, m);
  const padded = (len + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1);
  engine.txBuf.fill(0, base + len, base + padded);
  const e = entry ?? peer.endpoint.entryFor(path);
  const total = TRANSPORT_HEADER_SIZE + padded + 16;
  if (e && !peer.endpoint.mayAmplify(e, total)) {
    engine.counters.drops.amplificationLimit++;
    return false;
  }
  engine.txSealOffs[0] = base;
  engine.txSealLens[0] = padded;
  sealAndSend(engine, peer, kp, path, engine.txBuf, 1, now);
  if (e) peer.endpoint.sent(e, total, now);
  return true;
}

/**
 * Tell a keymesh peer every address we can be reached at, on the active path. ADDRESSES is not
 * acknowledged, so a first announcement is repeated later (ANNOUNCE_REPEATS); `repeat` marks one
 * of those.
 */
export function sendAddresses(engine: Engine, peer: Peer, now: number, repeat = false): void {
  const path = peer.endpoint.path;
  if (!path || engine.localAddresses.length === 0 || !peer.endpoint.speaksKeymesh) return;
  sendExtension(engine, peer, path, { type: EXT_ADDRESSES, addresses: engine.localAddresses }, now);
  if (!repeat) peer.endpoint.announcedOurs(now);
}

/**
 * A recovery round (endpoint.ts): the active path is dead and nothing validated replaces it.
 * Every remote address we know for the peer (the paths we have, the addresses it announced) is
 * tried from each of our current local ends; candidates are challenged again, validated paths
 * probed, and our addresses announced on every one of them, so the peer learns where we are
 * now over whichever path still carries packets.
 */
export function recover(engine: Engine, peer: Peer, now: number): void {
  const ep = peer.endpoint;
  if (engine.makePaths && engine.addressOf) {
    const remotes = new Map<string, { addr: Uint8Array; port: number }>();
    for (const e of ep.list()) {
      if (isRelay(e.path)) continue;
      const a = engine.addressOf(e.path);
      if (a) remotes.set(`${keyId(a.addr)}:${a.port}`, a);
    }
    for (const a of peer.announcedAddresses) remotes.set(`${keyId(a.addr)}:${a.port}`, a);
    const paths: Path[] = [];
    for (const r of remotes.values()) for (const p of engine.makePaths(r.addr, r.port)) paths.push(p);
    ep.ensure(paths);
  }
  const round = ep.dueRecovery(now);
  if (!round) return;
  // Silence on every path for REKEY_TIMEOUT: the peer may have restarted, and the session we hold
  // be its previous life's (it drops everything sealed under it). A fresh handshake finds out, and
  // gets through if it is so, instead of waiting for the new-handshake timer (§6.2, 15 s). At most
  // one initiation per REKEY_TIMEOUT, as always.
  let heard = -Infinity;
  for (const e of ep.list()) if (e.lastReceive > heard) heard = e.lastReceive;
  if (now - heard >= REKEY_TIMEOUT && now - peer.lastSentHandshake >= REKEY_TIMEOUT) sendInitiation(engine, peer, false, now);
  const active = ep.active;
  for (const e of round.probe) sendProbe(engine, peer, e, now);
  for (const e of round.challenge) sendChallenge(engine, peer, e, now);
  if (engine.localAddresses.length === 0) return;
  const m: ExtMessage = { type: EXT_ADDRESSES, addresses: engine.localAddresses };
  if (active) sendExtension(engine, peer, active.path, m, now, active);
  for (const e of round.challenge) if (e !== active && directAllowed(engine, peer, e, now)) sendExtension(engine, peer, e.path, m, now, e);
  for (const e of round.probe) if (e !== active) sendExtension(engine, peer, e.path, m, now, e);
}

export function sendProbe(engine: Engine, peer: Peer, e: PathEntry, now: number): void {
  const token = engine.random(TOKEN_LEN).slice();
  if (sendExtension(engine, peer, e.path, { type: EXT_PATH_CHALLENGE, token }, now, e)) peer.endpoint.probeSent(e, token, now);
  else peer.endpoint.probeSkipped(e, now);
}

/** Copy a sealed datagram to candidate paths within their budgets. */
export function duplicate(engine: Engine, peer: Peer, targets: PathEntry[], buf: Uint8Array, off: number, len: number, now: number): void {
  for (const e of targets) {
    if (!peer.endpoint.mayAmplify(e, len)) {
      engine.counters.drops.amplificationLimit++;
      continue;
    }
    peer.endpoint.sent(e, len, now);
    engine.sink.send(e.path, buf, off, len);
  }
}
