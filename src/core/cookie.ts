/**
 * MACs and cookies: WireGuard's denial-of-service defence (whitepaper §5.3, §5.4.4, §5.4.7).
 *
 * Every handshake message carries
 *   mac1 = MAC(HASH(LABEL_MAC1 ‖ Spub_receiver), msg[0 : mac1])   — proves the sender knows our public key;
 *   mac2 = MAC(cookie, msg[0 : mac2])                              — or zeros when it holds no fresh cookie.
 * A responder under load answers a message whose mac2 is missing or stale with a cookie reply:
 *   τ = MAC(Rm, Am)   where Rm is a secret rotated every two minutes and Am the sender's address ‖ port,
 *   msg.cookie = XAEAD(HASH(LABEL_COOKIE ‖ Spub_responder), nonce, τ, mac1 of the message answered).
 * The initiator decrypts τ, keeps it for COOKIE_REFRESH_TIME and puts mac2 on its next message.
 *
 * `CookieChecker` is the receiving side (one per device, keyed to our own public key);
 * `CookieGenerator` is the sending side (one per peer, keyed to the peer's public key).
 */
import { COOKIE_REFRESH_TIME, LABEL_COOKIE, LABEL_MAC1, REKEY_TIMEOUT } from './constants.js';
import { equalBytes, MAC_LEN, type Crypto } from './crypto.js';
import type { CookieReply } from './messages.js';

const enc = new TextEncoder();
const LABEL_MAC1_BYTES = enc.encode(LABEL_MAC1);
const LABEL_COOKIE_BYTES = enc.encode(LABEL_COOKIE);

export function mac1Key(c: Crypto, publicKey: Uint8Array): Uint8Array {
  return c.hash(LABEL_MAC1_BYTES, publicKey);
}

export function cookieKey(c: Crypto, publicKey: Uint8Array): Uint8Array {
  return c.hash(LABEL_COOKIE_BYTES, publicKey);
}

export type MacCheck = 'ok' | 'bad-mac1' | 'need-cookie';

export class CookieChecker {
  private mac1Key: Uint8Array;
  private cookieEncryptionKey: Uint8Array;
  private secret: Uint8Array;
  private secretSetAt = -Infinity;

  constructor(
    private readonly c: Crypto,
    private readonly random: (n: number) => Uint8Array,
    localPublicKey: Uint8Array,
  ) {
    this.mac1Key = mac1Key(c, localPublicKey);
    this.cookieEncryptionKey = cookieKey(c, localPublicKey);
    this.secret = new Uint8Array(32);
  }

  /** Re-key after our static key changes. */
  setLocalPublicKey(publicKey: Uint8Array): void {
    this.mac1Key = mac1Key(this.c, publicKey);
    this.cookieEncryptionKey = cookieKey(this.c, publicKey);
  }

  /**
   * Check the MACs of a handshake message `msg` (mac1 at mac1Offset, mac2 right after it).
   * When not under load only mac1 matters; under load a valid mac2 for this source is required.
   */
  check(msg: Uint8Array, mac1Offset: number, cookieBytes: Uint8Array, underLoad: boolean, now: number): MacCheck {
    if (!this.mac1Valid(msg, 0, mac1Offset)) return 'bad-mac1';
    if (!underLoad) return 'ok';
    // Only a cookie from the current secret counts: a stale one gets a fresh cookie reply.
    return this.mac2Valid(msg, 0, mac1Offset, cookieBytes, now) ? 'ok' : 'need-cookie';
  }

  /** mac1 of the handshake message at buf[off..] (mac1 at off + mac1Offset), checked in place. */
  mac1Valid(buf: Uint8Array, off: number, mac1Offset: number): boolean {
    const mac1 = this.c.mac(this.mac1Key, buf.subarray(off, off + mac1Offset));
    return equalBytes(mac1, buf.subarray(off + mac1Offset, off + mac1Offset + MAC_LEN));
  }

