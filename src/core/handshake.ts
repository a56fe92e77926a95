/**
 * Handshakes (whitepaper §5.1, §5.3, §5.4.2–§5.4.5 and §6.2–§6.4; the kernel's noise.c and the
 * handshake half of receive.c): initiations, responses and cookie replies as they arrive; the DoS
 * gate every handshake message passes (mac1, the under-load decision, a cookie reply instead of an
 * answer, the per-source rate limit); sending initiations; completing a handshake; retiring
 * keypairs and dropping sessions. The Noise arithmetic is in noise.ts, MACs and cookies in cookie.ts.
 *
 * May touch: the engine's identity, cookie checker, index table, rate limiter, load window,
 * counters and sink, and a peer's handshake, keypairs, cookie state, timers and staging queue.
 */
import { sendDeviceNames } from './names.js';
import { COOKIE_REPLY_SIZE, HANDSHAKE_INITIATION_RATE, REKEY_RECEIVE_THRESHOLD, REKEY_TIMEOUT } from './constants.js';
import { touch } from './deadline-index.js';
import type { Path } from './endpoint.js';
import { keyId, type DatagramResult, type Engine, type IndexEntry } from './engine.js';
import { Keypair } from './keypair.js';
import { initiateNow, initiationExtras, introduceWaiting, lookup } from './lighthouse-lookup.js';
import { INITIATION_MAC1_OFFSET, parseCookieReply, parseInitiation, parseResponse, readU32, RESPONSE_MAC1_OFFSET } from './messages.js';
import { noteHandshakeLoad, replyWithCookie } from './handshake-gate.js';
import { acceptInitiation, consumeInitiation, consumeResponse, createInitiation, createResponse, deriveTransportKeys } from './noise.js';
import { maybeHello, onAuthenticated, sendChallenge } from './paths.js';
import { admitUnknown, candidateFor, onSessionComplete } from './membership.js';
import { lighthouseReady } from './directory.js';
import type { Peer } from './peer.js';
import { flushStaged, sendKeepalive } from './send.js';
import { compareTai64n, tai64n } from './tai64n.js';

/** `admitted`: the gate (handshake-gate.ts) checked its MACs and the load already. */
export function handleInitiation(engine: Engine, data: Uint8Array, path: Path, now: number, admitted = false): DatagramResult {
  if (!engine.local || !engine.checker) return engine.drop('noPrivateKey');
  const msg = parseInitiation(data);
  if (!msg) return engine.drop('malformed');
  const gate = admitted ? null : admitHandshake(engine, data, INITIATION_MAC1_OFFSET, path, now);
  if (gate) return gate;
  engine.allDirty = true; // past the gate: rebuild the deadline index
  const local = engine.local;
  // an unknown key: with a CA, a candidate peer that joins as pending if the initiation authenticates (membership.ts)
  let candidate: Peer | null = null;
  let limited = false;
  const consumed = consumeInitiation(local, msg, (s) => {
    const known = engine.peers.get(keyId(s));
    if (known || !engine.membership) return known?.handshake ?? null;
    const before = engine.membership.counters.pendingFull + engine.membership.counters.pendingRateLimited;
    candidate = candidateFor(engine, s, path, now);
    limited = candidate === null && engine.membership.counters.pendingFull + engine.membership.counters.pendingRateLimited > before;
    return candidate?.handshake ?? null;
  });
  if (!consumed) return engine.drop(limited ? 'admissionLimited' : 'handshakeInvalid');
  if (candidate !== null && !admitUnknown(engine, candidate, now)) return engine.drop('notAdmitted');
  const peer = engine.peers.get(keyId(consumed.result.remoteStatic))!;
  const hs = consumed.hs;
  if (compareTai64n(consumed.result.timestamp, hs.latestTimestamp) <= 0) return engine.drop('staleTimestamp');
  if (now - hs.lastInitiationConsumed < HANDSHAKE_INITIATION_RATE) return engine.drop('initiationFlood');
  // Crossed initiations: both sides started a handshake at the same moment. If each answered the
  // other's, each answer would replace the state its own initiation's response needs, and both
  // handshakes would be lost until the next retry (REKEY_TIMEOUT, as in WireGuard). One side
  // yields: the one with the lower public key keeps its initiation in flight and does not answer
  // (its peer answers it instead); the other answers as usual. (The timestamp is kept, so this
  // initiation cannot be replayed to us later.) Only when theirs came from a path ours could have
  // gone to: a peer that moved (a stock server on a new address) never got ours, and waiting for
  // its answer would leave both sides initiating into the void, ours to the old address for good.
  if (hs.state === 'initiation-created' && now - peer.lastSentHandshake < REKEY_TIMEOUT && lowerKey(local.publicKey, peer.publicKey) && peer.endpoint.entryFor(path)) {
    hs.latestTimestamp = consumed.result.timestamp;
    return engine.drop('crossedInitiation');
  }
  engine.counters.handshakesReceived++;
  releaseHandshakeIndex(engine, peer);
  acceptInitiation(hs, consumed.result, now);
  onAuthenticated(engine, peer, path, data.length, now);
  peer.timers.anyAuthenticatedPacketTraversal(now);
  peer.timers.anyAuthenticatedPacketReceived();

  // Respond: e, ee, se, psk, {}
  const entry: IndexEntry = { peer, keypair: null };
  const localIndex = engine.indexes.allocate(entry);
  const response = createResponse(local, hs, localIndex, engine.random);
  if (!response) {
    engine.indexes.release(localIndex);
    return engine.drop('handshakeInvalid');
  }
  peer.cookie.addMacs(response, RESPONSE_MAC1_OFFSET, now);
  const keys = deriveTransportKeys(local, hs)!;
  const kp = new Keypair(keys.sendKey, keys.receiveKey, false, now, keys.localIndex, keys.remoteIndex);
  entry.keypair = kp;
  for (const old of peer.keypairs.install(kp)) retireKeypair(engine, old);
  peer.timers.sessionDerived(now);
  engine.sink.send(path, response, 0, response.length);
  engine.counters.handshakesSent++;
  peer.timers.anyAuthenticatedPacketTraversal(now);
  peer.timers.anyAuthenticatedPacketSent();
  return 'initiation';
}

