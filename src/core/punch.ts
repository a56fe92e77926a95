/**
 * Hole punching that survives NATs without inbound filtering (keymesh's own; no counterpart in
 * the whitepaper). lighthouse-lookup.ts hands both members each other's candidates at the same
 * moment; this file decides when the first packets may go to a punched IPv4 candidate.
 *
 * Why it is needed. A NAT that only masquerades (no "drop new inbound" rule: DIY and cloud NAT
 * gateways, many CPE boxes, most carrier-grade NATs built on Linux) treats a probe that arrives
 * before its own member's first outbound packet to the sender as traffic for itself: conntrack
 * records an unreplied entry (sender → NAT:port) for local delivery. When the member's own
 * packet to that sender then leaves, the tuple is taken and the NAT maps it to *another* public
 * port, which the sender never hears of; its probes keep hitting (and refreshing) the stale entry,
 * the member's keep going out from the wrong port, and the pair stays on the relay for good. The
 * first packet to arrive at either NAT decides it, so no ordering of full-size probes can be
 * relied on.
 *
 * What keymesh does (the "low-TTL opener" of the NAT traversal literature, plus a handshake so
 * neither side probes before the other has opened):
 *
 *  1. Openers. When a lighthouse gives us a punched IPv4 candidate, we first send it OPENER_COPIES
 *     tiny datagrams with a small TTL (`Openers.ttl`, 2 to begin with): enough to pass our own
 *     NAT, so its mapping toward the candidate exists, and too little to reach the peer's NAT,
 *     so no stale entry is created there. An opener that does arrive anywhere is not a WireGuard
 *     message and is dropped.
 *  2. PUNCH_OPEN (extension.ts). Then we tell the peer, over the session (the relay, usually),
 *     that we have opened. Full-TTL packets to a punched IPv4 candidate (challenges, initiation
 *     copies, ADDRESSES) are held (`directAllowed`) until the peer's PUNCH_OPEN has arrived, so
 *     each side's first full probe reaches a NAT that its owner has already opened toward it.
 *     Without a session, or with a peer too old to send PUNCH_OPEN, they wait OPEN_FALLBACK.
 *  3. The TTL ladder. Each opener's fate is reported by ICMP "time exceeded" (the runtime reads
 *     the socket's error queue): from a router with a private or shared (CGNAT) address, the
 *     opener died inside our own NATs (a home router behind a carrier-grade NAT): the TTL goes
 *     up by one and the openers are sent again at once; from a public address, the TTL is right
 *     and stays. Our addresses changing (another network) starts the ladder again.
 *  4. Quiet after a stalled punch. If a punched candidate's challenges all go unanswered anyway
 *     (ICMP filtered and a guess that was wrong, a NAT we do not understand), nothing at all is
 *     sent to it for PUNCH_QUIET (endpoint.ts), longer than Linux conntrack keeps an unreplied UDP entry (30 s),
 *     so that whatever stale state the attempt left on either NAT is gone before the next one
 *     (the lighthouses are asked again every RELAY_RETRY_DIRECT while relayed).
 *
 * Paths that carry the peer's packets already (heard from lately) are never held: our NAT has
 * the entry for them. IPv6 candidates are not held either (no NAT66 in practice, and a filtering
 * firewall drops unsolicited probes without keeping state).
 *
 * May touch: the engine's sink (openers), Openers state and counters; a peer's punch fields and
 * the punched entries of its endpoint cache.
 */
import { isRelay, type PathEntry } from './endpoint.js';
import { keyId, type Engine } from './engine.js';
import { EXT_PUNCH_OPEN } from './extension.js';
import type { Peer } from './peer.js';

/** The openers' first TTL: past a NAT one hop away (a home router), not past the next router. */
export const OPENER_TTL = 2;
/** The ladder stops here: deeper than any NAT stack, still short of most peers' NATs. */
export const OPENER_TTL_MAX = 4;
/** Openers sent per candidate per attempt (one may be lost). */
export const OPENER_COPIES = 2;
/**
 * An opener: message type 0 (no WireGuard receiver accepts it), "o", and the TTL it was sent
 * with, which the ICMP "time exceeded" quotes back, so each report names the rung it is about.
 */