  /** Under load: does the message at buf[off..] carry a valid mac2 for this source (a cookie of the current secret)? */
  mac2Valid(buf: Uint8Array, off: number, mac1Offset: number, cookieBytes: Uint8Array, now: number): boolean {
    if (now - this.secretSetAt >= COOKIE_REFRESH_TIME) return false;
    const cookie = this.c.mac(this.secret, cookieBytes);
    const mac2Offset = mac1Offset + MAC_LEN;
    const mac2 = this.c.mac(cookie, buf.subarray(off, off + mac2Offset));
    return equalBytes(mac2, buf.subarray(off + mac2Offset, off + mac2Offset + MAC_LEN));
  }

  /** Build the cookie reply to a message whose sender index is `receiverIndex` and whose mac1 is `mac1`. */
  createReply(receiverIndex: number, mac1: Uint8Array, cookieBytes: Uint8Array, now: number): CookieReply {
    if (now - this.secretSetAt >= COOKIE_REFRESH_TIME) {
      this.secret.fill(0);
      this.secret = this.random(32).slice();
      this.secretSetAt = now;
    }
    const cookie = this.c.mac(this.secret, cookieBytes);
    const nonce = this.random(24).slice();
    const encryptedCookie = this.c.xaeadSeal(this.cookieEncryptionKey, nonce, cookie, mac1);
    return { receiverIndex, nonce, encryptedCookie };
  }
}

export class CookieGenerator {
  // Derived from the peer's key on first use: an idle peer never sends a handshake message.
  private mac1KeyCache: Uint8Array | null = null;
  private cookieKeyCache: Uint8Array | null = null;
  private cookie: Uint8Array | null = null;
  private cookieSetAt = -Infinity;
  /** mac1 of the last handshake message we sent: the AAD a genuine cookie reply must carry. */
  private lastMac1: Uint8Array | null = null;

  constructor(
    private readonly c: Crypto,
    private readonly peerPublicKey: Uint8Array,
  ) {}

  private get mac1Key(): Uint8Array {
    return (this.mac1KeyCache ??= mac1Key(this.c, this.peerPublicKey));
  }

  private get cookieDecryptionKey(): Uint8Array {
    return (this.cookieKeyCache ??= cookieKey(this.c, this.peerPublicKey));
  }

  /** Fill in mac1 and (with a fresh cookie) mac2 of an outgoing handshake message, in place. */
  addMacs(msg: Uint8Array, mac1Offset: number, now: number): void {
    const mac1 = this.c.mac(this.mac1Key, msg.subarray(0, mac1Offset));
    msg.set(mac1, mac1Offset);
    this.lastMac1 = mac1;
    const mac2Offset = mac1Offset + MAC_LEN;
    // Treat the cookie as expired a little early so it is not rejected in flight (as the kernel does).
    if (this.cookie && now - this.cookieSetAt < COOKIE_REFRESH_TIME - REKEY_TIMEOUT) {
      msg.set(this.c.mac(this.cookie, msg.subarray(0, mac2Offset)), mac2Offset);
    } else {
      msg.fill(0, mac2Offset, mac2Offset + MAC_LEN);
    }
  }

  /** Take a cookie reply addressed to us. Returns false if it does not decrypt against our last mac1. */
  consumeReply(reply: CookieReply, now: number): boolean {
    if (!this.lastMac1) return false;
    const cookie = this.c.xaeadOpen(this.cookieDecryptionKey, reply.nonce, reply.encryptedCookie, this.lastMac1);
    if (!cookie) return false;
    this.cookie = cookie;
    this.cookieSetAt = now;
    this.lastMac1 = null; // one reply per message sent
    return true;
  }

  hasFreshCookie(now: number): boolean {
    return this.cookie !== null && now - this.cookieSetAt < COOKIE_REFRESH_TIME - REKEY_TIMEOUT;
  }
}