export function handleResponse(engine: Engine, data: Uint8Array, path: Path, now: number, admitted = false): DatagramResult {
  if (!engine.local || !engine.checker) return engine.drop('noPrivateKey');
  const msg = parseResponse(data);
  if (!msg) return engine.drop('malformed');
  const gate = admitted ? null : admitHandshake(engine, data, RESPONSE_MAC1_OFFSET, path, now);
  if (gate) return gate;
  engine.allDirty = true; // past the gate: rebuild the deadline index
  const entry = engine.indexes.get(msg.receiverIndex);
  if (!entry) return engine.drop('unknownIndex');
  if (entry.keypair) return engine.drop('unexpectedMessage');
  const peer = entry.peer;
  const hs = peer.handshake;
  if (hs.state !== 'initiation-created' || hs.localIndex !== msg.receiverIndex) return engine.drop('unexpectedMessage');
  if (!consumeResponse(engine.local, hs, msg)) return engine.drop('handshakeInvalid');
  engine.counters.handshakesReceived++;
  const keys = deriveTransportKeys(engine.local, hs)!;
  const kp = new Keypair(keys.sendKey, keys.receiveKey, true, now, keys.localIndex, keys.remoteIndex);
  entry.keypair = kp;
  for (const old of peer.keypairs.install(kp)) retireKeypair(engine, old);
  // the round trip of our latest initiation (a response answers only that one): the stock-path checks' time scale
  peer.handshakeRtt = now - peer.lastSentHandshake;
  onAuthenticated(engine, peer, path, data.length, now);
  // a path probe answered on its path (stock-paths.ts): stay there a moment, while the peer —
  // which may still get a few of our packets over the old path, and follow them — settles here
  if (peer.initiationTo && peer.initiationTo.id === path.id && peer.endpoint.path?.id === path.id) {
    peer.endpoint.stickTo = path.id;
    peer.endpoint.stickUntil = now + STICK_AFTER_PROBE;
  }
  peer.timers.anyAuthenticatedPacketTraversal(now);
  peer.timers.anyAuthenticatedPacketReceived();
  peer.timers.sessionDerived(now);
  completeHandshake(engine, peer, true, now);
  // Confirm the new keys to the responder: staged data, or a keepalive if there is none.
  if (peer.staged.length > 0) flushStaged(engine, peer, now);
  else sendKeepalive(engine, peer, now);
  maybeHello(engine, peer, now);
  return 'response';
}

