/**
 * The handshake gate under attack (the kernel's handshake queue in receive.c, with keymesh's own
 * bounds): transport data for established sessions must keep flowing whatever else arrives.
 *
 * A batch of datagrams is split by message type before any cryptography (receive.ts): transport
 * data is opened at once; a handshake message is triaged here and, if it deserves the work, copied
 * into a bounded queue that the runtime drains a slice at a time between its reads of the socket
 * (Engine.processHandshakes), so a flood of handshakes can cost established sessions CPU but
 * never their place in line.
 *
 * Triage of one handshake message, cheapest test first:
 *   1. exact size for its type (initiation 148, response 92) — else `malformed`;
 *   2. mac1 (one BLAKE2s over the message, in place) — else `badMac1`: anyone who does not know
 *      our public key stops here; but under load, a message with no mac2 at all (zeros: no
 *      cookie) from a source that has used up its cookie replies is dropped before that, with
 *      no cryptography at all (`cookieShed`: it could get nothing but a reply);
 *   3. under load (more than UNDER_LOAD_HANDSHAKES_PER_SECOND valid-mac1 messages a second):
 *      without a valid mac2 the sender gets a cookie reply (whitepaper §5.3) — at most
 *      COOKIE_REPLIES_PER_SOURCE a second per source address and COOKIE_REPLIES_PER_SECOND in all,
 *      so answering a flood costs a bounded share of CPU and uplink (a reply is 64 bytes, less
 *      than half the 148-byte initiation it answers: no amplification) — beyond that `cookieShed`;
 *      with a valid mac2, the per-source handshake rate limit (ratelimiter.ts) — else `rateLimited`;
 *   4. queued for the full handshake (the Noise work: four X25519 for an initiation), unless the
 *      queue holds HANDSHAKE_QUEUE_MAX already — then `handshakeShed`.
 * Cookie replies to us (64 bytes) need no queue: one is opened only when its receiver index names
 * a handshake of ours in flight.
 *
 * May touch: the engine's cookie checker, load window, rate limiters, counters, sink and queue.
 */
import { INITIATION_SIZE, MESSAGE_INITIATION, MESSAGE_RESPONSE, RESPONSE_SIZE, UNDER_LOAD_AFTER } from './constants.js';
import type { Path } from './endpoint.js';
import type { DatagramResult, Engine } from './engine.js';
import { TokenBuckets } from './lighthouse.js';
import { INITIATION_MAC1_OFFSET, readU32, RESPONSE_MAC1_OFFSET, serializeCookieReply } from './messages.js';

/** Handshake messages waiting for their Noise work. */
export const HANDSHAKE_QUEUE_MAX = 1024;
/** Cookie replies sent per second in all (and their burst): ~0.3 Mbit/s, a few % of a core. */
export const COOKIE_REPLIES_PER_SECOND = 5000;
export const COOKIE_REPLY_BURST = 500;
/** …and per source address (a legitimate initiator needs one per attempt). */
export const COOKIE_REPLIES_PER_SOURCE = 10;
export const COOKIE_REPLY_SOURCE_BURST = 10;

/** The queue: a ring of copied messages and their paths. */
export class HandshakeQueue {
  private readonly items: Array<{ data: Uint8Array; path: Path } | null> = new Array(HANDSHAKE_QUEUE_MAX).fill(null);
  private head = 0;
  length = 0;
  readonly cookieReplies = new TokenBuckets(COOKIE_REPLIES_PER_SECOND, COOKIE_REPLY_BURST);
  readonly cookieRepliesPerSource = new TokenBuckets(COOKIE_REPLIES_PER_SOURCE, COOKIE_REPLY_SOURCE_BURST);

  push(data: Uint8Array, path: Path): boolean {
    if (this.length === HANDSHAKE_QUEUE_MAX) return false;
    this.items[(this.head + this.length) % HANDSHAKE_QUEUE_MAX] = { data, path };
    this.length++;
    return true;
  }

  shift(): { data: Uint8Array; path: Path } | null {
    if (this.length === 0) return null;
    const it = this.items[this.head];
    this.items[this.head] = null;
    this.head = (this.head + 1) % HANDSHAKE_QUEUE_MAX;
    this.length--;
    return it;
  }
}

/** Count a valid-mac1 handshake message toward the load window; under load for UNDER_LOAD_AFTER after the threshold is crossed. */
export function noteHandshakeLoad(engine: Engine, now: number): void {
  if (now - engine.handshakeWindowStart >= 1000) {
    engine.handshakeWindowStart = now;
    engine.handshakeWindowCount = 0;
  }
  if (++engine.handshakeWindowCount > engine.underLoadThreshold) engine.underLoadUntil = now + UNDER_LOAD_AFTER;
}

/**
 * Answer a handshake message that lacks a valid mac2 under load with a cookie reply, within the
 * reply budgets. Always a drop for the message itself: `cookieSent` or `cookieShed`.
 */
export function replyWithCookie(engine: Engine, buf: Uint8Array, off: number, mac1Offset: number, path: Path, now: number): DatagramResult {
  const q = engine.handshakes;
  if (!q.cookieRepliesPerSource.take(path.hostId, 1, now) || !q.cookieReplies.take('', 1, now)) return engine.drop('cookieShed');
  const senderIndex = readU32(buf, off + 4);
  const mac1 = buf.slice(off + mac1Offset, off + mac1Offset + 16);
  const bytes = serializeCookieReply(engine.checker!.createReply(senderIndex, mac1, path.cookieBytes, now));
  engine.sink.send(path, bytes, 0, bytes.length);
  return engine.drop('cookieSent');
}

function allZero(b: Uint8Array, off: number, len: number): boolean {
  let x = 0;
  for (let i = 0; i < len; i++) x |= b[off + i];
  return x === 0;
}

/**
 * One handshake message (initiation or response) from a batch: triage (see above), and queue it
 * for the Noise work if it passes. The bytes at buf[off..off+len) are copied only then.
 */
export function triageHandshake(engine: Engine, type: number, buf: Uint8Array, off: number, len: number, path: Path, now: number): DatagramResult {
  const size = type === MESSAGE_INITIATION ? INITIATION_SIZE : RESPONSE_SIZE;
  if (len !== size) return engine.drop('malformed');
  const checker = engine.checker;
  if (!engine.local || !checker) return engine.drop('noPrivateKey');
  const mac1Offset = type === MESSAGE_INITIATION ? INITIATION_MAC1_OFFSET : RESPONSE_MAC1_OFFSET;
  const underLoad = engine.isUnderLoad(now);
  const noCookie = underLoad && allZero(buf, off + mac1Offset + 16, 16);
  if (noCookie && !engine.handshakes.cookieRepliesPerSource.has(path.hostId, 1, now)) {
    noteHandshakeLoad(engine, now); // still counts toward the load (so being under load does not flap)
    return engine.drop('cookieShed');
  }
  if (!checker.mac1Valid(buf, off, mac1Offset)) return engine.drop('badMac1');
  noteHandshakeLoad(engine, now);
  if (underLoad) {
    if (noCookie || !checker.mac2Valid(buf, off, mac1Offset, path.cookieBytes, now)) return replyWithCookie(engine, buf, off, mac1Offset, path, now);
    if (!engine.ratelimiter.allow(path.hostId, now)) return engine.drop('rateLimited');
  }
  if (!engine.handshakes.push(buf.slice(off, off + len), path)) return engine.drop('handshakeShed');
  return 'queued';
}
