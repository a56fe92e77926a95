/**
 * The KEYMESH_SEAL_THREAD=1 experiment: sealing and sending the TUN direction on a native worker
 * thread (native/seal-thread.c), so the JS thread reads, routes and assigns counters for the next
 * batch meanwhile. The engine is unchanged: it still picks the keypair and reserves consecutive
 * counters on the JS thread, writes headers and padding, and hands (buffer, offset, length) to the
 * sink. Only the AEAD call is deferred: `DeferredTransportAead.sealBatch` on the buffer set being
 * filled *records* the job (a copy of the key, the first counter, the packets) in preallocated
 * arrays; on any other buffer (staged packets, keepalives, relay wrapping) it seals at once.
 */
import type { TransportAead } from '../core/transport-aead.js';

/** One buffer set's recorded seal jobs, preallocated (nothing is allocated per batch). */
export class SealRecord {
  readonly keys: Uint8Array;
  readonly his: Uint32Array;
  readonly los: Uint32Array;
  readonly jobCounts: Uint32Array;
  readonly sealOffs: Uint32Array;
  readonly sealLens: Uint32Array;
  jobs = 0;
  packets = 0;

  constructor(readonly maxJobs: number, readonly maxPackets: number) {
    this.keys = new Uint8Array(maxJobs * 32);
    this.his = new Uint32Array(maxJobs);
    this.los = new Uint32Array(maxJobs);
    this.jobCounts = new Uint32Array(maxJobs);
    this.sealOffs = new Uint32Array(maxPackets);
    this.sealLens = new Uint32Array(maxPackets);
  }

  clear(): void {
    this.jobs = 0;
    this.packets = 0;
  }
}

/**
 * A TransportAead that defers seals on one target buffer into a SealRecord and seals everything
 * else at once through `now` (the synchronous native backend). Opening is always synchronous.
 */
export class DeferredTransportAead implements TransportAead {
  readonly name: string;
  /** The buffer whose seals are recorded (the runtime's current TUN buffer set), or null. */
  target: Uint8Array | null = null;
  record: SealRecord | null = null;

  constructor(private readonly now: TransportAead) {
    this.name = `${now.name}, sealed on a worker thread`;
  }

  sealBatch(key: Uint8Array, hi: number, lo: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number): void {
    const r = this.record;
    if (buf !== this.target || !r || r.jobs === r.maxJobs || r.packets + count > r.maxPackets) {
      this.now.sealBatch(key, hi, lo, buf, offs, lens, count);
      return;
    }
    const j = r.jobs++;
    r.keys.set(key, j * 32);
    r.his[j] = hi >>> 0;
    r.los[j] = lo >>> 0;
    r.jobCounts[j] = count;
    const p = r.packets;
    for (let i = 0; i < count; i++) {
      r.sealOffs[p + i] = offs[i];
      r.sealLens[p + i] = lens[i];
    }
    r.packets = p + count;
  }

  openBatch(key: Uint8Array, his: Uint32Array, los: Uint32Array, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number, ok: Uint8Array): void {
    this.now.openBatch(key, his, los, buf, offs, lens, count, ok);
  }

  /** Seal what is recorded right now, on this thread (the engine is about to read those bytes). */
  sealPending(): void {
    const r = this.record;
    const buf = this.target;
    if (!r || !buf || r.jobs === 0) return;
    let at = 0;
    for (let j = 0; j < r.jobs; j++) {
      const n = r.jobCounts[j];
      this.now.sealBatch(r.keys.subarray(j * 32, j * 32 + 32), r.his[j], r.los[j], buf, r.sealOffs.subarray(at, at + n), r.sealLens.subarray(at, at + n), n);
      at += n;
    }
    r.keys.fill(0, 0, r.jobs * 32);
    r.clear();
  }
}
