/**
 * Protocol constants of WireGuard (whitepaper §5.4 and §6.1, wireguard.com/protocol), kept apart
 * from keymesh's own tuning constants below. All times are in milliseconds because the engine's
 * clock (`now`, supplied by the runtime) is in milliseconds.
 */

// — Spec constants (§5.4) —
export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';

// — Spec constants (§6.1) —
/** 2^60 messages: the initiator starts a new handshake after this many sent on a keypair. */
export const REKEY_AFTER_MESSAGES_HI = 2 ** 28; // 2^60 expressed as the high 32-bit half
/** 2^64 − 2^13 − 1 messages: a keypair is never used past this counter (as two 32-bit halves). */
export const REJECT_AFTER_MESSAGES_HI = 0xffffffff;
export const REJECT_AFTER_MESSAGES_LO = 0xffffdfff;
export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_ATTEMPT_TIME = 90_000;
export const REKEY_TIMEOUT = 5_000;
export const KEEPALIVE_TIMEOUT = 10_000;
/** A cookie (and the responder's cookie secret) is good for two minutes. */
export const COOKIE_REFRESH_TIME = 120_000;

// — Derived from the spec, as the kernel and wireguard-go derive them —
/** Handshake attempts before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT. */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;
/** Jitter added to REKEY_TIMEOUT and to the new-handshake timer: up to a third of a second. */
export const REKEY_TIMEOUT_JITTER_MAX = 334;
/** The initiator's receive-side rekey threshold: REJECT_AFTER_TIME − KEEPALIVE_TIMEOUT − REKEY_TIMEOUT. */
export const REKEY_RECEIVE_THRESHOLD = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;

// — Message types and sizes (§5.4.2–§5.4.6) —
export const MESSAGE_INITIATION = 1;
export const MESSAGE_RESPONSE = 2;
export const MESSAGE_COOKIE_REPLY = 3;
export const MESSAGE_TRANSPORT_DATA = 4;
export const INITIATION_SIZE = 148;
export const RESPONSE_SIZE = 92;
export const COOKIE_REPLY_SIZE = 64;
export const TRANSPORT_HEADER_SIZE = 16;
export const TRANSPORT_MIN_SIZE = TRANSPORT_HEADER_SIZE + 16; // header + Poly1305 tag (keepalive)
/** Transport plaintext is zero-padded to a multiple of this. */
export const PADDING_MULTIPLE = 16;

// — keymesh tuning (not from the spec) —
export const DEFAULT_MTU = 1420;
/** Packets queued per peer while its handshake completes (wireguard-go keeps 128). */
export const MAX_STAGED_PACKETS = 128;
/** A peer may start at most one initiation per this interval at the responder (wireguard-go: 50/s). */
export const HANDSHAKE_INITIATION_RATE = 20;
/** Handshake messages per second above which the responder considers itself under load. */
export const UNDER_LOAD_HANDSHAKES_PER_SECOND = 256;
/** Once under load, stay so for this long after the rate falls (as wireguard-go). */
export const UNDER_LOAD_AFTER = 1_000;
/** Per-source handshake rate limit under load (kernel ratelimiter: 20/s, burst 5). */
export const RATELIMIT_PACKETS_PER_SECOND = 20;
export const RATELIMIT_BURST = 5;
