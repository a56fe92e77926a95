/**
 * The Noise_IKpsk2 handshake as WireGuard instantiates it (whitepaper §5.4.2–§5.4.5):
 *
 *   <- s
 *   ...
 *   -> e, es, s, ss, {t}        handshake initiation (initiator → responder)
 *   <- e, ee, se, psk, {}       handshake response   (responder → initiator)
 *
 * Each step below is labelled with its Noise token. This module only computes messages and
 * state; choosing indexes, checking MACs, replay/flood rules and installing keypairs is the
 * engine's job. Hostile input yields null, never an exception.
 */
import { CONSTRUCTION, IDENTIFIER } from './constants.js';
import { kdf, wipe, type Crypto } from './crypto.js';
import { serializeInitiation, serializeResponse, type Initiation, type Response } from './messages.js';

const enc = new TextEncoder();
const EMPTY = new Uint8Array(0);
/** Shared all-zero constants: never written (the handshake replaces, not mutates, its buffers). */
export const ZERO_KEY = new Uint8Array(32);
const ZERO_TIMESTAMP = new Uint8Array(12);

export type HandshakeStateName =
  | 'zeroed'
  | 'initiation-created'
  | 'initiation-consumed'
  | 'response-created'
  | 'response-consumed';

/** Our static identity with the handshake constants precomputed. */
export class LocalIdentity {
  readonly publicKey: Uint8Array;
  /** Ci = HASH(CONSTRUCTION) */
  readonly initialChainingKey: Uint8Array;
  /** HASH(Ci ‖ IDENTIFIER) */
  readonly initialHash: Uint8Array;
  /** HASH(HASH(Ci ‖ IDENTIFIER) ‖ Spub_local): the responder's starting hash. */
  readonly responderHash: Uint8Array;

  constructor(
    readonly c: Crypto,
    readonly privateKey: Uint8Array,
  ) {
    this.publicKey = c.publicKey(privateKey);
    this.initialChainingKey = c.hash(enc.encode(CONSTRUCTION));
    this.initialHash = c.hash(this.initialChainingKey, enc.encode(IDENTIFIER));
    this.responderHash = c.hash(this.initialHash, this.publicKey);
  }
}

/** Per-peer handshake state (one in flight at a time, as in WireGuard). */
export class Handshake {
  state: HandshakeStateName = 'zeroed';
  // Idle handshakes share the zero constants (replaced, never written in place, by every step),
  // so an idle peer costs no buffers here beyond its precomputed DH.
  hash: Uint8Array = ZERO_KEY;
  chainingKey: Uint8Array = ZERO_KEY;
  localEphemeral: Uint8Array | null = null;
  remoteEphemeral: Uint8Array | null = null;
  localIndex = 0;
  remoteIndex = 0;
  /** DH(Spriv_local, Spub_remote), computed once per peer; null if the peer's key is a low-order point. */
  precomputedStaticStatic: Uint8Array | null;
  /** Greatest TAI64N timestamp accepted from this peer's initiations (replay defence). */
  latestTimestamp: Uint8Array = ZERO_TIMESTAMP;
  /** Engine time of the last initiation from this peer that we consumed (flood defence). */
  lastInitiationConsumed = -Infinity;

  constructor(
    local: LocalIdentity,
    readonly remoteStatic: Uint8Array,
    public presharedKey: Uint8Array = ZERO_KEY,
  ) {
    this.precomputedStaticStatic = local.c.dh(local.privateKey, remoteStatic);
  }

  /** Recompute the static-static DH after our private key changes. */
  rekeyLocal(local: LocalIdentity): void {
    this.precomputedStaticStatic = local.c.dh(local.privateKey, this.remoteStatic);
    this.clear();
  }

  clear(): void {
    if (this.hash !== ZERO_KEY) wipe(this.hash);
    if (this.chainingKey !== ZERO_KEY) wipe(this.chainingKey);
    wipe(this.localEphemeral);
    this.localEphemeral = null;
    this.remoteEphemeral = null;
    this.hash = ZERO_KEY;
    this.chainingKey = ZERO_KEY;
    this.state = 'zeroed';
  }
}

