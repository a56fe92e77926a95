/**
 * The seam for transport-data AEAD (ChaCha20-Poly1305, whitepaper §5.4.6), the only per-packet
 * cryptographic work. It works on batches for one keypair: one call seals or opens many packets,
 * so a native backend can set the key once per batch. `nobleTransportAead` is the pure-JS
 * reference; a faster backend (OpenSSL from the native addon) must give identical bytes.
 *
 * Layout: each packet occupies buf[off[i] .. off[i]+len[i]) as plaintext (seal) or ciphertext
 * with its 16-byte tag (open), and is transformed in place; seal needs 16 spare bytes after each
 * packet for the tag.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';

export interface TransportAead {
  /**
   * Seal `count` packets with consecutive counters starting at (hi, lo). lens[i] is the padded
   * plaintext length; on return the ciphertext+tag (lens[i] + 16 bytes) replaces it in place.
   */
  sealBatch(key: Uint8Array, hi: number, lo: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number): void;
  /**
   * Open `count` packets in place with per-packet counters (his[i], los[i]); lens[i] includes the
   * tag. ok[i] is set to 1 when packet i authenticated (its plaintext, lens[i] − 16 bytes, is then
   * at offs[i]) and 0 otherwise (its bytes are unspecified).
   */
  openBatch(
    key: Uint8Array,
    his: Uint32Array,
    los: Uint32Array,
    buf: Uint8Array,
    offs: Uint32Array,
    lens: Uint32Array,
    count: number,
    ok: Uint8Array,
  ): void;
  readonly name: string;
  /**
   * Optional, for a backend that defers sealing (the runtime's seal-thread experiment): seal now
   * whatever was recorded but not sealed yet. The engine calls it before it reads back bytes it
   * has sealed (wrapping a datagram for a relay).
   */
  sealPending?(): void;
}

function writeNonce(nonce: Uint8Array, hi: number, lo: number): void {
  nonce[4] = lo & 0xff;
  nonce[5] = (lo >>> 8) & 0xff;
  nonce[6] = (lo >>> 16) & 0xff;
  nonce[7] = (lo >>> 24) & 0xff;
  nonce[8] = hi & 0xff;
  nonce[9] = (hi >>> 8) & 0xff;
  nonce[10] = (hi >>> 16) & 0xff;
  nonce[11] = (hi >>> 24) & 0xff;
}

/** Pure-JS reference backend (@noble/ciphers). Correct and portable; not fast. */
export function createNobleTransportAead(): TransportAead {
  const nonce = new Uint8Array(12);
  return {
    name: 'noble',
    sealBatch(key, hi, lo, buf, offs, lens, count) {
      for (let i = 0; i < count; i++) {
        writeNonce(nonce, hi, lo);
        const o = offs[i];
        const n = lens[i];
        chacha20poly1305(key, nonce).encrypt(buf.subarray(o, o + n), buf.subarray(o, o + n + 16));
        lo = (lo + 1) >>> 0;
        if (lo === 0) hi = (hi + 1) >>> 0;
      }
    },
    openBatch(key, his, los, buf, offs, lens, count, ok) {
      for (let i = 0; i < count; i++) {
        writeNonce(nonce, his[i], los[i]);
        const o = offs[i];
        const n = lens[i];
        try {
          chacha20poly1305(key, nonce).decrypt(buf.subarray(o, o + n), buf.subarray(o, o + n - 16));
          ok[i] = 1;
        } catch {
          ok[i] = 0;
        }
      }
    },
  };
}
