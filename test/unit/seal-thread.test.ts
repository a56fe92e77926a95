/**
 * The KEYMESH_SEAL_THREAD experiment (native/seal-thread.c, src/io/seal-thread.ts): what the
 * thread seals and sends is byte for byte what the synchronous path (aeadSealBatch, then
 * udpSendBatch[Gso]) produces for the same jobs, it opens with the noble reference, units go out
 * in submit order, and the thread stops cleanly.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import * as native from '../../src/io/native.js';
import { createNativeTransportAead } from '../../src/io/native-crypto.js';
import { DeferredTransportAead, SealRecord } from '../../src/io/seal-thread.js';

const rnd = (n: number) => new Uint8Array(randomBytes(n));
const HDR = 16;
const SLOT = 2048;
const BATCH = 64;
const sync = createNativeTransportAead()!;

function nonceOf(hi: number, lo: number): Uint8Array {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setUint32(4, lo >>> 0, true);
  new DataView(n.buffer).setUint32(8, hi >>> 0, true);
  return n;
}

/** A batch as the engine leaves it: packet i at slot i, header room before it, padded length. */
function makeBatch(count: number): { buf: Uint8Array; offs: Uint32Array; lens: Uint32Array } {
  const buf = new Uint8Array(count * SLOT + HDR);
  const offs = new Uint32Array(count);
  const lens = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    offs[i] = i * SLOT + HDR;
    lens[i] = 16 * (1 + Math.floor(Math.random() * 88)); // padded: a multiple of 16, up to 1408
    buf.set(rnd(lens[i]), offs[i]);
    buf.set(rnd(HDR), offs[i] - HDR); // stands for the transport header
  }
  return { buf, offs, lens };
}

/** Receives on a plain UDP socket (no GRO), copying each datagram out. */
async function receive(fd: number, want: number): Promise<Uint8Array[]> {
  const buf = new Uint8Array(BATCH * SLOT);
  const lens = new Uint32Array(BATCH);
  const out: Uint8Array[] = [];
  const deadline = Date.now() + 5000;
  while (out.length < want && Date.now() < deadline) {
    const n = native.udpRecvBatch(fd, buf, SLOT, lens, new Uint8Array(BATCH * 16), new Uint16Array(BATCH), BATCH);
    for (let i = 0; i < n; i++) out.push(buf.slice(i * SLOT, i * SLOT + lens[i]));
    if (n === 0) await new Promise((r) => setTimeout(r, 2));
  }
  return out;
}

