/** Every TransportAead backend produces the reference bytes (RFC 8439 via node:crypto's OpenSSL) and rejects tampering. */
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { counterNonce } from '../../src/core/crypto.js';
import { createNobleTransportAead } from '../../src/core/transport-aead.js';
import { createNodeTransportAead } from '../../src/io/node-aead.js';
import { createNativeTransportAead } from '../../src/io/native-crypto.js';
import { messageType, parseInitiation, parseResponse, parseCookieReply } from '../../src/core/messages.js';

const nativeAead = createNativeTransportAead();
if (!nativeAead) throw new Error('the native addon is not built (npm run build:native)');
for (const aead of [createNobleTransportAead(), createNodeTransportAead(), nativeAead]) {
  describe(`TransportAead: ${aead.name}`, () => {
    it('seals a batch with consecutive counters (crossing 2^32) exactly as the reference, and opens it', () => {
      const key = new Uint8Array(randomBytes(32));
      const sizes = [0, 16, 64, 1408];
      const slot = 1500;
      const buf = new Uint8Array(sizes.length * slot);
      const offs = new Uint32Array(sizes.map((_, i) => i * slot));
      const lens = new Uint32Array(sizes);
      const plain = sizes.map((n) => new Uint8Array(randomBytes(n)));
      plain.forEach((p, i) => buf.set(p, offs[i]));
      const hi = 7;
      const lo = 0xfffffffe;
      aead.sealBatch(key, hi, lo, buf, offs, lens, sizes.length);
      for (let i = 0; i < sizes.length; i++) {
        const counter = (BigInt(hi) << 32n) + BigInt(lo) + BigInt(i);
        const c = createCipheriv('chacha20-poly1305', key, counterNonce(counter), { authTagLength: 16 });
        const ref = Buffer.concat([c.update(plain[i]), c.final(), c.getAuthTag()]);
        expect(Buffer.from(buf.subarray(offs[i], offs[i] + sizes[i] + 16)).equals(ref), `packet ${i}`).toBe(true);
      }
      const his = new Uint32Array(sizes.map((_, i) => (lo + i > 0xffffffff ? hi + 1 : hi)));
      const los = new Uint32Array(sizes.map((_, i) => (lo + i) >>> 0));
      const olens = new Uint32Array(sizes.map((n) => n + 16));
      buf[offs[2] + 3] ^= 0x40; // tamper with packet 2
      const ok = new Uint8Array(sizes.length);
      aead.openBatch(key, his, los, buf, offs, olens, sizes.length, ok);
      expect([...ok]).toEqual([1, 1, 0, 1]);
      for (const i of [0, 1, 3]) expect(Buffer.from(buf.subarray(offs[i], offs[i] + sizes[i])).equals(Buffer.from(plain[i]))).toBe(true);
    });
  });
}

describe('message parsers', () => {
  it('accept exact sizes only and never throw on garbage', () => {
    const init = new Uint8Array(148);
    init[0] = 1;
    expect(messageType(init)).toBe(1);
    expect(parseInitiation(init)?.senderIndex).toBe(0);
    expect(parseInitiation(init.subarray(0, 147))).toBeNull();
    const resp = new Uint8Array(92);
    resp[0] = 2;
    resp.set([1, 2, 3, 4], 8);
    expect(parseResponse(resp)?.receiverIndex).toBe(0x04030201);
    const cookie = new Uint8Array(64);
    cookie[0] = 3;
    expect(parseCookieReply(cookie)).not.toBeNull();
    cookie[1] = 1; // reserved bytes must be zero
    expect(parseCookieReply(cookie)).toBeNull();
    expect(messageType(new Uint8Array(31).fill(0).map((_, i) => (i === 0 ? 4 : 0)))).toBe(0); // transport shorter than header + tag
    for (let i = 0; i < 2000; i++) {
      const g = new Uint8Array(randomBytes(i % 200));
      expect(() => {
        messageType(g);
        parseInitiation(g);
        parseResponse(g);
        parseCookieReply(g);
      }).not.toThrow();
    }
  });
});
