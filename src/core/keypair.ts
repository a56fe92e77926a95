/**
 * Transport keypairs and their rotation (whitepaper §5.4.6, §6.1–6.2).
 *
 * A peer holds up to three keypairs:
 *   previous — the one `current` replaced; kept so packets in flight under it still decrypt;
 *   current  — used to send;
 *   next     — a responder's fresh keypair, not used to send until the initiator proves it has
 *              it by sending a transport packet under it (key confirmation), at which point it
 *              becomes current.
 * The send counter is a 64-bit value kept as two unsigned 32-bit halves so the hot path needs no
 * bigint and no 2^53 shortcut.
 */
import {
  REJECT_AFTER_MESSAGES_HI,
  REJECT_AFTER_MESSAGES_LO,
  REJECT_AFTER_TIME,
  REKEY_AFTER_MESSAGES_HI,
  REKEY_AFTER_TIME,
} from './constants.js';
import { ReplayWindow } from './replay.js';

export class Keypair {
  readonly replay = new ReplayWindow();
  sendHi = 0;
  sendLo = 0;
  /** Set once the first transport packet under this keypair authenticates. */
  receivedAny = false;
  zeroed = false;

  constructor(
    readonly sendKey: Uint8Array,
    readonly receiveKey: Uint8Array,
    readonly isInitiator: boolean,
    /** Engine time at which the handshake that made this keypair completed. */
    readonly created: number,
    /** Our receiver index for this keypair (peers put it in transport headers to us). */
    readonly localIndex: number,
    /** The peer's index, which we put in transport headers to it. */
    readonly remoteIndex: number,
  ) {}

  /** True while this keypair may still send: younger than REJECT_AFTER_TIME, counter below REJECT_AFTER_MESSAGES. */
  canSend(now: number, n = 1): boolean {
    if (this.zeroed || now - this.created >= REJECT_AFTER_TIME) return false;
    return counterBelowReject(this.sendHi, this.sendLo + n - 1);
  }

  /** True while packets under this keypair may still be accepted. */
  canReceive(now: number): boolean {
    return !this.zeroed && now - this.created < REJECT_AFTER_TIME;
  }

  /** The initiator's send-side rekey rule (§6.2): too many messages, or older than REKEY_AFTER_TIME. */
  wantsRekeyOnSend(now: number): boolean {
    return this.sendHi >= REKEY_AFTER_MESSAGES_HI || (this.isInitiator && now - this.created >= REKEY_AFTER_TIME);
  }

  /** Reserve n consecutive counters; the first one is left in (reservedHi, reservedLo). */
  reserve(n: number): void {
    this.reservedHi = this.sendHi;
    this.reservedLo = this.sendLo;
    const lo = this.sendLo + n;
    if (lo > 0xffffffff) {
      this.sendHi = (this.sendHi + 1) >>> 0;
      this.sendLo = lo - 0x100000000;
    } else {
      this.sendLo = lo;
    }
  }
  reservedHi = 0;
  reservedLo = 0;

  /** Zero the key material (when the keypair expires or the peer is removed). */
  zero(): void {
    this.sendKey.fill(0);
    this.receiveKey.fill(0);
    this.zeroed = true;
  }
}

/** counter < REJECT_AFTER_MESSAGES, with the counter given as hi and a lo that may exceed 32 bits by a batch size. */
export function counterBelowReject(hi: number, lo: number): boolean {
  if (lo > 0xffffffff) {
    hi += 1;
    lo -= 0x100000000;
  }
  if (hi < REJECT_AFTER_MESSAGES_HI) return true;
  return hi === REJECT_AFTER_MESSAGES_HI && lo < REJECT_AFTER_MESSAGES_LO;
}

export class Keypairs {
  previous: Keypair | null = null;
  current: Keypair | null = null;
  next: Keypair | null = null;

  /**
   * Install a freshly derived keypair. The initiator uses it at once (it has the peer's
   * confirmation: the response); the responder parks it in `next` until confirmed.
   * Returns the keypairs that dropped out, for index release and zeroing.
   */
  install(kp: Keypair): Keypair[] {
    const dropped: Keypair[] = [];
    if (kp.isInitiator) {
      if (this.next) {
        // An unconfirmed responder keypair: the peer (its initiator) may already be sending under
        // it, so keep it receivable as `previous`; the old current one is superseded twice over.
        if (this.current) dropped.push(this.current);
        if (this.previous) dropped.push(this.previous);
        this.previous = this.next;
        this.next = null;
      } else {
        if (this.previous) dropped.push(this.previous);
        this.previous = this.current;
      }
      this.current = kp;
    } else {
      if (this.next) dropped.push(this.next);
      this.next = kp;
      if (this.previous) dropped.push(this.previous);
      this.previous = null;
    }
    return dropped;
  }

  /**
   * Key confirmation: a transport packet authenticated under `kp`. If it is `next`, rotate it in.
   * Returns the keypair that dropped out, if any.
   */
  received(kp: Keypair): Keypair | null {
    if (kp !== this.next) return null;
    const dropped = this.previous;
    this.previous = this.current;
    this.current = kp;
    this.next = null;
    return dropped;
  }

  all(): Keypair[] {
    const out: Keypair[] = [];
    if (this.previous) out.push(this.previous);
    if (this.current) out.push(this.current);
    if (this.next) out.push(this.next);
    return out;
  }

  clear(): Keypair[] {
    const all = this.all();
    this.previous = this.current = this.next = null;
    return all;
  }
}
