/**
 * Relaying through a lighthouse (keymesh's own, not in the whitepaper; lighthouse.ts describes
 * the protocol): a member sends a datagram for a relay path inside RELAY to the lighthouse; the
 * lighthouse checks that both ends are its members and the sender is within its rate, and passes
 * it on inside RELAYED; the receiving member handles it as if it had come over the relay path,
 * after the batch that carried it.
 *
 * May touch: the engine's relay buffer, relay budget, deferred datagrams, lighthouse counters and
 * drop counters, and the relaying peer's counts; it sends through send.ts.
 */
import {
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT_DATA,
  PADDING_MULTIPLE,
  TRANSPORT_HEADER_SIZE,
} from './constants.js';
import { touch } from './deadline-index.js';
import type { Path } from './endpoint.js';
import { keyId, type Engine } from './engine.js';
import { EXT_MARKER, EXT_RELAY, EXT_RELAYED, KEY_LEN, RELAY_HEADER } from './extension.js';
import type { Keypair } from './keypair.js';
import { MAX_DEFERRED, type RelayPath } from './lighthouse.js';
import { messageType } from './messages.js';
import type { Peer } from './peer.js';
import { receiveDatagram } from './receive.js';
import { sealAndSend } from './send.js';

/** Lighthouse: pass a member's datagram on to `key`, if both are ours and the member is within its rate. */
export function relayOn(engine: Engine, from: Peer, key: Uint8Array, data: Uint8Array, now: number): void {
  const target = engine.peers.get(keyId(key));
  const tp = target?.endpoint.path;
  const kp = target?.keypairs.current;
  if (!engine.isLighthouse || !target || target === from || target.membership === 'pending' || !tp || tp.via !== undefined || !kp || !kp.canSend(now)) {
    engine.lh.relayRefused++;
    return;
  }
  if (!engine.relayBudget.take(from.keyId, data.length, now)) {
    engine.lh.relayRateLimited++;
    return;
  }
  from.relayedPackets++;
  from.relayedBytes += data.length;
  engine.lh.relayedPackets++;
  engine.lh.relayedBytes += data.length;
  sealRelay(engine, target, kp, tp, EXT_RELAYED, from.publicKey, data, 0, data.length, now);
}

/** Member: a datagram relayed by the lighthouse `via` from `key`: handled as if it came over the relay path. */
export function onRelayed(engine: Engine, via: Peer, key: Uint8Array, data: Uint8Array): void {
  const source = engine.peers.get(keyId(key));
  if (!via.lighthouse || !source || source === via || source.lighthouse || engine.deferred.length >= MAX_DEFERRED) {
    engine.lh.ignored++;
    return;
  }
  engine.lh.relayReceived++;
  // not now: we are inside the receive loop of the batch that carried it (its scratch is in use)
  engine.deferred.push({ data: data.slice(), path: engine.relayPath(via, source) });
}

export function drainRelayed(engine: Engine, now: number): void {
  engine.inbound++;
  try {
    for (let i = 0; i < engine.deferred.length && i < MAX_DEFERRED * 4; i++) {
      const d = engine.deferred[i];
      const t = messageType(d.data, 0, d.data.length);
      // a relayed datagram never carries another relay's traffic: drop relay-in-relay
      if (t === MESSAGE_TRANSPORT_DATA || t === MESSAGE_INITIATION || t === MESSAGE_RESPONSE || t === MESSAGE_COOKIE_REPLY) receiveDatagram(engine, d.data, d.path, now);
      else engine.drop('malformed');
    }
  } finally {
    engine.deferred = [];
    engine.inbound--;
  }
}

/** A datagram for `path`'s target, sent through its lighthouse inside a RELAY message. */
export function relayOut(engine: Engine, path: RelayPath, buf: Uint8Array, off: number, len: number): void {
  const via = engine.peers.get(path.via);
  if (via) touch(engine, via);
  const target = engine.peers.get(path.targetKeyId);
  const kp = via?.keypairs.current;
  const vp = via?.endpoint.path;
  const now = engine.clock;
  if (!via || !target || !kp || !vp || vp.via !== undefined || !kp.canSend(now)) {
    engine.counters.drops.noEndpoint++;
    return;
  }
  engine.lh.relaySent++;
  sealRelay(engine, via, kp, vp, EXT_RELAY, target.publicKey, buf, off, len, now);
}

/** Seal RELAY/RELAYED(key, buf[off..off+len)) for `peer` in relayBuf and send it on `path`. */
function sealRelay(engine: Engine, peer: Peer, kp: Keypair, path: Path, type: number, key: Uint8Array, buf: Uint8Array, off: number, len: number, now: number): void {
  touch(engine, peer);
  const b = engine.relayBuf;
  const base = TRANSPORT_HEADER_SIZE;
  if (base + RELAY_HEADER + len + PADDING_MULTIPLE + 16 > b.length || len > 0xffff) {
    engine.counters.drops.tooBig++;
    return;
  }
  b[base] = EXT_MARKER;
  b[base + 1] = type;
  b.set(key, base + 2);
  b[base + 2 + KEY_LEN] = len >> 8;
  b[base + 3 + KEY_LEN] = len & 0xff;
  b.set(buf.subarray(off, off + len), base + RELAY_HEADER);
  const n = RELAY_HEADER + len;
  const padded = (n + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1);
  b.fill(0, base + n, base + padded);
  engine.relayOffs[0] = base;
  engine.relayLens[0] = padded;
  sealAndSend(engine, peer, kp, path, b, 1, now, engine.relayOffs, engine.relayLens);
}