describe('seal thread', () => {
  let tx: native.UdpHandle;
  let rx: native.UdpHandle;
  const state = new Int32Array(new SharedArrayBuffer(64));

  beforeAll(() => {
    expect(native.hasSealThread()).toBe(true);
    tx = native.udpOpen(0);
    rx = native.udpOpen(0);
    native.sealThreadStart(state);
  });
  afterAll(() => {
    native.sealThreadStop();
    native.closeFd(tx.fd);
    native.closeFd(rx.fd);
  });

  /** Record `peers` jobs over one batch through DeferredTransportAead, as the engine would. */
  function record(d: DeferredTransportAead, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, keys: Uint8Array[], starts: Array<[number, number]>): void {
    const per = Math.ceil(offs.length / keys.length);
    for (let j = 0; j < keys.length; j++) {
      const a = j * per;
      const b = Math.min(offs.length, a + per);
      if (b > a) d.sealBatch(keys[j], starts[j][0], starts[j][1], buf, offs.subarray(a, b), lens.subarray(a, b), b - a);
    }
  }

  function queue(buf: Uint8Array, offs: Uint32Array, lens: Uint32Array): {
    offs: Uint32Array; lens: Uint32Array; addrs: Uint8Array; ports: Uint16Array; locals: Uint8Array; ifx: Uint32Array;
  } {
    const n = offs.length;
    const q = { offs: new Uint32Array(n), lens: new Uint32Array(n), addrs: new Uint8Array(n * 16), ports: new Uint16Array(n), locals: new Uint8Array(n * 16), ifx: new Uint32Array(n) };
    for (let i = 0; i < n; i++) {
      q.offs[i] = offs[i] - HDR;
      q.lens[i] = HDR + lens[i] + 16;
      q.addrs.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1], i * 16);
      q.ports[i] = rx.port;
    }
    return q;
  }

  for (const gso of [0, 1]) {
    it(`sends exactly the synchronous path's bytes, which open with noble (gso=${gso})`, async () => {
      const n = 48;
      const { buf, offs, lens } = makeBatch(n);
      const ref = buf.slice();
      const keys = [rnd(32), rnd(32), rnd(32)];
      const starts: Array<[number, number]> = [[0, 0xfffffff0], [7, 123], [0, 0]]; // the first crosses a 2^32 boundary
      // synchronous reference: the native backend, sealed at once
      record({ sealBatch: sync.sealBatch } as DeferredTransportAead, ref, offs, lens, keys, starts);
      // deferred: recorded, nothing sealed yet
      const rec = new SealRecord(BATCH, BATCH);
      const d = new DeferredTransportAead(sync);
      d.target = buf;
      d.record = rec;
      const before = buf.slice();
      record(d, buf, offs, lens, keys, starts);
      expect(Buffer.compare(buf, before)).toBe(0);
      expect(rec.jobs).toBe(3);
      const q = queue(buf, offs, lens);
      if (gso) native.udpOffload(tx.fd);
      native.sealThreadSubmit(0, tx.fd, gso, buf, rec.keys, rec.his, rec.los, rec.jobCounts, rec.jobs, rec.sealOffs, rec.sealLens, q.offs, q.lens, q.addrs, q.ports, q.locals, q.ifx, n);
      native.sealThreadWait(0);
      expect(Atomics.load(state, 0)).toBe(0);
      expect(Buffer.compare(buf, ref)).toBe(0); // sealed in place, identical to aeadSealBatch
      expect(rec.keys.subarray(0, 96).every((x) => x === 0)).toBe(true); // key copies wiped
      const got = await receive(rx.fd, n);
      expect(got.length).toBe(n);
      const per = Math.ceil(n / keys.length);
      for (let i = 0; i < n; i++) {
        expect(Buffer.from(got[i]).equals(Buffer.from(ref.subarray(q.offs[i], q.offs[i] + q.lens[i])))).toBe(true);
        const j = Math.floor(i / per);
        let lo = starts[j][1] + (i - j * per);
        let hi = starts[j][0];
        if (lo > 0xffffffff) (lo -= 2 ** 32), hi++;
        const plain = chacha20poly1305(keys[j], nonceOf(hi, lo)).decrypt(got[i].subarray(HDR));
        expect(Buffer.from(plain).equals(Buffer.from(before.subarray(offs[i], offs[i] + lens[i])))).toBe(true);
      }
    });
  }

  it('sealPending seals what was recorded, like the synchronous backend', () => {
    const { buf, offs, lens } = makeBatch(10);
    const ref = buf.slice();
    const key = rnd(32);
    sync.sealBatch(key, 0, 5, ref, offs, lens, 10);
    const d = new DeferredTransportAead(sync);
    d.target = buf;
    d.record = new SealRecord(4, 64);
    d.sealBatch(key, 0, 5, buf, offs, lens, 10);
    d.sealPending();
    expect(Buffer.compare(buf, ref)).toBe(0);
    expect(d.record.jobs).toBe(0);
    // other buffers, and a full record, are sealed at once
    const other = makeBatch(3);
    const otherRef = other.buf.slice();
    sync.sealBatch(key, 1, 2, otherRef, other.offs, other.lens, 3);
    d.sealBatch(key, 1, 2, other.buf, other.offs, other.lens, 3);
    expect(Buffer.compare(other.buf, otherRef)).toBe(0);
  });

  it('two sets alternate: 200 units arrive complete and in order', async () => {
    const sets = [0, 1].map(() => ({ ...makeBatch(8), rec: new SealRecord(4, 64) }));
    const key = rnd(32);
    let counter = 0;
    const seen: number[] = [];
    for (let u = 0; u < 200; u++) {
      const s = u & 1;
      const set = sets[s];
      if (Atomics.load(state, s) !== 0) native.sealThreadWait(s);
      for (let i = 0; i < 8; i++) {
        set.buf.fill(0, set.offs[i], set.offs[i] + set.lens[i]);
        new DataView(set.buf.buffer).setUint32(set.offs[i], counter + i, true); // plaintext carries its counter
      }
      set.rec.clear();
      const d = new DeferredTransportAead(sync);
      d.target = set.buf;
      d.record = set.rec;
      d.sealBatch(key, 0, counter, set.buf, set.offs, set.lens, 8);
      const q = queue(set.buf, set.offs, set.lens);
      native.sealThreadSubmit(s, tx.fd, 1, set.buf, set.rec.keys, set.rec.his, set.rec.los, set.rec.jobCounts, set.rec.jobs, set.rec.sealOffs, set.rec.sealLens, q.offs, q.lens, q.addrs, q.ports, q.locals, q.ifx, 8);
      counter += 8;
      if (u % 8 === 7) {
        native.sealThreadWait(-1);
        for (const g of await receive(rx.fd, 64)) {
          // decrypts only with the next counter in sequence: a reordered datagram would throw
          const plain = chacha20poly1305(key, nonceOf(0, seen.length)).decrypt(g.subarray(HDR));
          seen.push(new DataView(plain.buffer, plain.byteOffset).getUint32(0, true));
        }
      }
    }
    expect(seen.length).toBe(1600);
    expect(seen.every((c, i) => c === i)).toBe(true);
    const st = native.sealThreadStats();
    expect(st.running).toBe(1);
    expect(st.sealFailures).toBe(0);
    expect(st.units).toBeGreaterThanOrEqual(202);
  });

  it('rejects misuse without touching the thread', () => {
    const b = new Uint8Array(100);
    const z = new Uint32Array(4);
    expect(() => native.sealThreadSubmit(2, tx.fd, 0, b, new Uint8Array(32), z, z, z, 0, z, z, z, z, new Uint8Array(64), new Uint16Array(4), new Uint8Array(64), z, 0)).toThrow(/bad set/);
    expect(() => native.sealThreadSubmit(0, tx.fd, 0, b, new Uint8Array(32), z, z, new Uint32Array([1]), 1, new Uint32Array([90]), new Uint32Array([16]), z, z, new Uint8Array(64), new Uint16Array(4), new Uint8Array(64), z, 0)).toThrow(/outside the buffer/);
    expect(() => native.sealThreadStart(state)).toThrow(/already running/);
  });
});
