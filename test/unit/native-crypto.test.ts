/**
 * The native crypto backends (native/aead.c, native/blake2s.c) against the pure-TS reference
 * (noble): identical bytes for every primitive on random inputs, the same accept/reject decisions
 * on tampered input, RFC vectors, and complete handshakes between a native and a noble engine.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { kdf, kdfFromHmac, nobleCrypto } from '../../src/core/crypto.js';
import { createNobleTransportAead } from '../../src/core/transport-aead.js';
import { Engine, type Sink } from '../../src/core/engine.js';
import type { Path } from '../../src/core/endpoint.js';
import { createNativeCrypto, createNativeTransportAead, nativeX25519Backend } from '../../src/io/native-crypto.js';
import { addonPath } from '../../src/io/native.js';

const rnd = (n: number) => new Uint8Array(randomBytes(n));
const hex = (b: Uint8Array | null) => (b ? Buffer.from(b).toString('hex') : null);
const native = createNativeCrypto()!;
const aead = createNativeTransportAead()!;

describe('native crypto is built', () => {
  it('the addon provides both backends', () => {
    expect(native).not.toBeNull();
    expect(aead).not.toBeNull();
    expect(['openssl-raw', 'openssl-evp']).toContain(nativeX25519Backend());
  });
});

describe('BLAKE2s, MAC, HMAC: native = noble', () => {
  it('RFC 7693 appendix B vector', () => {
    expect(hex(native.hash(new TextEncoder().encode('abc')))).toBe('508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  });
  it('hash over 0..4 parts of lengths around the 64-byte block edges', () => {
    const lens = [0, 1, 31, 32, 63, 64, 65, 127, 128, 129, 300];
    for (let t = 0; t < 400; t++) {
      const parts = Array.from({ length: t % 5 }, () => rnd(lens[Math.floor(Math.random() * lens.length)]));
      expect(hex(native.hash(...parts))).toBe(hex(nobleCrypto.hash(...parts)));
    }
  });
  it('keyed MAC (16 bytes) and HMAC for key lengths 0..100', () => {
    for (const kl of [0, 1, 16, 32]) {
      for (const il of [0, 1, 63, 64, 65, 116, 200]) {
        const k = rnd(kl);
        const x = rnd(il);
        if (kl > 0) expect(hex(native.mac(k, x))).toBe(hex(nobleCrypto.mac(k, x)));
        expect(hex(native.hmac(k, x))).toBe(hex(nobleCrypto.hmac(k, x)));
      }
    }
    for (const kl of [63, 64, 65, 100]) {
      const k = rnd(kl);
      const x = rnd(50);
      expect(hex(native.hmac(k, x))).toBe(hex(nobleCrypto.hmac(k, x)));
    }
  });
  it('rejects bad arguments with an error instead of crashing', () => {
    expect(() => native.mac(rnd(33), rnd(3))).toThrow(/blake2s/);
  });
  it('KDF1/2/3 in one native call = the whitepaper KDF built from noble HMAC', () => {
    expect(native.kdf).toBeTypeOf('function');
    for (const kl of [0, 32, 64, 65]) {
      for (const il of [0, 1, 32, 33, 64, 100]) {
        for (const n of [1, 2, 3] as const) {
          const k = rnd(kl);
          const x = rnd(il);
          const got = native.kdf!(n, k, x);
          const want = kdfFromHmac(nobleCrypto, n, k, x);
          expect(got.map(hex)).toEqual(want.map(hex));
          // and kdf() picks the one-call route for the native backend
          expect(kdf(native, n, k, x).map(hex)).toEqual(want.map(hex));
        }
      }
    }
  });
});

describe('X25519: native = noble', () => {
  it('RFC 7748 §5.2 vector and random key agreement', () => {
    const k = Buffer.from('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4', 'hex');
    const u = Buffer.from('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c', 'hex');
    expect(hex(native.dh(k, u))).toBe('c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552');
    for (let i = 0; i < 50; i++) {
      const a = nobleCrypto.generatePrivateKey(rnd);
      const b = rnd(32); // unclamped scalars too: X25519 clamps internally
      const pa = native.publicKey(a);
      expect(hex(pa)).toBe(hex(nobleCrypto.publicKey(a)));
      const pb = nobleCrypto.publicKey(b);
      expect(hex(native.dh(a, pb))).toBe(hex(nobleCrypto.dh(a, pb)));
      expect(hex(native.dh(b, pa))).toBe(hex(native.dh(a, pb)));
    }
  });
  it('a low-order point gives null, as the reference does', () => {
    const a = nobleCrypto.generatePrivateKey(rnd);
    for (const point of [new Uint8Array(32), Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0))]) {
      expect(native.dh(a, point)).toBeNull();
      expect(nobleCrypto.dh(a, point)).toBeNull();
    }
  });
  it('the EVP fallback route gives the same bytes as the raw route', () => {
    const a = nobleCrypto.generatePrivateKey(rnd);
    const b = nobleCrypto.generatePrivateKey(rnd);
    const script = `const m=require(${JSON.stringify(addonPath())});const o=Buffer.alloc(32),p=Buffer.alloc(32);
      const a=Buffer.from(process.argv[1],'hex'),b=Buffer.from(process.argv[2],'hex');
      m.x25519Base(p,b);const ok=m.x25519(o,a,p);console.log(m.x25519Backend(),ok,o.toString('hex'),m.x25519(o,a,Buffer.alloc(32)))`;
    const out = execFileSync(process.execPath, ['-e', script, hex(a)!, hex(b)!], { env: { ...process.env, KEYMESH_X25519_EVP: '1' } }).toString().trim();
    expect(out).toBe(`openssl-evp true ${hex(nobleCrypto.dh(a, nobleCrypto.publicKey(b)))} false`);
  });
});

describe('handshake AEAD: native = noble', () => {
  it('same bytes with additional data; same rejections', () => {
    for (const n of [0, 1, 32, 200]) {
      const k = rnd(32);
      const x = rnd(n);
      const ad = rnd(32);
      const c = native.aeadSeal(k, 5n, x, ad);
      expect(hex(c)).toBe(hex(nobleCrypto.aeadSeal(k, 5n, x, ad)));
      expect(hex(native.aeadOpen(k, 5n, c, ad))).toBe(hex(x));
      const bad = c.slice();
      bad[Math.floor(Math.random() * bad.length)] ^= 1;
      expect(native.aeadOpen(k, 5n, bad, ad)).toBeNull();
      expect(nobleCrypto.aeadOpen(k, 5n, bad, ad)).toBeNull();
      expect(native.aeadOpen(k, 6n, c, ad)).toBeNull();
      expect(native.aeadOpen(k, 5n, c, rnd(32))).toBeNull();
      expect(native.aeadOpen(k, 5n, c.subarray(0, 15), ad)).toBeNull();
    }
  });
});

describe('transport AEAD: native batch = noble batch', () => {
  it('identical sealed bytes and identical accept/reject on 2000 random packets, tampered or not', () => {
    const noble = createNobleTransportAead();
    const slot = 1600;
    const count = 64;
    for (let round = 0; round < 32; round++) {
      const key = rnd(32);
      const lens = new Uint32Array(count).map(() => Math.floor(Math.random() * 1440));
      const offs = new Uint32Array(count).map((_, i) => i * slot + (i % 7));
      const a = rnd(count * slot);
      const b = a.slice();
      const hi = round;
      const lo = 0xffffffff - 20 + round;
      aead.sealBatch(key, hi, lo, a, offs, lens, count);
      noble.sealBatch(key, hi, lo, b, offs, lens, count);
      expect(hex(a)).toBe(hex(b)); // bytes outside the packets are untouched by both
      // tamper with some, reuse wrong counters for others, truncate a few below the tag size
      const his = new Uint32Array(count);
      const los = new Uint32Array(count);
      const olens = new Uint32Array(count);
      for (let i = 0; i < count; i++) {
        const c = BigInt(hi) * 2n ** 32n + BigInt(lo) + BigInt(i);
        his[i] = Number(c >> 32n);
        los[i] = Number(c & 0xffffffffn);
        olens[i] = lens[i] + 16;
        const r = Math.random();
        if (r < 0.15) a[offs[i] + Math.floor(Math.random() * olens[i])] ^= 1 << Math.floor(Math.random() * 8);
        else if (r < 0.25) los[i] ^= 1;
        else if (r < 0.3) olens[i] = Math.floor(Math.random() * 16);
      }
      b.set(a);
      const okA = new Uint8Array(count);
      const okB = new Uint8Array(count);
      aead.openBatch(key, his, los, a, offs, olens, count, okA);
      noble.openBatch(key, his, los, b, offs, olens, count, okB);
      expect([...okA]).toEqual([...okB]);
      for (let i = 0; i < count; i++) {
        if (okA[i]) expect(hex(a.subarray(offs[i], offs[i] + olens[i] - 16))).toBe(hex(b.subarray(offs[i], offs[i] + olens[i] - 16)));
      }
    }
  });
  it('refuses a packet whose tag would fall outside the buffer, before touching anything', () => {
    const buf = rnd(100);
    const copy = buf.slice();
    expect(() => aead.sealBatch(rnd(32), 0, 0, buf, new Uint32Array([0, 50]), new Uint32Array([10, 40]), 2)).toThrow(/outside the buffer/);
    expect(hex(buf)).toBe(hex(copy));
  });
});

describe('engines with different backends interoperate', () => {
  it('native-crypto engine ↔ noble engine: handshake both ways and transport data', () => {
    const mk = (id: string): Path => ({ id, hostId: id, cookieBytes: new TextEncoder().encode(id) });
    const pa = mk('a');
    const pb = mk('b');
    const ka = nobleCrypto.generatePrivateKey(rnd);
    const kb = nobleCrypto.generatePrivateKey(rnd);
    const toA: Uint8Array[] = [];
    const toB: Uint8Array[] = [];
    const gotA: string[] = [];
    const gotB: string[] = [];
    const sink = (out: Uint8Array[], got: string[]): Sink => ({
      send: (_p, b, o, n) => out.push(b.slice(o, o + n)),
      writeTun: (b, o, n) => got.push(hex(b.subarray(o, o + n))!),
      event: () => undefined,
    });
    const A = new Engine(sink(toB, gotA), { privateKey: ka, random: rnd, crypto: native, aead });
    const B = new Engine(sink(toA, gotB), { privateKey: kb, random: rnd });
    const now = 1000;
    A.upsertPeer({ publicKey: nobleCrypto.publicKey(kb), endpoint: pb, allowedIps: [{ addr: new Uint8Array([10, 0, 0, 2]), cidr: 32 }] }, now);
    B.upsertPeer({ publicKey: native.publicKey(ka), endpoint: pa, allowedIps: [{ addr: new Uint8Array([10, 0, 0, 1]), cidr: 32 }] }, now);
    const packet = (src: number, dst: number) => {
      const p = rnd(100);
      p[0] = 0x45;
      p[2] = 0;
      p[3] = 100;
      p.set([10, 0, 0, src], 12);
      p.set([10, 0, 0, dst], 16);
      return p;
    };
    const pump = () => {
      for (let i = 0; i < 6; i++) {
        while (toB.length) B.handleDatagram(toB.shift()!, pa, now);
        while (toA.length) A.handleDatagram(toA.shift()!, pb, now);
      }
    };
    const p1 = packet(1, 2);
    A.handleTunPacket(p1, now); // A (native) initiates
    pump();
    expect(gotB).toContain(hex(p1));
    const p2 = packet(2, 1);
    B.handleTunPacket(p2, now);
    pump();
    expect(gotA).toContain(hex(p2));
  });
});