/**
 * Initiator, message 1. Returns the 148-byte message without MACs (the cookie module adds them)
 * or null if the peer's static key is unusable.
 */
export function createInitiation(
  local: LocalIdentity,
  hs: Handshake,
  localIndex: number,
  timestamp: Uint8Array,
  random: (n: number) => Uint8Array,
): Uint8Array | null {
  const c = local.c;
  if (!hs.precomputedStaticStatic) return null;
  let ck = local.initialChainingKey;
  let h = c.hash(local.initialHash, hs.remoteStatic);
  // e
  const ePriv = c.generatePrivateKey(random);
  const ePub = c.publicKey(ePriv);
  [ck] = kdf(c, 1, ck, ePub);
  h = c.hash(h, ePub);
  // es
  const es = c.dh(ePriv, hs.remoteStatic);
  if (!es) return null;
  let k: Uint8Array;
  [ck, k] = kdf(c, 2, ck, es);
  // s
  const encryptedStatic = c.aeadSeal(k, 0n, local.publicKey, h);
  h = c.hash(h, encryptedStatic);
  // ss
  [ck, k] = kdf(c, 2, ck, hs.precomputedStaticStatic);
  // {t}
  const encryptedTimestamp = c.aeadSeal(k, 0n, timestamp, h);
  h = c.hash(h, encryptedTimestamp);
  wipe(es, k);

  hs.clear();
  hs.localEphemeral = ePriv;
  hs.chainingKey = ck;
  hs.hash = h;
  hs.localIndex = localIndex;
  hs.state = 'initiation-created';
  return serializeInitiation({ senderIndex: localIndex, ephemeral: ePub, encryptedStatic, encryptedTimestamp });
}

/** What a responder learns from a valid initiation, before committing it to the peer's state. */
export interface ConsumedInitiation {
  remoteStatic: Uint8Array;
  remoteEphemeral: Uint8Array;
  senderIndex: number;
  timestamp: Uint8Array;
  hash: Uint8Array;
  chainingKey: Uint8Array;
}

/**
 * Responder, message 1. `findPeer` maps the decrypted static key to that peer's handshake
 * (null: unknown peer). Returns null on any failure.
 */
export function consumeInitiation(
  local: LocalIdentity,
  msg: Initiation,
  findPeer: (remoteStatic: Uint8Array) => Handshake | null,
): { hs: Handshake; result: ConsumedInitiation } | null {
  const c = local.c;
  let ck = local.initialChainingKey;
  let h = local.responderHash;
  // e
  const ePub = msg.ephemeral.slice();
  [ck] = kdf(c, 1, ck, ePub);
  h = c.hash(h, ePub);
  // es
  const es = c.dh(local.privateKey, ePub);
  if (!es) return null;
  let k: Uint8Array;
  [ck, k] = kdf(c, 2, ck, es);
  // s
  const remoteStatic = c.aeadOpen(k, 0n, msg.encryptedStatic, h);
  if (!remoteStatic) return null;
  h = c.hash(h, msg.encryptedStatic);
  const hs = findPeer(remoteStatic);
  if (!hs || !hs.precomputedStaticStatic) return null;
  // ss
  [ck, k] = kdf(c, 2, ck, hs.precomputedStaticStatic);
  // {t}
  const timestamp = c.aeadOpen(k, 0n, msg.encryptedTimestamp, h);
  if (!timestamp) return null;
  h = c.hash(h, msg.encryptedTimestamp);
  wipe(es, k);
  return {
    hs,
    result: { remoteStatic, remoteEphemeral: ePub, senderIndex: msg.senderIndex, timestamp, hash: h, chainingKey: ck },
  };
}

/** Commit a consumed initiation to the peer's handshake state (after replay and flood checks passed). */
export function acceptInitiation(hs: Handshake, r: ConsumedInitiation, now: number): void {
  hs.clear();
  hs.hash = r.hash;
  hs.chainingKey = r.chainingKey;
  hs.remoteEphemeral = r.remoteEphemeral;
  hs.remoteIndex = r.senderIndex;
  hs.latestTimestamp = r.timestamp;
  hs.lastInitiationConsumed = now;
  hs.state = 'initiation-consumed';
}

