/**
 * Cryptographic primitives of the WireGuard protocol (whitepaper §5.4, wireguard.com/protocol):
 *
 *   DH         X25519 (RFC 7748)                       — @noble/curves
 *   HASH       BLAKE2s-256 (RFC 7693)                  — @noble/hashes
 *   MAC        keyed BLAKE2s-128                       — @noble/hashes
 *   HMAC       HMAC-BLAKE2s (RFC 2104 over BLAKE2s)    — @noble/hashes
 *   KDFn       HKDF-style chain over HMAC (whitepaper §5.4)
 *   AEAD       ChaCha20-Poly1305 (RFC 8439)           — @noble/ciphers
 *   XAEAD      XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) — @noble/ciphers
 *
 * Everything the handshake needs goes through the `Crypto` interface so a faster backend can be
 * swapped in; transport data goes through the separate batched `TransportAead` seam (see
 * transport-aead.ts), the only per-packet cryptographic path.
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { chacha20poly1305, xchacha20poly1305 } from '@noble/ciphers/chacha.js';

export const KEY_LEN = 32;
export const HASH_LEN = 32;
export const MAC_LEN = 16;
export const AEAD_TAG_LEN = 16;

export interface Crypto {
  /** DH-Generate: a fresh clamped private key from the supplied random source. */
  generatePrivateKey(random: (n: number) => Uint8Array): Uint8Array;
  /** DH-Pubkey(private). */
  publicKey(privateKey: Uint8Array): Uint8Array;
  /** DH(private, public): 32 bytes; null when the result is all zeros (low-order point). */
  dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | null;
  /** HASH(input): BLAKE2s-256 over the concatenation of the parts. */
  hash(...parts: Uint8Array[]): Uint8Array;
  /** MAC(key, input): keyed BLAKE2s with 16-byte output. */
  mac(key: Uint8Array, input: Uint8Array): Uint8Array;
  /** HMAC(key, input) over BLAKE2s. */
  hmac(key: Uint8Array, input: Uint8Array): Uint8Array;
  /** Optional: KDF_n(key, input) in one step (else `kdf` below builds it from `hmac`). Must equal it. */
  kdf?(n: 1 | 2 | 3, key: Uint8Array, input: Uint8Array): Uint8Array[];
  /** AEAD(key, counter, plaintext, aad): ChaCha20-Poly1305, nonce = 32 zero bits ‖ counter (LE64). */
  aeadSeal(key: Uint8Array, counter: bigint, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  /** Inverse of aeadSeal; null when authentication fails. */
  aeadOpen(key: Uint8Array, counter: bigint, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array | null;
  /** XAEAD(key, nonce24, plaintext, aad): XChaCha20-Poly1305. */
  xaeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  /** Inverse of xaeadSeal; null when authentication fails. */
  xaeadOpen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array | null;
}

/** The 12-byte ChaCha20-Poly1305 nonce WireGuard uses: 4 zero bytes then the 64-bit counter, little-endian. */
export function counterNonce(counter: bigint, out: Uint8Array = new Uint8Array(12)): Uint8Array {
  out[0] = out[1] = out[2] = out[3] = 0;
  let c = counter;
  for (let i = 4; i < 12; i++) {
    out[i] = Number(c & 0xffn);
    c >>= 8n;
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function isZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i];
  return acc === 0;
}

/** The reference backend: audited pure-JS noble libraries. */
export const nobleCrypto: Crypto = {
  generatePrivateKey(random) {
    const k = random(32).slice();
    // Clamp as RFC 7748 §5 (and `wg genkey`) does, so the stored key is canonical.
    k[0] &= 248;
    k[31] = (k[31] & 127) | 64;
    return k;
  },
  publicKey(privateKey) {
    return x25519.getPublicKey(privateKey);
  },
  dh(privateKey, publicKey) {
    let out: Uint8Array;
    try {
      out = x25519.getSharedSecret(privateKey, publicKey);
    } catch {
      return null; // noble refuses an all-zero result
    }
    return isZero(out) ? null : out;
  },
  hash(...parts) {
    return blake2s(concat(parts));
  },
  mac(key, input) {
    return blake2s(input, { key, dkLen: MAC_LEN });
  },
  hmac(key, input) {
    return hmac(blake2s, key, input);
  },
  aeadSeal(key, counter, plaintext, aad) {
    return chacha20poly1305(key, counterNonce(counter), aad).encrypt(plaintext);
  },
  aeadOpen(key, counter, ciphertext, aad) {
    try {
      return chacha20poly1305(key, counterNonce(counter), aad).decrypt(ciphertext);
    } catch {
      return null;
    }
  },
  xaeadSeal(key, nonce, plaintext, aad) {
    return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
  },
  xaeadOpen(key, nonce, ciphertext, aad) {
    try {
      return xchacha20poly1305(key, nonce, aad).decrypt(ciphertext);
    } catch {
      return null;
    }
  },
};

/** KDF1/KDF2/KDF3 of the whitepaper §5.4: τ0 = HMAC(key, input); τi = HMAC(τ0, τi−1 ‖ i). */
export function kdf(c: Crypto, n: 1 | 2 | 3, key: Uint8Array, input: Uint8Array): Uint8Array[] {
  if (c.kdf) return c.kdf(n, key, input);
  return kdfFromHmac(c, n, key, input);
}

/** KDF_n built from HMAC, step by step as the whitepaper writes it (the reference for `Crypto.kdf`). */
export function kdfFromHmac(c: Crypto, n: 1 | 2 | 3, key: Uint8Array, input: Uint8Array): Uint8Array[] {
  const t0 = c.hmac(key, input);
  const out: Uint8Array[] = [];
  let prev: Uint8Array = new Uint8Array(0);
  for (let i = 1; i <= n; i++) {
    const msg = new Uint8Array(prev.length + 1);
    msg.set(prev, 0);
    msg[prev.length] = i;
    prev = c.hmac(t0, msg);
    out.push(prev);
  }
  t0.fill(0);
  return out;
}

/** Wipe secret bytes in place (best effort: JS cannot prevent copies made elsewhere). */
export function wipe(...bufs: (Uint8Array | null | undefined)[]): void {
  for (const b of bufs) if (b) b.fill(0);
}

/** Constant-time equality for MACs and keys. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}
