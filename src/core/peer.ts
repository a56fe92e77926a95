/**
 * A peer: its static key, handshake state, keypairs, timers, endpoint, cookie state, packets
 * waiting for a session, and its statistics. Behaviour lives in the engine; this is state.
 */
import { CookieGenerator } from './cookie.js';
import type { Crypto } from './crypto.js';
import { PeerEndpoint } from './endpoint.js';
import { Keypairs } from './keypair.js';
import { Handshake, type LocalIdentity } from './noise.js';
import { PeerTimers } from './timers.js';

export interface PeerStats {
  rxBytes: number;
  txBytes: number;
  /** Engine time of the last completed handshake, or null. */
  lastHandshake: number | null;
  handshakesCompleted: number;
  handshakeAttempts: number;
}

export class Peer {
  readonly handshake: Handshake;
  readonly keypairs = new Keypairs();
  readonly timers = new PeerTimers();
  readonly endpoint: PeerEndpoint;
  readonly cookie: CookieGenerator;
  /** Copies of packets waiting for a session (bounded by MAX_STAGED_PACKETS). */
  staged: Uint8Array[] = [];
  /** Engine time we last sent an initiation (initiations are at most one per REKEY_TIMEOUT). */
  lastSentHandshake = -Infinity;
  /** The initiator's "last minute" rekey on receive has been sent for the current keypair. */
  sentLastMinuteHandshake = false;
  rxBytes = 0;
  txBytes = 0;
  lastHandshake: number | null = null;
  handshakesCompleted = 0;
  /** HELLOs sent on the extension channel without an answer yet. */
  hellosSent = 0;

  constructor(
    readonly publicKey: Uint8Array,
    readonly keyId: string,
    local: LocalIdentity,
    c: Crypto,
    presharedKey?: Uint8Array,
  ) {
    this.handshake = new Handshake(local, publicKey, presharedKey);
    this.cookie = new CookieGenerator(c, publicKey);
    this.endpoint = new PeerEndpoint();
  }

  get persistentKeepalive(): number {
    return this.timers.persistentKeepaliveInterval / 1000;
  }
}