/** Responder, message 2. Returns the 92-byte response without MACs, or null. */
export function createResponse(
  local: LocalIdentity,
  hs: Handshake,
  localIndex: number,
  random: (n: number) => Uint8Array,
): Uint8Array | null {
  const c = local.c;
  if (hs.state !== 'initiation-consumed' || !hs.remoteEphemeral) return null;
  let ck = hs.chainingKey;
  let h = hs.hash;
  // e
  const ePriv = c.generatePrivateKey(random);
  const ePub = c.publicKey(ePriv);
  [ck] = kdf(c, 1, ck, ePub);
  h = c.hash(h, ePub);
  // ee
  const ee = c.dh(ePriv, hs.remoteEphemeral);
  if (!ee) return null;
  [ck] = kdf(c, 1, ck, ee);
  // se
  const se = c.dh(ePriv, hs.remoteStatic);
  if (!se) return null;
  [ck] = kdf(c, 1, ck, se);
  // psk
  const [ck2, tau, k] = kdf(c, 3, ck, hs.presharedKey);
  ck = ck2;
  h = c.hash(h, tau);
  // {}
  const encryptedNothing = c.aeadSeal(k, 0n, EMPTY, h);
  h = c.hash(h, encryptedNothing);
  wipe(ee, se, tau, k, ePriv);

  hs.chainingKey = ck;
  hs.hash = h;
  hs.localIndex = localIndex;
  hs.state = 'response-created';
  return serializeResponse({ senderIndex: localIndex, receiverIndex: hs.remoteIndex, ephemeral: ePub, encryptedNothing });
}

/** Initiator, message 2. Returns false (state untouched) when the response does not authenticate. */
export function consumeResponse(local: LocalIdentity, hs: Handshake, msg: Response): boolean {
  const c = local.c;
  if (hs.state !== 'initiation-created' || !hs.localEphemeral) return false;
  let ck = hs.chainingKey;
  let h = hs.hash;
  // e
  const ePub = msg.ephemeral;
  [ck] = kdf(c, 1, ck, ePub);
  h = c.hash(h, ePub);
  // ee
  const ee = c.dh(hs.localEphemeral, ePub);
  if (!ee) return false;
  [ck] = kdf(c, 1, ck, ee);
  // se
  const se = c.dh(local.privateKey, ePub);
  if (!se) return false;
  [ck] = kdf(c, 1, ck, se);
  // psk
  const [ck2, tau, k] = kdf(c, 3, ck, hs.presharedKey);
  ck = ck2;
  h = c.hash(h, tau);
  // {}
  if (!c.aeadOpen(k, 0n, msg.encryptedNothing, h)) return false;
  h = c.hash(h, msg.encryptedNothing);
  wipe(ee, se, tau, k);

  hs.chainingKey = ck;
  hs.hash = h;
  hs.remoteIndex = msg.senderIndex;
  hs.state = 'response-consumed';
  return true;
}

/**
 * Split (§5.4.5): derive the transport keys from the final chaining key and wipe the handshake.
 * The initiator sends with the first key; the responder with the second.
 */
export function deriveTransportKeys(
  local: LocalIdentity,
  hs: Handshake,
): { sendKey: Uint8Array; receiveKey: Uint8Array; isInitiator: boolean; localIndex: number; remoteIndex: number } | null {
  let isInitiator: boolean;
  if (hs.state === 'response-consumed') isInitiator = true;
  else if (hs.state === 'response-created') isInitiator = false;
  else return null;
  const [t1, t2] = kdf(local.c, 2, hs.chainingKey, EMPTY);
  const out = {
    sendKey: isInitiator ? t1 : t2,
    receiveKey: isInitiator ? t2 : t1,
    isInitiator,
    localIndex: hs.localIndex,
    remoteIndex: hs.remoteIndex,
  };
  hs.clear();
  return out;
}
