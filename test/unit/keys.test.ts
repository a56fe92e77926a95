/**
 * Key text formats against stock wireguard-tools: keys `wg genkey`/`wg genpsk` print decode and
 * encode back byte for byte, our X25519 public key matches `wg pubkey`, and decodeKey refuses
 * exactly what `wg pubkey` refuses. decodeKey is also checked against a naive twin (decode
 * leniently, re-encode, compare) on random and edge-case inputs.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';
import { decodeKey, encodeKey, hexToKey, isZeroKey, keyToHex } from '../../src/config/keys.js';

const haveWg = spawnSync('wg', ['--version']).status === 0;

function wg(args: string[], input?: string): { ok: boolean; out: string } {
  const r = spawnSync('wg', args, { input, encoding: 'utf8' });
  return { ok: r.status === 0, out: r.stdout.trim() };
}

/** The naive twin: a key is text that Node decodes to 32 bytes and that re-encodes to itself. */
function naiveDecode(text: string): Uint8Array | null {
  if (text.length !== 44) return null;
  const b = Buffer.from(text, 'base64');
  return b.length === 32 && b.toString('base64') === text ? new Uint8Array(b) : null;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

describe('base64 keys', () => {
  it('round-trip 32 random bytes through 44 characters ending in "="', () => {
    for (let i = 0; i < 200; i++) {
      const k = new Uint8Array(randomBytes(32));
      const text = encodeKey(k);
      expect(text).toHaveLength(44);
      expect(text.endsWith('=')).toBe(true);
      expect(decodeKey(text)).toEqual(k);
    }
  });

  it('encodes a subarray by its own bytes, not its backing buffer', () => {
    const big = new Uint8Array(64).map((_, i) => i);
    const k = big.subarray(16, 48);
    expect(decodeKey(encodeKey(k))).toEqual(new Uint8Array(k));
  });

  it('rejects wrong lengths, bad characters and non-canonical spellings', () => {
    const good = encodeKey(new Uint8Array(randomBytes(32)));
    expect(decodeKey(good.slice(1))).toBeNull(); // 43
    expect(decodeKey(good + 'A')).toBeNull(); // 45
    expect(decodeKey(good.slice(0, 43) + 'A')).toBeNull(); // no padding
    expect(decodeKey(`${good.slice(0, 42)}==`)).toBeNull();
    expect(decodeKey(` ${good.slice(1)}`)).toBeNull();
    expect(decodeKey(`-${good.slice(1)}`)).toBeNull(); // base64url is not accepted
    expect(decodeKey(`_${good.slice(1)}`)).toBeNull();
    expect(decodeKey(`!${good.slice(1)}`)).toBeNull();
    expect(decodeKey('')).toBeNull();
    // the 43rd character carries 4 key bits and 2 bits that must be zero
    expect(decodeKey(`${good.slice(0, 42)}B=`)).toBeNull();
    expect(decodeKey(`${good.slice(0, 42)}A=`)).not.toBeNull();
  });

  it('agrees with the naive twin on every last character and on random text', () => {
    const base = encodeKey(new Uint8Array(randomBytes(32)));
    for (const c of B64 + '=-_ .') {
      const t = `${base.slice(0, 42)}${c}=`;
      expect(decodeKey(t), t).toEqual(naiveDecode(t));
    }
    for (let i = 0; i < 2000; i++) {
      const len = 42 + (i % 4);
      let t = '';
      for (let j = 0; j < len; j++) t += (B64 + '=')[randomBytes(1)[0] % 65];
      expect(decodeKey(t), t).toEqual(naiveDecode(t));
    }
  });

  it('refuses misuse: encoding something that is not 32 bytes throws a clear error', () => {
    expect(() => encodeKey(new Uint8Array(31))).toThrow('encodeKey: expected Uint8Array of length 32, got length=31');
    expect(() => keyToHex(new Uint8Array(33))).toThrow('keyToHex: expected Uint8Array of length 32, got length=33');
  });
});

describe('hex keys (UAPI)', () => {
  it('round-trip as 64 lowercase digits; either case is read', () => {
    const k = new Uint8Array(randomBytes(32));
    const h = keyToHex(k);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(hexToKey(h)).toEqual(k);
    expect(hexToKey(h.toUpperCase())).toEqual(k);
  });

  it('rejects wrong lengths and non-hex digits', () => {
    const h = 'ab'.repeat(32);
    expect(hexToKey(h.slice(1))).toBeNull();
    expect(hexToKey(h + 'a')).toBeNull();
    expect(hexToKey('zz'.repeat(32))).toBeNull();
    expect(hexToKey(`${h.slice(0, 63)} `)).toBeNull();
    expect(hexToKey('')).toBeNull();
  });

  it('isZeroKey', () => {
    expect(isZeroKey(new Uint8Array(32))).toBe(true);
    const k = new Uint8Array(32);
    k[31] = 1;
    expect(isZeroKey(k)).toBe(false);
  });
});

describe.skipIf(!haveWg)('against stock wg', () => {
  it('wg genkey / wg genpsk output decodes and re-encodes identically', () => {
    for (const cmd of ['genkey', 'genpsk']) {
      const { ok, out } = wg([cmd]);
      expect(ok).toBe(true);
      const k = decodeKey(out);
      expect(k).not.toBeNull();
      expect(encodeKey(k!)).toBe(out);
    }
  });

  it('our X25519 public key of a wg genkey key is what wg pubkey prints', () => {
    for (let i = 0; i < 5; i++) {
      const priv = wg(['genkey']).out;
      const pub = wg(['pubkey'], priv + '\n').out;
      expect(encodeKey(x25519.getPublicKey(decodeKey(priv)!))).toBe(pub);
    }
  });

  it('decodeKey refuses exactly what wg pubkey refuses', () => {
    const good = wg(['genkey']).out;
    const candidates = [
      good,
      good.slice(1),
      good + 'A',
      good.slice(0, 43) + 'A',
      `${good.slice(0, 42)}B=`,
      `${good.slice(0, 42)}E=`,
      `${good.slice(0, 42)}==`,
      `*${good.slice(1)}`,
      `-${good.slice(1)}`,
    ];
    for (const c of candidates) {
      expect(decodeKey(c) !== null, c).toBe(wg(['pubkey'], c + '\n').ok);
    }
  });
});

describe('publicKeyOf (OpenSSL) against noble, its reference', () => {
  it('gives the same public key for 200 random private keys, clamped or not', async () => {
    const { publicKeyOf } = await import('../../src/config/keys.js');
    const { nobleCrypto } = await import('../../src/core/crypto.js');
    const { randomBytes } = await import('node:crypto');
    for (let i = 0; i < 200; i++) {
      const k = new Uint8Array(randomBytes(32));
      expect(Buffer.from(publicKeyOf(k)).toString('hex')).toBe(Buffer.from(nobleCrypto.publicKey(k)).toString('hex'));
    }
    expect(() => publicKeyOf(new Uint8Array(31))).toThrow(/length=31/);
  });
});
