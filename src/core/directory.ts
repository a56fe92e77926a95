/**
 * The mesh directory (keymesh's own; sans-I/O): lighthouses map an overlay address to the member
 * holding it, from the certificates members showed them (membership.ts). No member lists another.
 *
 *   member A                          lighthouse                         member B
 *   packet for 10.99.0.7, no peer
 *     (kept, up to WAITING_PACKETS)
 *   LOOKUP_ADDR 10.99.0.7 ───────────▶ routes → B (admitted by its certificate)
 *                         ◀─────────── CERT_INTRODUCED (B's) + CANDIDATES (B's addresses)
 *                                      CERT_INTRODUCED (A's) + CANDIDATES (A's) ──────────▶
 *   a certified peer B, the kept                                        a certified peer A
 *   packets staged on it, initiation                                    (its initiation is
 *   to every candidate and relay ────────────────────────────────────▶ admitted at once)
 *
 * Nothing waits on a timer: the lookup goes when the first packet for the address is read (or,
 * with no lighthouse session yet, the moment one completes), and a lighthouse that does not know
 * the address yet keeps the question (introductions.ts) and answers it when a member holding the
 * address is admitted.
 *
 * May touch: the engine's waiting packets, lighthouse counters and introductions; a new peer's
 * staged packets.
 */
import { touch } from './deadline-index.js';
import type { Path } from './endpoint.js';
import { keyId, type Engine } from './engine.js';
import { EXT_LOOKUP_ADDR } from './extension.js';
import { answerLookup } from './lighthouse-lookup.js';
import { LOOKUP_MIN_INTERVAL } from './lighthouse.js';
import type { Peer } from './peer.js';

/** Overlay addresses with packets waiting for a lookup, at most; and packets kept per address. */
export const MAX_WAITING_ADDRESSES = 64;
export const WAITING_PACKETS = 8;
/** How long packets wait for a lookup's answer. */
export const WAITING_TTL = 5000;

/** An address as the extension channel carries it: 16 bytes, IPv4-mapped. */
export function mapped(addr: Uint8Array): Uint8Array {
  if (addr.length === 16) return addr;
  const m = new Uint8Array(16);
  m[10] = m[11] = 0xff;
  m.set(addr, 12);
  return m;
}

/** The inverse of mapped(): 4 bytes for an IPv4-mapped address, else the 16 as they are. */
export function unmapped(a: Uint8Array): Uint8Array {
  let v4 = a.length === 16 && a[10] === 0xff && a[11] === 0xff;
  for (let i = 0; i < 10 && v4; i++) if (a[i] !== 0) v4 = false;
  return v4 ? a.subarray(12, 16) : a;
}

/** Is `addr` (4 or 16 bytes) inside `net`? */
export function inside(addr: Uint8Array, net: { addr: Uint8Array; bits: number }): boolean {
  if (addr.length !== net.addr.length) return false;
  for (let bit = 0; bit < net.bits; bit++) {
    const m = 0x80 >> (bit & 7);
    if ((addr[bit >> 3] & m) !== (net.addr[bit >> 3] & m)) return false;
  }
  return true;
}

export interface Waiting {
  addr: Uint8Array;
  packets: Uint8Array[];
  since: number;
  askedAt: number;
}

/**
 * send.ts: a TUN packet to `dst` (4 or 16 bytes) that no peer is allowed. With a CA and the
 * address inside its networks (and not ours), keep a copy and ask the lighthouses who holds it.
 * Returns whether the packet was taken.
 */
export function lookupAddress(engine: Engine, dst: Uint8Array, packet: Uint8Array | null, now: number): boolean {
  const m = engine.membership;
  if (!m || !m.authority.networks.some((n) => inside(dst, n))) return false;
  for (const a of m.authority.own.addresses) if (keyId(a.addr) === keyId(dst)) return false;
  const id = keyId(dst);
  let w = engine.waiting.get(id);
  if (w && now - w.since > WAITING_TTL) {
    engine.waiting.delete(id);
    w = undefined;
  }
  if (!w) {
    if (engine.waiting.size >= MAX_WAITING_ADDRESSES) {
      for (const [k, v] of engine.waiting) if (now - v.since > WAITING_TTL) engine.waiting.delete(k);
      if (engine.waiting.size >= MAX_WAITING_ADDRESSES) return false;
    }
    w = { addr: dst.slice(), packets: [], since: now, askedAt: -Infinity };
    engine.waiting.set(id, w);
  }
  if (packet) {
    if (w.packets.length >= WAITING_PACKETS) w.packets.shift();
    w.packets.push(packet.slice());
  }
  askFor(engine, w, now);
  return true;
}

/** Send LOOKUP_ADDR for `w` to every lighthouse we hold a session with (at most every LOOKUP_MIN_INTERVAL). */
function askFor(engine: Engine, w: Waiting, now: number): void {
  if (now - w.askedAt < LOOKUP_MIN_INTERVAL) return;
  let asked = false;
  for (const l of engine.peers.values()) {
    if (!l.lighthouse || !l.keypairs.current || !l.endpoint.path || l.endpoint.path.via !== undefined) continue;
    if (engine.sendExtension(l, l.endpoint.path, { type: EXT_LOOKUP_ADDR, addr: mapped(w.addr) }, now)) {
      engine.lh.lookupsSent++;
      asked = true;
    }
  }
  if (asked) w.askedAt = now;
}

/** A lighthouse session just completed (after our certificate went): ask about every address still waiting. */
export function lighthouseReady(engine: Engine, now: number): void {
  for (const [k, w] of engine.waiting) {
    if (now - w.since > WAITING_TTL) engine.waiting.delete(k);
    else {
      w.askedAt = -Infinity;
      askFor(engine, w, now);
    }
  }
}

/** A peer was just admitted by certificate: packets waiting for any of its addresses are staged on it. */
export function claimWaiting(engine: Engine, peer: Peer): number {
  let n = 0;
  for (const [k, w] of engine.waiting) {
    if (engine.lookupRoute(w.addr) !== peer) continue;
    engine.waiting.delete(k);
    for (const p of w.packets) {
      peer.staged.push(p);
      n++;
    }
  }
  if (n > 0) touch(engine, peer);
  return n;
}

/** Lighthouse: a member asks who holds an overlay address. */
export function answerLookupAddr(engine: Engine, asker: Peer, path: Path, addr16: Uint8Array, now: number): void {
  const addr = unmapped(addr16);
  const target = engine.isLighthouse ? engine.lookupRoute(addr) : undefined;
  if (!target || target.membership === 'pending' || !target.cert) {
    engine.lh.lookupsRefused++;
    // not admitted here (yet): answered when a member holding it is (introduceWaitingAddr)
    if (engine.isLighthouse && engine.membership && engine.lookupBudget.take(asker.keyId, 1, now)) engine.introductions.remember(addressKey(addr), asker.keyId, now);
    return;
  }
  if (target === asker) return;
  answerLookup(engine, asker, path, target.publicKey, now);
}

const addressKey = (addr: Uint8Array) => `@${keyId(addr)}`;

/** Lighthouse: `member` was admitted: askers waiting for one of its addresses are answered now. */
export function introduceWaitingAddr(engine: Engine, member: Peer, now: number): void {
  if (!engine.isLighthouse || !member.cert) return;
  for (const a of member.cert.addresses) {
    for (const id of engine.introductions.take(addressKey(a.addr), now)) {
      const asker = engine.peers.get(id);
      if (asker && asker !== member && asker.keypairs.current && asker.endpoint.path) answerLookup(engine, asker, asker.endpoint.path, member.publicKey, now);
    }
  }
}
