/**
 * Known-answer tests for the primitives of src/core/crypto.ts (whitepaper §5.4).
 *
 * Sources of the expected values:
 *   BLAKE2s-256          RFC 7693 appendix B ("abc"); the BLAKE2 reference KAT (blake2s-kat.txt:
 *                        key 00..1f, input 00..n−1) for the keyed hash at 32 bytes
 *   MAC (keyed, 16 B)    computed independently with Python's hashlib.blake2s(digest_size=16)
 *   HMAC, KDF1/2/3       computed independently with Python's hmac + hashlib.blake2s
 *   X25519               RFC 7748 §5.2 (both vectors, iterated ×1 and ×1000) and §6.1
 *   ChaCha20-Poly1305    RFC 8439 §2.8.2 and §A.5 (the §A.5 nonce 00000000‖0102030405060708 is
 *                        exactly WireGuard's layout 32 zero bits ‖ LE64(counter) for counter
 *                        0x0807060504030201, so it tests aeadSeal/aeadOpen end to end)
 *   XChaCha20-Poly1305   draft-irtf-cfrg-xchacha-03 §A.3.1
 *   wg compatibility     `wg pubkey` (wireguard-tools) run once on the private keys below
 */
import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { CONSTRUCTION, IDENTIFIER } from '../../src/core/constants.js';
import { counterNonce, equalBytes, kdf, nobleCrypto as c } from '../../src/core/crypto.js';
import { decodeKey, encodeKey } from '../../src/config/keys.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const utf8 = (s: string) => new TextEncoder().encode(s);
const seq = (n: number) => new Uint8Array(n).map((_, i) => i);
const LADIES = utf8("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");

