/**
 * Lookups through lighthouses (keymesh's own, not in the whitepaper; lighthouse.ts describes the
 * protocol): a member sends LOOKUP to every lighthouse it holds a session with; a lighthouse
 * answers CANDIDATES (where the peer may be) and at once sends the peer the asker's candidates,
 * so both sides punch; a member probes the candidates it is given, sends its handshake
 * initiations to every relay and candidate, and keeps a relay path ready through every lighthouse.
 *
 * May touch: the engine's lookup budget, lighthouse counters and sink; a peer's endpoint cache
 * (candidates, relay paths), lastLookup and foundVia. It reads the other peers.
 */
import { claimWaiting } from './directory.js';
import { introduce, introducedPeer } from './membership.js';
import { REKEY_TIMEOUT } from './constants.js';
import type { Path, PathEntry } from './endpoint.js';
import { keyId, type Engine } from './engine.js';
import { EXT_CANDIDATES, EXT_LOOKUP, MAX_ADDRESSES, type ExtMessage } from './extension.js';
import { LOOKUP_MIN_INTERVAL } from './lighthouse.js';
import { sendInitiation } from './handshake.js';
import { sendChallenge, sendExtension } from './paths.js';
import type { Peer } from './peer.js';
import { directAllowed, openTowards } from './punch.js';

/** Traffic to this peer goes through a lighthouse: keep trying for a direct path. */
export function onRelay(p: Peer): boolean {
  const a = p.endpoint.path;
  return a !== null && a.via !== undefined && p.keypairs.current !== null;
}

function hasLighthouses(engine: Engine): boolean {
  for (const p of engine.peers.values()) if (p.lighthouse) return true;
  return false;
}

/** Lighthouses we hold a session with (they can carry a lookup or a relay now). */
function liveLighthouses(engine: Engine, except: Peer): Peer[] {
  const out: Peer[] = [];
  for (const l of engine.peers.values()) {
    if (l.lighthouse && l !== except && l.keypairs.current && l.endpoint.path && l.endpoint.path.via === undefined) out.push(l);
  }
  return out;
}

/** Where else a handshake initiation for `peer` goes: every relay and every unconfirmed candidate; null without lighthouses. */
export function initiationExtras(engine: Engine, peer: Peer, path: Path | null, now: number): Path[] | null {
  if (peer.lighthouse || !hasLighthouses(engine)) return null;
  const out: Path[] = [];
  for (const l of liveLighthouses(engine, peer)) {
    const r = engine.relayPath(l, peer);
    if (r !== path) out.push(r);
  }
  for (const e of peer.endpoint.list()) {
    if (e.punched && e.path !== path && (e.state === 'new' || e.state === 'validating') && directAllowed(engine, peer, e, now)) out.push(e.path);
  }
  return out;
}

/** Ask every lighthouse where `peer` is, and make sure a relay to it exists through each. */
export function lookup(engine: Engine, peer: Peer, now: number, force = false): void {
  if (peer.lighthouse || (!force && now - peer.lastLookup < LOOKUP_MIN_INTERVAL)) return;
  const live = liveLighthouses(engine, peer);
  // with no lighthouse session yet nothing was asked: the first one to complete asks at once
  if (live.length === 0) return;
  peer.lastLookup = now;
  for (const l of live) {
    if (sendExtension(engine, l, l.endpoint.path!, { type: EXT_LOOKUP, key: peer.publicKey }, now)) engine.lh.lookupsSent++;
  }
  ensureRelays(engine, peer, live, now);
}

function ensureRelays(engine: Engine, peer: Peer, live: Peer[], now: number): void {
  for (const l of live) {
    const e = peer.endpoint.addRelay(engine.relayPath(l, peer));
    // new, failed, or validated once but missing its probes since (it was not kept warm while a
    // direct path carried the traffic): prove it works now
    const stale = e.state === 'validated' && e.probeMisses > 0;
    if (e !== peer.endpoint.active && (e.state === 'new' || e.state === 'failed' || stale) && peer.keypairs.current) sendChallenge(engine, peer, e, now);
  }
}

/** Lighthouse: where `m` may be reached — its reflexive address first, then what it announced. */
function candidatesOf(engine: Engine, m: Peer): Array<{ addr: Uint8Array; port: number }> {
  const out: Array<{ addr: Uint8Array; port: number }> = [];
  const add = (a: { addr: Uint8Array; port: number } | null) => {
    if (!a || out.length >= MAX_ADDRESSES) return;
    for (const o of out) if (o.port === a.port && keyId(o.addr) === keyId(a.addr)) return;
    out.push(a);
  };
  let latest: PathEntry | null = null;
  for (const e of m.endpoint.list()) {
    if (e.path.via === undefined && e.lastTraffic > -Infinity && (!latest || e.lastTraffic > latest.lastTraffic)) latest = e;
  }
  if (latest && engine.addressOf) add(engine.addressOf(latest.path));
  const a = m.endpoint.path;
  if (a && a.via === undefined && engine.addressOf) add(engine.addressOf(a));
  for (const x of m.announcedAddresses) add(x);
  return out;
}