export function handleCookieReply(engine: Engine, data: Uint8Array, now: number): DatagramResult {
  if (data.length !== COOKIE_REPLY_SIZE) return engine.drop('malformed');
  // only a reply naming a handshake of ours in flight is opened (nothing to gain by forging others)
  const entry = engine.indexes.get(readU32(data, 4));
  if (!entry) return engine.drop('unknownIndex');
  const msg = parseCookieReply(data);
  if (!msg) return engine.drop('malformed');
  if (!entry.peer.cookie.consumeReply(msg, now)) return engine.drop('unexpectedMessage');
  engine.allDirty = true; // rebuild the deadline index
  retryWithCookie(engine, entry.peer, now);
  return 'cookie';
}

/**
 * A cookie reply to our initiation: the responder is under load and will take the next one only
 * with mac2. Send it now, once per initiation answered this way, instead of after REKEY_TIMEOUT
 * (WireGuard's initiator waits the retry timer; the responder accepts an initiation per peer every
 * HANDSHAKE_INITIATION_RATE ms, and the fresh one carries a newer TAI64N timestamp).
 */
function retryWithCookie(engine: Engine, peer: Peer, now: number): void {
  if (peer.handshake.state !== 'initiation-created' || peer.cookieRetried === peer.lastInitiation) return;
  sendInitiation(engine, peer, true, now, true, peer.initiationTo); // a path probe's retry goes where it went
  peer.cookieRetried = peer.lastInitiation;
}

/**
 * The DoS gate every handshake message passes (whitepaper §5.3): mac1 always; under load a valid
 * mac2 (else a cookie reply) and the per-source rate limit. Returns a drop reason or null to go on.
 */
function admitHandshake(engine: Engine, data: Uint8Array, mac1Offset: number, path: Path, now: number): DatagramResult | null {
  if (!engine.checker!.mac1Valid(data, 0, mac1Offset)) return engine.drop('badMac1');
  noteHandshakeLoad(engine, now);
  if (!engine.isUnderLoad(now)) return null;
  if (!engine.checker!.mac2Valid(data, 0, mac1Offset, path.cookieBytes, now)) return replyWithCookie(engine, data, 0, mac1Offset, path, now);
  if (!engine.ratelimiter.allow(path.hostId, now)) return engine.drop('rateLimited');
  return null;
}

/**
 * Send a handshake initiation now, unless one went out less than REKEY_TIMEOUT ago — or, with
 * `cookieRetry`, because it answers a cookie reply (retryWithCookie), which need not wait.
 */
/** After a path probe is answered, the session stays on its path this long (ms) whatever arrives elsewhere. */
export const STICK_AFTER_PROBE = 1000;

/**
 * Start a handshake (§5.4.2). `to`: send it on that path only, not the active one (stock-paths.ts:
 * the handshake as a path probe), and without waiting REKEY_TIMEOUT since the last one — its
 * caller keeps initiations MIN_GAP apart.
 */
export function sendInitiation(engine: Engine, peer: Peer, retry: boolean, now: number, cookieRetry = false, to: Path | null = null): void {
  touch(engine, peer);
  if (!engine.local) {
    engine.counters.drops.noPrivateKey++;
    return;
  }
  if (!retry) peer.timers.handshakeAttempts = 0;
  if (!cookieRetry && !to && now - peer.lastSentHandshake < REKEY_TIMEOUT) return;
  const path = to ?? peer.endpoint.path;
  // With lighthouses, a peer we cannot reach (no endpoint, or no answer) is looked up, and the
  // initiation also goes over every relay and to every candidate address the lighthouses gave.
  const extra = !to && (!path || retry) ? initiationExtras(engine, peer, path, now) : null;
  if (extra) lookup(engine, peer, now);
  if (!path && (!extra || extra.length === 0)) {
    engine.counters.drops.noEndpoint++;
    // traffic waits for a peer we have no address for: the runtime may have a name to look up
    engine.sink.event({ type: 'endpoint-missing', peer });
    return;
  }
  releaseHandshakeIndex(engine, peer);
  const entry: IndexEntry = { peer, keypair: null };
  const localIndex = engine.indexes.allocate(entry);
  const msg = createInitiation(engine.local, peer.handshake, localIndex, tai64n(now + engine.wallClockOffset), engine.random);
  if (!msg) {
    engine.indexes.release(localIndex);
    engine.counters.drops.handshakeInvalid++;
    return;
  }
  peer.cookie.addMacs(msg, INITIATION_MAC1_OFFSET, now);
  peer.lastSentHandshake = now;
  peer.lastInitiation = msg;
  peer.initiationTo = to;
  engine.counters.handshakesSent++;
  if (path) engine.sink.send(path, msg, 0, msg.length);
  if (extra) for (const p of extra) engine.sink.send(p, msg, 0, msg.length);
  peer.timers.anyAuthenticatedPacketTraversal(now);
  peer.timers.anyAuthenticatedPacketSent();
  peer.timers.handshakeInitiated(now, engine.jitter());
  engine.sink.event({ type: 'handshake-initiated', peer, retry });
}

