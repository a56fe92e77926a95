/**
 * Key text formats. A WireGuard key is 32 bytes. Configs and `wg genkey`/`wg pubkey`/`wg genpsk`
 * use standard base64 with padding (44 characters, the last one "="); the cross-platform UAPI
 * (wireguard.com/xplatform) uses 64 hex digits.
 *
 * Decoding is as strict as wireguard-tools' key_from_base64: exactly 44 characters, and the two
 * bits the last data character carries beyond the 256 key bits must be zero, so every key has one
 * spelling and text that merely looks like a key is refused. Decoders return null on bad input;
 * encoders throw on a wrong length, which is caller misuse.
 */

import { createPrivateKey, createPublicKey } from 'node:crypto';

export const WG_KEY_LEN = 32;
export const WG_KEY_LEN_BASE64 = 44;
export const WG_KEY_LEN_HEX = 64;

// 42 free characters, then one whose low two bits are zero (A E I M … 0 4 8), then the "=" pad.
const BASE64_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const HEX_KEY = /^[0-9a-fA-F]{64}$/;

function checkLength(key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length !== WG_KEY_LEN) {
    const got = key instanceof Uint8Array ? `length=${key.length}` : typeof key;
    throw new TypeError(`${what}: expected Uint8Array of length ${WG_KEY_LEN}, got ${got}`);
  }
}

/** Base64 with padding, 44 characters, as `wg` prints keys. */
export function encodeKey(key: Uint8Array): string {
  checkLength(key, 'encodeKey');
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64');
}

/** Strict: exactly 44 characters of canonical base64 encoding 32 bytes; null otherwise. */
export function decodeKey(text: string): Uint8Array | null {
  if (typeof text !== 'string' || text.length !== WG_KEY_LEN_BASE64 || !BASE64_KEY.test(text)) return null;
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** Lowercase hex, 64 digits, as the UAPI carries keys. */
export function keyToHex(key: Uint8Array): string {
  checkLength(key, 'keyToHex');
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
}

/** Exactly 64 hex digits (either case); null otherwise. */
export function hexToKey(hex: string): Uint8Array | null {
  if (typeof hex !== 'string' || !HEX_KEY.test(hex)) return null;
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** An all-zero key: the UAPI's way of saying "no key" (private_key=0…0, preshared_key=0…0). */
export function isZeroKey(k: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < k.length; i++) acc |= k[i];
  return acc === 0;
}

/** PKCS #8 for id-X25519 (RFC 8410 §7), before the 32 private key bytes. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * The X25519 public key of a private key, through the OpenSSL Node is linked with (which clamps
 * the scalar as RFC 7748 says, like every WireGuard implementation). For loading configuration at
 * start-up: noble's pure-TS X25519 costs ~100 ms on its first, cold call there; this costs
 * well under one. (test/unit/keys.test.ts checks it against noble's.)
 */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  checkLength(privateKey, 'publicKeyOf');
  const k = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, privateKey]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(k).export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(spki.length - WG_KEY_LEN));
}
