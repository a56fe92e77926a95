/**
 * Per-peer timers of the whitepaper §6 (and the kernel's timers.c), as deadlines in engine time.
 * Nothing here runs on its own: the engine calls the hooks below at the points their contracts
 * name, `Engine.tick(now)` fires the deadlines that have passed, and `next()` tells the runtime
 * when to call tick again.
 *
 *   retransmitHandshake  REKEY_TIMEOUT + jitter after an initiation: send another, or give up
 *                        after MAX_TIMER_HANDSHAKES attempts (≈ REKEY_ATTEMPT_TIME).
 *   sendKeepalive        KEEPALIVE_TIMEOUT after data was received and nothing was sent back.
 *   newHandshake         KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter after data was sent and nothing
 *                        authenticated came back: the session is presumed dead, so re-handshake.
 *   zeroKeyMaterial      3 × REJECT_AFTER_TIME after the last session was derived: wipe all keys.
 *   persistentKeepalive  the configured interval after any authenticated packet went either way.
 *   resendInitiation     (keymesh's own) 250 ms after an initiation, then 500 ms, 1 s and 2 s after
 *                        that, while no response came: the same initiation, byte for byte, again —
 *                        a lost initiation (a lossy link, a responder whose socket overflows under a
 *                        flood) costs a fraction of a second instead of REKEY_TIMEOUT. A copy is
 *                        not a new handshake: a responder that saw the first drops it (its
 *                        timestamp is not newer), so WireGuard's one initiation per REKEY_TIMEOUT
 *                        holds.
 */
import { KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_TIMEOUT } from './constants.js';

export type TimerName = 'retransmitHandshake' | 'sendKeepalive' | 'newHandshake' | 'zeroKeyMaterial' | 'persistentKeepalive' | 'resendInitiation';
/** The first copy of an initiation goes this long after it; each later one twice as long after the one before. */
export const INITIATION_RESEND_FIRST = 250;
export const TIMER_NAMES: readonly TimerName[] = [
  'retransmitHandshake',
  'resendInitiation',
  'sendKeepalive',
  'newHandshake',
  'zeroKeyMaterial',
  'persistentKeepalive',
];

export class PeerTimers {
  retransmitHandshake = Infinity;
  sendKeepalive = Infinity;
  newHandshake = Infinity;
  zeroKeyMaterial = Infinity;
  persistentKeepalive = Infinity;
  resendInitiation = Infinity;
  /** The gap before the next copy of the initiation in flight. */
  resendInterval = INITIATION_RESEND_FIRST;
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  /** Persistent keepalive interval in milliseconds; 0 disables it. */
  persistentKeepaliveInterval = 0;

  /** Should be called after an authenticated data packet (not a keepalive) is sent. */
  dataSent(now: number, jitter: () => number): void {
    // jitter is drawn only when the timer is armed: once per quiet period, not per packet
    if (this.newHandshake === Infinity) this.newHandshake = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter();
  }

  /** Should be called after an authenticated data packet (not a keepalive) is received. */
  dataReceived(now: number): void {
    if (this.sendKeepalive === Infinity) this.sendKeepalive = now + KEEPALIVE_TIMEOUT;
    else this.needAnotherKeepalive = true;
  }

  /** Should be called after any authenticated packet (data, keepalive or handshake) is sent. */
  anyAuthenticatedPacketSent(): void {
    this.sendKeepalive = Infinity;
  }

  /** Should be called after any authenticated packet (data, keepalive or handshake) is received. */
  anyAuthenticatedPacketReceived(): void {
    this.newHandshake = Infinity;
  }

  /** Should be called after a handshake initiation message is sent. */
  handshakeInitiated(now: number, jitter: number): void {
    this.retransmitHandshake = now + REKEY_TIMEOUT + jitter;
    this.resendInterval = INITIATION_RESEND_FIRST;
    this.resendInitiation = now + INITIATION_RESEND_FIRST;
  }

  /** A copy of the initiation went out: the next one twice as far off, none past the retransmission. */
  initiationResent(now: number): void {
    this.resendInterval *= 2;
    const at = now + this.resendInterval;
    this.resendInitiation = at < this.retransmitHandshake ? at : Infinity;
  }

  /** Should be called after a handshake response is consumed or a responder's keypair is confirmed. */
  handshakeComplete(): void {
    this.retransmitHandshake = Infinity;
    this.resendInitiation = Infinity;
    this.handshakeAttempts = 0;
  }

  /** Should be called after a new keypair is derived (either role). */
  sessionDerived(now: number): void {
    this.zeroKeyMaterial = now + 3 * REJECT_AFTER_TIME;
  }

  /** Should be called after any authenticated packet is sent or received. */
  anyAuthenticatedPacketTraversal(now: number): void {
    if (this.persistentKeepaliveInterval > 0) this.persistentKeepalive = now + this.persistentKeepaliveInterval;
  }

  /** Earliest armed deadline, or Infinity. */
  next(): number {
    return Math.min(this.retransmitHandshake, this.sendKeepalive, this.newHandshake, this.zeroKeyMaterial, this.persistentKeepalive, this.resendInitiation);
  }

  stopAll(): void {
    this.retransmitHandshake = this.sendKeepalive = this.newHandshake = this.zeroKeyMaterial = this.persistentKeepalive = this.resendInitiation = Infinity;
  }
}
