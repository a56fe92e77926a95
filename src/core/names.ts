/**
 * Names in the mesh (keymesh's own; sans-I/O): lookups by name through the lighthouses, the names
 * of a gateway's stock WireGuard devices, and `keymesh ping`.
 *
 * A member's name is the one its certificate carries (membership.ts); a statically configured peer
 * may be given one (`Name =` in its [Peer]); a gateway's device is NAME.GATEWAY. A node knows the
 * names of the peers it has met; for the others the resolver asks the lighthouses:
 *
 *   member                         lighthouse                          holder
 *   LOOKUP_NAME "bob" ───────────▶ bob admitted here (by certificate)
 *                     ◀─────────── CERT_INTRODUCED + CANDIDATES          ──▶ (the asker's, as for
 *                     ◀─────────── NAME_ANSWER bob → key, addresses            a lookup by address)
 *
 * so the name's first answer also sets up the path to it. A gateway sends its lighthouses NAMES
 * (its devices' names and addresses); a lighthouse keeps them only for addresses inside the
 * gateway's certified subnets, and answers "phone.gw" with the gateway as the holder.
 *
 * PING/PONG carry a token: PONG goes back on the path the PING came over, so the pinger learns
 * which path (direct, or relay via a lighthouse) carries the session now, and its RTT.
 *
 * May touch: the engine's name state, lighthouse counters and sink; a peer's names and pings.
 */
import type { Path } from './endpoint.js';
import { keyId, type Engine } from './engine.js';
import { EXT_LOOKUP_NAME, EXT_NAME_ANSWER, EXT_NAMES, EXT_PING, EXT_PONG, MAX_NAME_ADDRESSES, MAX_NAMES_PER_MESSAGE, TOKEN_LEN } from './extension.js';
import { answerLookup, initiateNow } from './lighthouse-lookup.js';
import { LOOKUP_MIN_INTERVAL } from './lighthouse.js';
import { inside, mapped, unmapped } from './directory.js';
import { isLabel } from './cert.js';
import type { Peer } from './peer.js';

/** Device names a lighthouse keeps per gateway, at most. */
export const MAX_DEVICES_PER_GATEWAY = 1024;
/** Pings in flight per peer, at most (older ones are forgotten). */
export const MAX_PINGS = 16;

const ZERO_KEY = new Uint8Array(32);

/** The name a peer goes by here: its certificate's, else the configured one. */
export function nameOf(p: Peer): string | null {
  return p.cert?.name ?? p.name;
}

function liveLighthouses(engine: Engine): Peer[] {
  const out: Peer[] = [];
  for (const l of engine.peers.values()) if (l.lighthouse && l.keypairs.current && l.endpoint.path && l.endpoint.path.via === undefined) out.push(l);
  return out;
}

// ───────────────────────────── lookups by name ─────────────────────────────

/**
 * Ask every lighthouse we hold a session with where `name` (relative to the mesh's domain:
 * "bob", or "phone.gw") is; the answer comes as a 'name-answer' event. False if nothing was asked
 * (no lighthouse session, a malformed name, or asked less than LOOKUP_MIN_INTERVAL ago).
 */
export function lookupName(engine: Engine, name: string, now: number): boolean {
  const labels = name.split('.');
  if (labels.length > 2 || !labels.every(isLabel)) return false;
  const last = engine.namesAsked.get(name);
  if (last !== undefined && now - last < LOOKUP_MIN_INTERVAL) return false;
  let asked = false;
  for (const l of liveLighthouses(engine)) {
    if (engine.sendExtension(l, l.endpoint.path!, { type: EXT_LOOKUP_NAME, name }, now)) {
      engine.lh.lookupsSent++;
      asked = true;
    }
  }
  if (asked) {
    if (engine.namesAsked.size > 1024) engine.namesAsked.clear();
    engine.namesAsked.set(name, now);
  }
  return asked;
}

/** Lighthouse: the peer holding `name` here, and the addresses it answers for (a member's own, or a device's). */
function holderOf(engine: Engine, name: string): { holder: Peer; addresses: Uint8Array[] } | null {
  const [first, gateway] = name.split('.');
  if (gateway === undefined) {
    const p = engine.peersByName.get(first);
    if (!p || p.membership === 'pending') return null;
    const addresses = p.cert ? p.cert.addresses.map((a) => a.addr) : engine.allowedIpsOf(p).filter((a) => a.cidr === a.addr.length * 8).map((a) => a.addr);
    return { holder: p, addresses };
  }
  const gw = engine.peersByName.get(gateway);
  const addresses = gw?.deviceNames?.get(first);
  return gw && addresses ? { holder: gw, addresses } : null;
}

