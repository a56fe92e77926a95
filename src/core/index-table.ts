/**
 * The receiver index table (whitepaper §5.4.2): every handshake and keypair of ours has a random
 * 32-bit index that peers put in messages to us, so an incoming datagram finds its session
 * without looking at the address it came from. Indexes are drawn at random (not sequential:
 * they would leak how many sessions a host has) and redrawn on collision.
 */
export class IndexTable<E> {
  private readonly entries = new Map<number, E>();

  constructor(private readonly random: (n: number) => Uint8Array) {}

  /** A fresh index not in use, bound to `entry`. */
  allocate(entry: E): number {
    for (;;) {
      const r = this.random(4);
      const idx = (r[0] | (r[1] << 8) | (r[2] << 16) | (r[3] << 24)) >>> 0;
      if (!this.entries.has(idx)) {
        this.entries.set(idx, entry);
        return idx;
      }
    }
  }

  get(idx: number): E | undefined {
    return this.entries.get(idx);
  }

  /** Rebind an existing index (a handshake's index becomes its keypair's). */
  replace(idx: number, entry: E): void {
    if (this.entries.has(idx)) this.entries.set(idx, entry);
  }

  release(idx: number): void {
    this.entries.delete(idx);
  }

  get size(): number {
    return this.entries.size;
  }
}