describe('BLAKE2s (HASH, MAC)', () => {
  it('RFC 7693 appendix B: BLAKE2s-256("abc"); and of the empty string', () => {
    expect(toHex(c.hash(utf8('abc')))).toBe('508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
    expect(toHex(c.hash(new Uint8Array(0)))).toBe('69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9');
  });

  it('HASH of several parts equals HASH of their concatenation', () => {
    expect(toHex(c.hash(hex('6162'), hex('63')))).toBe(toHex(c.hash(hex('616263'))));
    expect(toHex(c.hash(new Uint8Array(0), seq(64), seq(1)))).toBe(toHex(c.hash(new Uint8Array([...seq(64), 0]))));
  });

  it("WireGuard's initial chaining key and hash: HASH(CONSTRUCTION), HASH(C ‖ IDENTIFIER)", () => {
    const ck = c.hash(utf8(CONSTRUCTION));
    expect(toHex(ck)).toBe('60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36');
    expect(toHex(c.hash(ck, utf8(IDENTIFIER)))).toBe('2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3');
  });

  // The keyed primitive under MAC, at the reference KAT's 32-byte output (c.mac truncates the
  // digest length to 16, which changes the parameter block, so it is checked separately below).
  it('keyed BLAKE2s-256: reference KAT, key 00..1f, input 00..n−1', () => {
    const kat: Array<[number, string]> = [
      [0, '48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49'],
      [1, '40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1'],
      [64, '8975b0577fd35566d750b362b0897a26c399136df07bababbde6203ff2954ed4'],
      [255, '3fb735061abc519dfe979e54c1ee5bfad0a9d858b3315bad34bde999efd724dd'],
    ];
    for (const [n, want] of kat) expect(toHex(blake2s(seq(n), { key: seq(32) })), `length ${n}`).toBe(want);
  });

  it('MAC = keyed BLAKE2s with a 16-byte digest (hashlib.blake2s(key=00..1f, digest_size=16))', () => {
    const kat: Array<[Uint8Array, string]> = [
      [seq(0), '9536f9b267655743dee97b8a670f9f53'],
      [seq(1), '13bacfb85b48a1223c595f8c1e7e82cb'],
      [seq(64), 'f1efa90d2547036841ecd3627fafbc36'],
      [seq(255), 'cd075928ab7e6883e697fe7fd3ac43ee'],
      [utf8('hello'), '1f946dc212a39570bc06fd378517a91e'],
    ];
    for (const [input, want] of kat) expect(toHex(c.mac(seq(32), input)), `length ${input.length}`).toBe(want);
  });
});

describe('HMAC-BLAKE2s and KDF1/2/3 (checked against Python hmac/hashlib)', () => {
  const key = new Uint8Array(32).fill(7);
  const input = utf8('keymesh kdf input');

  it('HMAC', () => {
    expect(toHex(c.hmac(key, input))).toBe('79bf7decbcfbb07576d3b69c82e55164b3b8183ffa7c4c589a711cbe8f077206');
    expect(toHex(c.hmac(key, new Uint8Array(0)))).toBe('5cbe85a798020b38a45f2bc35fd30b52d9d3d0756105c7c75c8c128715226874');
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

  it('KDF2 with empty input (as the transport keys are derived: KDF2(C, ε))', () => {
    expect(kdf(c, 2, key, new Uint8Array(0)).map(toHex)).toEqual([
      'a7a226bff5d9ecd719bfe678c1181dcd52526d547a166270e9cf5ed100d2169a',
      '616371cc178d7edfc2bbe3f9d527d54f7227880beedb108492793ddb5c6ab731',
    ]);
  });
});

describe('X25519 (RFC 7748)', () => {
  it('§5.2 scalar multiplication vectors', () => {
    expect(
      toHex(c.dh(hex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'), hex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c'))!),
    ).toBe('c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552');
    expect(
      toHex(c.dh(hex('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d'), hex('e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493'))!),
    ).toBe('95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957');
  });

  it('§5.2 iterated: k = u = 9, then (k, u) ← (X25519(k, u), k), after 1 and 1000 rounds', () => {
    let k: Uint8Array = new Uint8Array(32);
    k[0] = 9;
    let u: Uint8Array = k.slice();
    for (let i = 1; i <= 1000; i++) {
      const next = c.dh(k, u)!;
      u = k;
      k = next;
      if (i === 1) expect(toHex(k)).toBe('422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079');
    }
    expect(toHex(k)).toBe('684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51');
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

  it('a low-order public key gives null, not an all-zero secret', () => {
    const priv = c.generatePrivateKey((n) => new Uint8Array(n).fill(9));
    expect(c.dh(priv, new Uint8Array(32))).toBeNull(); // u = 0
    const one = new Uint8Array(32);
    one[0] = 1;
    expect(c.dh(priv, one)).toBeNull(); // u = 1, order 1
  });

  it('same public key as the stock `wg pubkey`, and clamped like `wg genkey`', () => {
    // `echo oJpZsEKe9u0U+7wLwRFHKsHpBLhyvUf+yvNWI0KrzGQ= | wg pubkey`
    const priv = decodeKey('oJpZsEKe9u0U+7wLwRFHKsHpBLhyvUf+yvNWI0KrzGQ=')!;
    expect(encodeKey(c.publicKey(priv))).toBe('YCFs3Vf08Pa2RGKyU++XXiE6rUeVK6++lrhsU9Lk3Ws=');
    // `echo dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo= | wg pubkey` (RFC 7748 §6.1 Alice) gives
    // hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=, her public key from the RFC.
    expect(encodeKey(c.publicKey(decodeKey('dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=')!))).toBe('hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=');
    const k = c.generatePrivateKey((n) => new Uint8Array(n).fill(0xff));
    expect(k[0] & 7).toBe(0);
    expect(k[31] & 0x80).toBe(0);
    expect(k[31] & 0x40).toBe(0x40);
  });
});

describe('ChaCha20-Poly1305 (RFC 8439)', () => {
  it('§2.8.2 AEAD vector, full ciphertext and tag (noble primitive, RFC nonce)', () => {
    const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
    const aad = hex('50515253c0c1c2c3c4c5c6c7');
    const out = chacha20poly1305(key, hex('070000004041424344454647'), aad).encrypt(LADIES);
    expect(toHex(out)).toBe(
      'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b' +
        '1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc' +
        '3ff4def08e4b7a9de576d26586cec64b6116' +
        '1ae10b594f09e26a7e902ecbd0600691',
    );
  });

  it('WireGuard nonce layout: 32 zero bits then the little-endian 64-bit counter', () => {
    expect(toHex(counterNonce(0x0102030405060708n))).toBe('000000000807060504030201');
    expect(toHex(counterNonce(0n))).toBe('000000000000000000000000');
    expect(toHex(counterNonce(2n ** 64n - 2n ** 13n - 2n))).toBe('00000000fedfffffffffffff');
  });

  // §A.5's nonce 00000000 01020304 05060708 is counterNonce(0x0807060504030201).
  const A5 = {
    key: hex('1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0'),
    counter: 0x0807060504030201n,
    aad: hex('f33388860000000000004e91'),
    plaintext: utf8(
      'Internet-Drafts are draft documents valid for a maximum of six months and may be updated, replaced, ' +
        'or obsoleted by other documents at any time. It is inappropriate to use Internet-Drafts as reference ' +
        'material or to cite them other than as /\u201cwork in progress./\u201d',
    ),
    sealed:
      '64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb24c6cfc18755d43eea09ee94e382d26b0' +
      'bdb7b73c321b0100d4f03b7f355894cf332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855' +
      '9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4b9166c767b804d46a59b5216cde7a4e9' +
      '9040c5a40433225ee282a1b0a06c523eaf4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a' +
      '0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a1049e617d91d361094fa68f0ff77987130' +
      '305beaba2eda04df997b714d6c6f2c29a6ad5cb4022b02709b' +
      'eead9d67890cbb22392336fea1851f38',
  };

  it('§A.5 vector through aeadSeal/aeadOpen with WireGuard counter nonces', () => {
    expect(toHex(counterNonce(A5.counter))).toBe('000000000102030405060708');
    expect(toHex(c.aeadSeal(A5.key, A5.counter, A5.plaintext, A5.aad))).toBe(A5.sealed);
    expect(equalBytes(c.aeadOpen(A5.key, A5.counter, hex(A5.sealed), A5.aad)!, A5.plaintext)).toBe(true);
  });

  it('aeadOpen returns null on a flipped bit, a wrong counter, wrong AAD, or a truncated tag', () => {
    const sealed = hex(A5.sealed);
    for (const i of [0, 100, sealed.length - 1]) {
      const bad = sealed.slice();
      bad[i] ^= 1;
      expect(c.aeadOpen(A5.key, A5.counter, bad, A5.aad)).toBeNull();
    }
    expect(c.aeadOpen(A5.key, A5.counter + 1n, sealed, A5.aad)).toBeNull();
    expect(c.aeadOpen(A5.key, A5.counter, sealed, new Uint8Array(0))).toBeNull();
    expect(c.aeadOpen(A5.key, A5.counter, sealed.subarray(0, 15), A5.aad)).toBeNull();
  });

  it('aeadSeal agrees with OpenSSL for a keepalive (empty plaintext) and an odd length', () => {
    for (const [counter, pt] of [
      [0n, new Uint8Array(0)],
      [0x1234_5678_9abcn, LADIES],
    ] as const) {
      const ossl = createCipheriv('chacha20-poly1305', A5.key, counterNonce(counter), { authTagLength: 16 });
      const ref = Buffer.concat([ossl.update(pt), ossl.final(), ossl.getAuthTag()]);
      expect(toHex(c.aeadSeal(A5.key, counter, pt, new Uint8Array(0)))).toBe(ref.toString('hex'));
    }
  });
});

describe('XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03 §A.3.1)', () => {
  it('AEAD vector, full ciphertext and tag; opens; tampering fails', () => {
    const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
    const nonce = hex('404142434445464748494a4b4c4d4e4f5051525354555657');
    const aad = hex('50515253c0c1c2c3c4c5c6c7');
    const out = c.xaeadSeal(key, nonce, LADIES, aad);
    expect(toHex(out)).toBe(
      'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39' +
        'ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9' +
        '21f9664c97637da9768812f615c68b13b52e' +
        'c0875924c1c7987947deafd8780acf49',
    );
    expect(equalBytes(c.xaeadOpen(key, nonce, out, aad)!, LADIES)).toBe(true);
    out[0] ^= 1;
    expect(c.xaeadOpen(key, nonce, out, aad)).toBeNull();
  });
});

describe('equalBytes', () => {
  it('compares contents and lengths', () => {
    expect(equalBytes(hex('0102'), hex('0102'))).toBe(true);
    expect(equalBytes(hex('0102'), hex('0103'))).toBe(false);
    expect(equalBytes(hex('8102'), hex('0102'))).toBe(false);
    expect(equalBytes(hex('0102'), hex('010200'))).toBe(false);
    expect(equalBytes(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
});
