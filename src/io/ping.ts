/**
 * `keymesh ping TARGET` on the node's side (the control socket's `ping` op): find the peer a
 * target names — a public key, an overlay address or a name — asking the lighthouses when it is
 * not known here (directory.ts, names.ts), start a session if there is none, send one PING and
 * wait for its PONG, which says the path it came back on (direct, from which local address; or
 * relayed, via which lighthouse) and the round trip.
 *
 * May touch: the engine (lookups, handshakes, PING) and the runtime's event listeners.
 */
import type { Engine, EngineEvent } from '../core/engine.js';
import { formatAddress } from '../core/ip.js';
import { nameOf } from '../core/names.js';
import type { Peer } from '../core/peer.js';
import { decodeKey, encodeKey } from '../config/keys.js';
import { parseIp } from '../config/wgquick.js';
import { udpOf } from './local-ends.js';

export interface PingHost {
  readonly engine: Engine;
  readonly eventListeners: Set<(e: EngineEvent) => void>;
  now(): number;
  flushAndArm(): void;
}

export interface PingReply {
  /** The peer's name, if it has one, and its first overlay address. */
  name: string | null;
  address: string | null;
  publicKey: string;
  kind: 'direct' | 'relay';
  /** direct: the peer's address:port and our local address; relay: the lighthouse's name or short key. */
  remote: string | null;
  local: string | null;
  via: string | null;
  rttMs: number;
}

/** Wait for an engine event that `pick` accepts (returning a value), or null after `ms`. */
function waitEvent<T>(rt: PingHost, ms: number, pick: (e: EngineEvent) => T | null): Promise<T | null> {
  return new Promise((resolve) => {
    const done = (v: T | null) => {
      clearTimeout(timer);
      rt.eventListeners.delete(listener);
      resolve(v);
    };
    const listener = (e: EngineEvent) => {
      const v = pick(e);
      if (v !== null) done(v);
    };
    const timer = setTimeout(() => done(null), ms);
    rt.eventListeners.add(listener);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The peer `target` names, asking the lighthouses if need be; throws a message for the user when there is none. */
export async function findPeer(rt: PingHost, target: string, timeoutMs: number): Promise<Peer> {
  const e = rt.engine;
  const key = target.length === 44 ? decodeKey(target) : null;
  if (key) {
    const p = e.getPeer(key);
    if (!p) throw new Error(`no peer with public key ${target.slice(0, 8)}…`);
    return p;
  }
  const ip = parseIp(target);
  let addr = ip?.bytes ?? null;
  if (!addr) {
    // a name: NAME or NAME.DOMAIN (or NAME.GATEWAY[.DOMAIN] for a gateway's device)
    const domain = (e.meshAuthority as { domain?: string } | null)?.domain ?? 'mesh';
    const name = target.toLowerCase().replace(/\.$/, '').replace(new RegExp(`\\.${domain.replace(/\./g, '\\.')}$`), '');
    if (e.meshAuthority?.own.name === name) throw new Error(`${target} is this node`);
    const known = e.peerByName(name);
    if (known) return known;
    if (!e.meshAuthority) throw new Error(`no peer called ${target}`);
    const answer = waitEvent(rt, timeoutMs, (ev) => (ev.type === 'name-answer' && ev.name === name ? ev : null));
    if (!e.lookupName(name, rt.now())) {
      if (!/^[a-z0-9-]+(\.[a-z0-9-]+)?$/.test(name)) throw new Error(`"${target}" is neither a public key, an address nor a name`);
    }
    rt.flushAndArm();
    const a = await answer;
    if (!a) throw new Error(`no answer about ${target} from the lighthouses within ${timeoutMs} ms`);
    if (!a.found) throw new Error(`${target}: no such name in the mesh`);
    const holder = a.key ? e.getPeer(a.key) : undefined;
    if (holder && !a.addresses.length) return holder;
    addr = a.addresses[0] ?? null;
    if (!addr) throw new Error(`${target} has no address`);
  }
  const routed = e.lookupRoute(addr);
  if (routed) return routed;
  if (!e.meshAuthority || !e.findAddress(addr, rt.now())) throw new Error(`no peer for ${target}`);
  rt.flushAndArm();
  for (const end = rt.now() + timeoutMs; rt.now() < end; ) {
    await sleep(20);
    const p = e.lookupRoute(addr);
    if (p) return p;
  }
  throw new Error(`the lighthouses did not say who holds ${target} within ${timeoutMs} ms`);
}

/** One ping to the peer `target` names: its PONG, or an error message for the user. */
export async function pingOnce(rt: PingHost, target: string, timeoutMs = 2000): Promise<PingReply> {
  const peer = await findPeer(rt, target, timeoutMs);
  const e = rt.engine;
  let token = e.ping(peer, rt.now());
  rt.flushAndArm();
  if (!token) {
    // no session yet: the handshake just started; ping once it completes
    const up = await waitEvent(rt, timeoutMs, (ev) => (ev.type === 'handshake-complete' && ev.peer === peer ? true : null));
    if (!up && !peer.keypairs.current) throw new Error(`no handshake with ${nameOf(peer) ?? target} within ${timeoutMs} ms`);
    token = e.ping(peer, rt.now());
    rt.flushAndArm();
    if (!token) throw new Error(`could not send a ping to ${nameOf(peer) ?? target}`);
  }
  const sent = token;
  const pong = await waitEvent(rt, timeoutMs, (ev) => (ev.type === 'pong' && ev.peer === peer && ev.token.every((b, i) => b === sent[i]) ? ev : null));
  if (!pong) throw new Error(`no pong from ${nameOf(peer) ?? target} within ${timeoutMs} ms`);
  const udp = udpOf(pong.path);
  const viaPeer = pong.path.via !== undefined ? e.listPeers().find((p) => p.keyId === pong.path.via) : undefined;
  const first = e.allowedIpsOf(peer)[0];
  return {
    name: nameOf(peer),
    address: first ? formatAddress(first.addr) : null,
    publicKey: encodeKey(peer.publicKey),
    kind: pong.path.via === undefined ? 'direct' : 'relay',
    remote: udp ? udp.remoteId : pong.path.via === undefined ? pong.path.id : null,
    local: udp?.local || null,
    via: viaPeer ? (nameOf(viaPeer) ?? `${encodeKey(viaPeer.publicKey).slice(0, 8)}…`) : null,
    rttMs: Math.round(pong.rttMs * 10) / 10,
  };
}

/** A reply line, as `keymesh ping` prints it. */
export function formatPong(r: PingReply): string {
  const who = `${r.name ?? `${r.publicKey.slice(0, 8)}…`}${r.address ? ` (${r.address})` : ''}`;
  const path = r.kind === 'direct' ? `direct ${r.remote ?? '?'}${r.local ? ` from ${r.local}` : ''}` : `relay via ${r.via ?? '?'}`;
  return `pong from ${who}: ${path} in ${r.rttMs} ms`;
}
