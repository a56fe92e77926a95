/**
 * Transport AEAD through Node's built-in OpenSSL (node:crypto 'chacha20-poly1305'), behind the
 * core's TransportAead seam. It produces the same bytes as the noble reference (tested) and is
 * several times faster per packet; the runtime uses it by default. A batched native backend is
 * the performance issue's job.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { TransportAead } from '../core/transport-aead.js';

function writeNonce(nonce: Buffer, hi: number, lo: number): void {
  nonce.writeUInt32LE(0, 0);
  nonce.writeUInt32LE(lo >>> 0, 4);
  nonce.writeUInt32LE(hi >>> 0, 8);
}

export function createNodeTransportAead(): TransportAead {
  const nonce = Buffer.alloc(12);
  return {
    name: 'openssl (node:crypto)',
    sealBatch(key, hi, lo, buf, offs, lens, count) {
      const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
      for (let i = 0; i < count; i++) {
        writeNonce(nonce, hi, lo);
        const o = offs[i];
        const n = lens[i];
        const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
        const out = c.update(b.subarray(o, o + n));
        c.final();
        out.copy(b, o);
        c.getAuthTag().copy(b, o + n);
        lo = (lo + 1) >>> 0;
        if (lo === 0) hi = (hi + 1) >>> 0;
      }
    },
    openBatch(key, his, los, buf, offs, lens, count, ok) {
      const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
      for (let i = 0; i < count; i++) {
        writeNonce(nonce, his[i], los[i]);
        const o = offs[i];
        const n = lens[i] - 16;
        try {
          const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
          d.setAuthTag(b.subarray(o + n, o + n + 16));
          const out = d.update(b.subarray(o, o + n));
          d.final();
          out.copy(b, o);
          ok[i] = 1;
        } catch {
          ok[i] = 0;
        }
      }
    },
  };
}
