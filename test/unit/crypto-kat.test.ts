/**
 * Known-answer tests for the primitives (src/core/crypto.ts). Vectors from RFC 7693 (BLAKE2s),
 * RFC 7748 (X25519), RFC 8439 §2.8.2 (ChaCha20-Poly1305) and draft-irtf-cfrg-xchacha §A.3.1;
 * keyed BLAKE2s, HMAC-BLAKE2s and KDF expectations were computed independently with Python's
 * hashlib/hmac; the public key with the stock `wg pubkey`.
 */
import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { counterNonce, equalBytes, kdf, nobleCrypto as c } from '../../src/core/crypto.js';
import { decodeKey, encodeKey } from '../../src/config/keys.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const seq = (n: number) => new Uint8Array(n).map((_, i) => i);
const LADIES = new TextEncoder().encode(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
);

describe('BLAKE2s', () => {
  it('RFC 7693 appendix B: BLAKE2s-256("abc")', () => {
    expect(toHex(c.hash(new TextEncoder().encode('abc')))).toBe('508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  });
  it('hash of several parts equals hash of their concatenation', () => {
    expect(toHex(c.hash(hex('6162'), hex('63')))).toBe(toHex(c.hash(hex('616263'))));
  });
  it('keyed BLAKE2s (MAC) matches independent computations', () => {
    const key = seq(32);
    // MAC is 16 bytes; BLAKE2s keyed KAT (key 00..1f, message 00..63) checked at 32 bytes via hashlib
    expect(toHex(c.mac(key, new TextEncoder().encode('hello')))).toBe('1f946dc212a39570bc06fd378517a91e');
  });
});

describe('HMAC-BLAKE2s and KDF1/2/3', () => {
  const key = new Uint8Array(32).fill(7);
  const input = new TextEncoder().encode('keymesh kdf input');
  it('HMAC', () => {
    expect(toHex(c.hmac(key, input))).toBe('79bf7decbcfbb07576d3b69c82e55164b3b8183ffa7c4c589a711cbe8f077206');
  });
  it('KDF3 chain and its prefixes KDF1, KDF2', () => {
    const expected = [
      '22370fbba5400786ea8de53ad6921861dddfdd21196bd97e5325e5ab6fbea748',
      'bebb3e0db78b38daa2df65d61ab9483eab420437a82225bbb5783b8b5c169a35',
      '733348160c49dc51a0f5b0752ba45af4f0183ab45406be844dcab8465fced060',
    ];
    expect(kdf(c, 3, key, input).map(toHex)).toEqual(expected);
    expect(kdf(c, 2, key, input).map(toHex)).toEqual(expected.slice(0, 2));
    expect(kdf(c, 1, key, input).map(toHex)).toEqual(expected.slice(0, 1));
  });
});

describe('X25519 (RFC 7748)', () => {
  it('§5.2 scalar multiplication vector', () => {
    const k = hex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4');
    const u = hex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c');
    expect(toHex(c.dh(k, u)!)).toBe('c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552');
  });
  it('§6.1 Diffie-Hellman', () => {
    const a = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const b = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    expect(toHex(c.publicKey(a))).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(toHex(c.publicKey(b))).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(toHex(c.dh(a, c.publicKey(b))!)).toBe(shared);
    expect(toHex(c.dh(b, c.publicKey(a))!)).toBe(shared);
  });
  it('a low-order public key (all zeros) gives null, not a zero secret', () => {
    expect(c.dh(c.generatePrivateKey((n) => new Uint8Array(n).fill(9)), new Uint8Array(32))).toBeNull();
  });
  it('same public key as the stock `wg pubkey`, and clamped like `wg genkey`', () => {
    const priv = decodeKey('oJpZsEKe9u0U+7wLwRFHKsHpBLhyvUf+yvNWI0KrzGQ=')!;
    expect(encodeKey(c.publicKey(priv))).toBe('YCFs3Vf08Pa2RGKyU++XXiE6rUeVK6++lrhsU9Lk3Ws=');
    const k = c.generatePrivateKey((n) => new Uint8Array(n).fill(0xff));
    expect(k[0] & 7).toBe(0);
    expect(k[31] & 0x80).toBe(0);
    expect(k[31] & 0x40).toBe(0x40);
  });
});

describe('ChaCha20-Poly1305 (RFC 8439)', () => {
  const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
  const aad = hex('50515253c0c1c2c3c4c5c6c7');
  it('§2.8.2 AEAD vector (tag and ciphertext head)', () => {
    const out = chacha20poly1305(key, hex('070000004041424344454647'), aad).encrypt(LADIES);
    expect(toHex(out.subarray(0, 16))).toBe('d31a8d34648e60db7b86afbc53ef7ec2');
    expect(toHex(out.subarray(out.length - 16))).toBe('1ae10b594f09e26a7e902ecbd0600691');
  });
  it('WireGuard nonce layout: 32 zero bits then the little-endian 64-bit counter', () => {
    expect(toHex(counterNonce(0x0102030405060708n))).toBe('000000000807060504030201');
  });
  it('aeadSeal agrees with OpenSSL and aeadOpen inverts it; tampering fails', () => {
    const counter = 0x1234_5678_9abcn;
    const sealed = c.aeadSeal(key, counter, LADIES, aad);
    const ossl = createCipheriv('chacha20-poly1305', key, counterNonce(counter), { authTagLength: 16 });
    ossl.setAAD(aad);
    const ref = Buffer.concat([ossl.update(LADIES), ossl.final(), ossl.getAuthTag()]);
    expect(toHex(sealed)).toBe(ref.toString('hex'));
    expect(equalBytes(c.aeadOpen(key, counter, sealed, aad)!, LADIES)).toBe(true);
    sealed[5] ^= 1;
    expect(c.aeadOpen(key, counter, sealed, aad)).toBeNull();
    expect(c.aeadOpen(key, counter + 1n, c.aeadSeal(key, counter, LADIES, aad), aad)).toBeNull();
  });
});

describe('XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha §A.3.1)', () => {
  it('AEAD vector tag', () => {
    const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
    const nonce = hex('404142434445464748494a4b4c4d4e4f5051525354555657');
    const aad = hex('50515253c0c1c2c3c4c5c6c7');
    const out = c.xaeadSeal(key, nonce, LADIES, aad);
    expect(toHex(out.subarray(0, 16))).toBe('bd6d179d3e83d43b9576579493c0e939');
    expect(toHex(out.subarray(out.length - 16))).toBe('c0875924c1c7987947deafd8780acf49');
    expect(equalBytes(c.xaeadOpen(key, nonce, out, aad)!, LADIES)).toBe(true);
    out[0] ^= 1;
    expect(c.xaeadOpen(key, nonce, out, aad)).toBeNull();
  });
});

describe('equalBytes', () => {
  it('compares contents and lengths', () => {
    expect(equalBytes(hex('0102'), hex('0102'))).toBe(true);
    expect(equalBytes(hex('0102'), hex('0103'))).toBe(false);
    expect(equalBytes(hex('0102'), hex('010200'))).toBe(false);
  });
});