/** Lighthouse: a member asks where `name` is. */
export function answerLookupName(engine: Engine, asker: Peer, path: Path, name: string, now: number): void {
  if (!engine.isLighthouse || !engine.lookupBudget.take(asker.keyId, 1, now)) {
    engine.lh.lookupsRefused++;
    return;
  }
  const h = holderOf(engine, name);
  if (!h || h.holder === asker) {
    engine.lh.lookupsRefused++;
    engine.sendExtension(asker, path, { type: EXT_NAME_ANSWER, name, found: false, key: ZERO_KEY, addresses: [] }, now);
    return;
  }
  // certificates and candidates both ways first (lighthouse-lookup.ts), so the path is set up too
  if (h.holder.keypairs.current) answerLookup(engine, asker, path, h.holder.publicKey, now);
  engine.sendExtension(asker, path, { type: EXT_NAME_ANSWER, name, found: true, key: h.holder.publicKey, addresses: h.addresses.slice(0, MAX_NAME_ADDRESSES).map(mapped) }, now);
}

/** Member: a lighthouse answered a name lookup. */
export function onNameAnswer(engine: Engine, from: Peer, name: string, found: boolean, key: Uint8Array, addresses: Uint8Array[]): void {
  if (!from.lighthouse) {
    engine.lh.ignored++;
    return;
  }
  engine.sink.event({ type: 'name-answer', name, found, key: found ? key.slice() : null, addresses: found ? addresses.map(unmapped) : [] });
}

// ───────────────────────────── a gateway's devices ─────────────────────────────

/** Gateway: these are our devices (names are labels; addresses 4 or 16 bytes). Every lighthouse is told now and after each new session. */
export function setDeviceNames(engine: Engine, names: Array<{ name: string; addresses: Uint8Array[] }>, now: number): void {
  engine.deviceNames = names.filter((n) => isLabel(n.name)).map((n) => ({ name: n.name, addresses: n.addresses.map((a) => a.slice()) }));
  for (const l of liveLighthouses(engine)) sendDeviceNames(engine, l, now);
}

/** Gateway: send our device names to one lighthouse (a full list, in pieces). */
export function sendDeviceNames(engine: Engine, l: Peer, now: number): void {
  if (!l.lighthouse || !l.endpoint.path || (engine.deviceNames.length === 0 && !engine.deviceNamesSent)) return;
  const all = engine.deviceNames;
  for (let i = 0; i === 0 || i < all.length; i += MAX_NAMES_PER_MESSAGE) {
    const names = all.slice(i, i + MAX_NAMES_PER_MESSAGE).map((n) => ({ name: n.name, addresses: n.addresses.slice(0, MAX_NAME_ADDRESSES).map(mapped) }));
    engine.sendExtension(l, l.endpoint.path, { type: EXT_NAMES, first: i === 0, names }, now);
  }
  engine.deviceNamesSent = true;
}

/** Lighthouse: a gateway's device names. Kept only for addresses inside its certified subnets. */
export function onDeviceNames(engine: Engine, gw: Peer, first: boolean, names: Array<{ name: string; addresses: Uint8Array[] }>): void {
  const subnets = gw.cert?.subnets ?? [];
  if (!engine.isLighthouse || gw.membership !== 'certified' || subnets.length === 0) {
    engine.lh.namesRefused += names.length;
    return;
  }
  if (first || !gw.deviceNames) gw.deviceNames = new Map();
  for (const n of names) {
    const addresses = n.addresses.map(unmapped);
    if (!isLabel(n.name) || addresses.length === 0 || !addresses.every((a) => subnets.some((s) => inside(a, s))) || gw.deviceNames.size >= MAX_DEVICES_PER_GATEWAY) {
      engine.lh.namesRefused++;
      continue;
    }
    gw.deviceNames.set(n.name, addresses);
  }
}

// ───────────────────────────── ping ─────────────────────────────

/**
 * `keymesh ping`: a PING on the peer's active path; the PONG comes back as a 'pong' event with
 * the path it arrived on and the round trip. Without a session, a handshake is started instead
 * and null returned (ping again once it completes).
 */
export function ping(engine: Engine, peer: Peer, now: number): Uint8Array | null {
  const path = peer.endpoint.path;
  if (!peer.keypairs.current || !path) {
    initiateNow(engine, peer, now);
    return null;
  }
  const token = engine.random(TOKEN_LEN);
  if (!engine.sendExtension(peer, path, { type: EXT_PING, token }, now)) return null;
  if (peer.pings.size >= MAX_PINGS) peer.pings.delete(peer.pings.keys().next().value!);
  peer.pings.set(keyId(token), now);
  return token;
}

export function onPing(engine: Engine, peer: Peer, path: Path, token: Uint8Array, now: number): void {
  engine.sendExtension(peer, path, { type: EXT_PONG, token }, now);
}

export function onPong(engine: Engine, peer: Peer, path: Path, token: Uint8Array, now: number): void {
  const id = keyId(token);
  const sentAt = peer.pings.get(id);
  if (sentAt === undefined) return;
  peer.pings.delete(id);
  engine.sink.event({ type: 'pong', peer, path, token, rttMs: now - sentAt });
}