/** Lighthouse: a member asks where `key` is. Answer it and, at once, tell `key` to probe back. */
export function answerLookup(engine: Engine, asker: Peer, path: Path, key: Uint8Array, now: number): void {
  const target = engine.peers.get(keyId(key));
  if (!engine.isLighthouse || !target || target === asker || target.membership === 'pending' || !engine.lookupBudget.take(asker.keyId, 1, now)) {
    engine.lh.lookupsRefused++;
    return;
  }
  // Keep the question for a while, answered or not, and introduce both again the moment the
  // target registers (introduceWaiting): it may not be up yet, or the session we hold with it may
  // be its previous life's (it went down and is coming back), and the asker should not be left to
  // its handshake retry timer either way.
  engine.introductions.remember(target.keyId, asker.keyId, now);
  const theirs = candidatesOf(engine, target);
  if (theirs.length === 0 || !target.keypairs.current) {
    engine.lh.lookupsRefused++; // we do not know where it is (it has not registered)
    return;
  }
  const answer: ExtMessage = { type: EXT_CANDIDATES, answer: true, key: target.publicKey, addresses: theirs };
  // mesh: each side gets the other's certificate first, so it can admit it (membership.ts)
  introduce(engine, asker, target, now);
  // answer where the question came from (the asker may have just moved there)
  if (!sendExtension(engine, asker, path, answer, now) && asker.endpoint.path) sendExtension(engine, asker, asker.endpoint.path, answer, now);
  engine.lh.lookupsAnswered++;
  const tp = target.endpoint.path;
  if (tp) introduce(engine, target, asker, now);
  if (tp && sendExtension(engine, target, tp, { type: EXT_CANDIDATES, answer: false, key: asker.publicKey, addresses: candidatesOf(engine, asker) }, now)) {
    engine.lh.punchesSent++;
  }
}

/** Member: a lighthouse says where `key` may be. Probe every candidate (and keep a relay ready). */
export function onCandidates(engine: Engine, from: Peer, answer: boolean, key: Uint8Array, addresses: Array<{ addr: Uint8Array; port: number }>, now: number): void {
  // mesh: a member nobody configured, whose certificate the lighthouse has just introduced (membership.ts)
  const target = engine.peers.get(keyId(key)) ?? (from.lighthouse ? introducedPeer(engine, key, now) : null);
  if (target && target.membership === 'certified') claimWaiting(engine, target); // packets that waited for the lookup (directory.ts)
  if (!from.lighthouse || !target || target === from || target.lighthouse) {
    engine.lh.ignored++;
    return;
  }
  engine.lh.candidatesReceived++;
  target.foundVia = from.keyId;
  const paths: Path[] = [];
  if (engine.makePaths) {
    for (const a of addresses) for (const p of engine.makePaths(a.addr, a.port)) if (!paths.includes(p)) paths.push(p);
  }
  const fresh = target.endpoint.candidates(paths, now);
  // openers first, so our NAT is open toward the peer before anything full-size goes (punch.ts)
  openTowards(engine, target, fresh, now);
  engine.sink.event({ type: 'peer-found', peer: target, lighthouse: from, answer, candidates: paths });
  ensureRelays(engine, target, liveLighthouses(engine, target), now);
  if (target.keypairs.current?.canSend(now)) {
    for (const e of fresh) sendChallenge(engine, target, e, now);
  } else {
    // No session yet, and something now knows where the peer is: the initiation goes there at
    // once (the relays included: the peer has just registered), not at the next retry. Also when
    // it is the peer that asked for us (a punch request, answer=false): it may hold a session
    // with our previous life (we were restarted, kill -9 or a reboot) and would keep sending
    // into it, unanswered, until its own rekey timers ran out (15 s and more); our initiation
    // replaces that session at once. If it is initiating too, the crossed initiations resolve
    // in handshake.ts.
    initiateNow(engine, target, now);
  }
}

/**
 * Something that can carry a handshake to `peer` just appeared (a lighthouse session, candidates,
 * a usable relay): if an initiation is in flight, send the same one over every relay and to every
 * candidate now (REKEY_TIMEOUT would hold a new one back); otherwise start a handshake.
 */
export function initiateNow(engine: Engine, peer: Peer, now: number): void {
  if (peer.keypairs.current) return;
  const msg = peer.lastInitiation;
  if (msg && peer.handshake.state === 'initiation-created' && now - peer.lastSentHandshake < REKEY_TIMEOUT) {
    const path = peer.endpoint.path;
    lookup(engine, peer, now);
    if (path) engine.sink.send(path, msg, 0, msg.length);
    for (const p of initiationExtras(engine, peer, path, now) ?? []) engine.sink.send(p, msg, 0, msg.length);
    return;
  }
  sendInitiation(engine, peer, false, now);
}

/**
 * Lighthouse: `member` has just registered (a session with it is complete). Members that asked
 * for it lately are answered again now, and it is told about them (introductions.ts).
 */
export function introduceWaiting(engine: Engine, member: Peer, now: number): void {
  if (!engine.isLighthouse || member.lighthouse) return;
  for (const id of engine.introductions.take(member.keyId, now)) {
    const asker = engine.peers.get(id);
    if (asker && asker !== member && asker.keypairs.current && asker.endpoint.path) answerLookup(engine, asker, asker.endpoint.path, member.publicKey, now);
  }
}