export function opener(ttl: number): Uint8Array {
  return Uint8Array.of(0, 0, 0x6f, ttl);
}
/** With no session (or a peer that never sends PUNCH_OPEN), full probes follow our openers after this. */
export const OPEN_FALLBACK = 1000;
/** The peer's PUNCH_OPEN still counts this long after it arrived (its openers' NAT entries live 30 s). */
export const PEER_OPEN_FRESH = 20_000;
/** A held challenge is looked at again this often (PUNCH_OPEN lost, or the fallback due)… */
export const HOLD_RECHECK = 1000;
/** …and given up (a failed punch, with its quiet) after this long without the peer opening. */
export const HOLD_MAX = 10_000;
/** A path the peer's packets came over this recently carries ours too: nothing to hold. */
export const HEARD_RECENTLY = 2000;
/** Openers whose ICMP reports we still match. */
const OPENER_MEMORY = 3000;

/** The engine's opener state: the TTL ladder and the openers sent lately (to match ICMP reports to). */
export class Openers {
  /** Off (EngineOptions.punchOpeners = false, for comparison): punched candidates are probed at once, as before. */
  enabled = true;
  ttl = OPENER_TTL;
  /** A "time exceeded" from beyond our NATs confirmed the TTL. */
  confirmed = false;
  readonly recent = new Map<string, { entry: PathEntry; at: number }>();
  readonly stats = { openersSent: 0, punchOpenSent: 0, punchOpenReceived: 0, held: 0, timeExceeded: 0, ttlRaised: 0, openersArrived: 0 };

  /** Another network: the NATs in front of us may be others. */
  reset(): void {
    this.ttl = OPENER_TTL;
    this.confirmed = false;
    this.recent.clear();
  }
}

function isV4(addr: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (addr[i] !== 0) return false;
  return addr[10] === 0xff && addr[11] === 0xff;
}

/** An IPv4(-mapped) address a NAT's inside or a CGNAT uses: RFC 1918, RFC 6598, link-local, loopback. */
export function insideNatAddress(addr: Uint8Array): boolean {
  if (!isV4(addr)) return false;
  const a = addr[12];
  const b = addr[13];
  return a === 10 || a === 127 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b < 128) || (a === 169 && b === 254);
}

/** Does this entry get openers and a held first probe? A punched direct IPv4 candidate. */
export function gated(engine: Engine, e: PathEntry): boolean {
  if (!engine.openers.enabled || !e.punched || isRelay(e.path) || !engine.addressOf) return false;
  const a = engine.addressOf(e.path);
  return a !== null && isV4(a.addr);
}

/** May a full-TTL packet go to e's path now? (Always, for paths that are not gated.) */
export function directAllowed(engine: Engine, peer: Peer, e: PathEntry, now: number): boolean {
  if (!gated(engine, e) || e.state === 'validated') return true;
  if (now - e.lastReceive < HEARD_RECENTLY) return true;
  if (now < e.quietUntil || e.openedAt === -Infinity) return false;
  if (peer.peerOpenedAt >= e.openedAt - PEER_OPEN_FRESH) return true;
  const kp = peer.keypairs.current;
  const oldPeer = peer.extVersion > 0 && peer.extVersion < 2;
  if (!kp || oldPeer) return now - e.openedAt >= OPEN_FALLBACK;
  return false;
}

/** Send openers to these candidates (those gated and not quiet), then PUNCH_OPEN if we can. */
export function openTowards(engine: Engine, peer: Peer, entries: readonly PathEntry[], now: number): void {
  let opened = false;
  for (const e of entries) {
    if (!gated(engine, e) || now < e.quietUntil || e.state === 'validated') continue;
    sendOpeners(engine, e, engine.openers.ttl, now);
    e.openedAt = now;
    opened = true;
  }
  if (opened) sendPunchOpen(engine, peer, now);
}

function sendOpeners(engine: Engine, e: PathEntry, ttl: number, now: number): void {
  const send = engine.sink.sendTtl;
  if (!send) return;
  const o = opener(ttl);
  for (let i = 0; i < OPENER_COPIES; i++) send(e.path, o, 0, o.length, ttl);
  engine.openers.stats.openersSent += OPENER_COPIES;
  const a = engine.addressOf?.(e.path);
  // only openers toward public addresses teach the ladder (a LAN address's route says nothing)
  if (a && !insideNatAddress(a.addr)) engine.openers.recent.set(`${keyId(a.addr)}:${a.port}`, { entry: e, at: now });
}

/** Tell the peer we have opened (over its active path, the relay usually); at most every 200 ms. */
function sendPunchOpen(engine: Engine, peer: Peer, now: number): void {
  if (now - peer.punchOpenSentAt < 200) return;
  const path = peer.endpoint.path;
  if (!path || !engine.sendExtension(peer, path, { type: EXT_PUNCH_OPEN }, now)) return;
  peer.punchOpenSentAt = now;
  engine.openers.stats.punchOpenSent++;
}