/** timers.ts resendInitiation: the initiation in flight, unchanged, where it went (and to the relays and candidates now known). */
export function resendInitiation(engine: Engine, peer: Peer, now: number): void {
  const msg = peer.lastInitiation;
  if (!msg || peer.handshake.state !== 'initiation-created') return;
  // one sent as a path probe (stock-paths.ts) is resent on that path alone: elsewhere it would be answered, and move the peer
  const to = peer.initiationTo;
  const path = to ?? peer.endpoint.path;
  if (path) engine.sink.send(path, msg, 0, msg.length);
  if (!to) for (const p of initiationExtras(engine, peer, path, now) ?? []) engine.sink.send(p, msg, 0, msg.length);
  peer.timers.initiationResent(now);
}

/** An index held by an unfinished handshake is released when a new handshake replaces it. */
function releaseHandshakeIndex(engine: Engine, peer: Peer): void {
  const hs = peer.handshake;
  if (hs.localIndex !== 0 || hs.state !== 'zeroed') {
    const e = engine.indexes.get(hs.localIndex);
    if (e && e.peer === peer && e.keypair === null) engine.indexes.release(hs.localIndex);
  }
}

export function completeHandshake(engine: Engine, peer: Peer, initiator: boolean, now: number): void {
  peer.timers.handshakeComplete();
  peer.lastHandshake = now;
  peer.handshakesCompleted++;
  peer.sentLastMinuteHandshake = false;
  engine.sink.event({ type: 'handshake-complete', peer, initiator });
  // mesh: our certificate first, before anything else of the session (membership.ts)
  onSessionComplete(engine, peer, now);
  if (peer.membership === 'pending') return; // it carries nothing else until its certificate checks out
  // candidates and relays that arrived before there was a session to challenge them with
  for (const e of peer.endpoint.unchallenged()) sendChallenge(engine, peer, e, now);
  if (peer.lighthouse) {
    // registered with a lighthouse: peers that were waiting for one can be looked up, and their
    // initiations relayed, now
    for (const p of engine.peers.values()) {
      if (p !== peer && !p.lighthouse && p.staged.length > 0 && !p.keypairs.current) initiateNow(engine, p, now);
    }
    lighthouseReady(engine, now); // packets for overlay addresses no peer holds yet (directory.ts)
    sendDeviceNames(engine, peer, now); // a gateway's devices (names.ts)
  }
  // a lighthouse: members that asked for this one while it was away are introduced now
  introduceWaiting(engine, peer, now);
}

/** §6.2: an initiator whose current keypair nears REJECT_AFTER_TIME re-handshakes on receive, once. */
export function keepKeyFreshReceiving(engine: Engine, peer: Peer, now: number): void {
  if (peer.sentLastMinuteHandshake) return;
  const kp = peer.keypairs.current;
  if (kp && kp.isInitiator && now - kp.created >= REKEY_RECEIVE_THRESHOLD) {
    peer.sentLastMinuteHandshake = true;
    sendInitiation(engine, peer, false, now);
  }
}

export function retireKeypair(engine: Engine, kp: Keypair): void {
  const e = engine.indexes.get(kp.localIndex);
  if (e && e.keypair === kp) engine.indexes.release(kp.localIndex);
  kp.zero();
}

export function dropSessions(engine: Engine, peer: Peer): void {
  for (const kp of peer.keypairs.clear()) retireKeypair(engine, kp);
  releaseHandshakeIndex(engine, peer);
  peer.handshake.clear();
  peer.staged = [];
}

/** Is `a` below `b`, as unsigned big-endian numbers (the crossed-initiation tie-break)? */
function lowerKey(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}