/**
 * A challenge for e was held (directAllowed said no): re-check it after HOLD_RECHECK, give up after
 * HOLD_MAX, and make sure the peer has heard our PUNCH_OPEN for the openers we sent.
 */
export function hold(engine: Engine, peer: Peer, e: PathEntry, now: number): void {
  engine.openers.stats.held++;
  if (now < e.quietUntil) {
    peer.endpoint.challengeBlocked(e);
    return;
  }
  if (e.openedAt === -Infinity) openTowards(engine, peer, [e], now);
  if (now - e.openedAt >= HOLD_MAX) {
    peer.endpoint.punchGaveUp(e);
    return;
  }
  if (peer.punchOpenSentAt < e.openedAt) sendPunchOpen(engine, peer, now);
  peer.endpoint.challengeHeld(e, now + HOLD_RECHECK);
}

/** The peer says it has opened its NAT toward us: probe what we held for it (opening ours first where needed). */
export function onPunchOpen(engine: Engine, peer: Peer, now: number, challenge: (e: PathEntry) => void): void {
  peer.peerOpenedAt = now;
  engine.openers.stats.punchOpenReceived++;
  const waiting: PathEntry[] = [];
  const stale: PathEntry[] = [];
  for (const e of peer.endpoint.list()) {
    if (!gated(engine, e) || e.state === 'validated' || e === peer.endpoint.active || now < e.quietUntil) continue;
    if (e.state === 'failed' && e.openedAt === -Infinity) continue;
    waiting.push(e);
    if (now - e.openedAt > PEER_OPEN_FRESH) stale.push(e);
  }
  // our own openers first (those we never sent, or sent too long ago), then our PUNCH_OPEN
  if (stale.length > 0) openTowards(engine, peer, stale, now);
  else if (waiting.length > 0 && peer.punchOpenSentAt < now - PEER_OPEN_FRESH) sendPunchOpen(engine, peer, now);
  for (const e of waiting) challenge(e);
}

/**
 * An ICMP "port unreachable" about a datagram we sent to addr:port, reported by `offender`. When it
 * is one of our openers and it comes from addr itself, the opener did not die on the way: it
 * reached the peer's NAT, which had nothing listening (the NATs sit side by side on one network,
 * a building's or a cloud subnet's, with no router between to spend the TTL on). Both NATs then
 * hold the stale entry of 'Why it is needed' above whatever the order, so the punch cannot work;
 * the entry remembers it so the relay's reason can say so (endpoint.ts whyRelayed).
 */
export function onPortUnreachable(engine: Engine, addr: Uint8Array, port: number, offender: Uint8Array | null, payload: Uint8Array, now: number): void {
  if (payload.length < 4 || payload[0] !== 0 || payload[1] !== 0 || payload[2] !== 0x6f || !offender) return;
  const rec = engine.openers.recent.get(`${keyId(addr)}:${port}`);
  if (!rec || now - rec.at > OPENER_MEMORY || keyId(offender) !== keyId(addr)) return;
  if (!rec.entry.openerArrived) engine.openers.stats.openersArrived++;
  rec.entry.openerArrived = true;
}

/**
 * An ICMP "time exceeded" about a datagram we sent to addr:port, from the router `offender`
 * (the runtime reads them off the socket's error queue). If it was one of our openers, climb the
 * TTL ladder (see 3. above).
 */
export function onTimeExceeded(engine: Engine, addr: Uint8Array, port: number, offender: Uint8Array | null, payload: Uint8Array, now: number): void {
  const o = engine.openers;
  o.stats.timeExceeded++;
  // only reports about our openers, which say which rung they were sent on (a router that
  // quotes no payload teaches nothing)
  if (payload.length < 4 || payload[0] !== 0 || payload[1] !== 0 || payload[2] !== 0x6f) return;
  const ttl = payload[3];
  const rec = o.recent.get(`${keyId(addr)}:${port}`);
  if (!rec || now - rec.at > OPENER_MEMORY || !offender) return;
  if (!insideNatAddress(offender)) {
    if (ttl === o.ttl) o.confirmed = true;
    return;
  }
  // it died inside our own NATs: one hop more, and again at once (a report about an earlier rung, or a second copy, changes nothing)
  if (ttl !== o.ttl || o.confirmed || o.ttl >= OPENER_TTL_MAX) return;
  o.ttl++;
  o.stats.ttlRaised++;
  sendOpeners(engine, rec.entry, o.ttl, now);
  rec.entry.openedAt = now;
}
