import { randomBytes } from 'node:crypto';

/**
 * Random bytes from the system CSPRNG, fetched 4 KiB at a time: each randomBytes() call costs a
 * few microseconds whatever its size, and the engine asks for a few bytes at a time (indexes,
 * jitter, challenge tokens, ephemeral keys). Every byte is handed out once; the caller gets its
 * own copy.
 */
export function randomPool(): (n: number) => Uint8Array {
  let pool = new Uint8Array(0);
  let at = 0;
  return (n) => {
    if (n > 1024) return new Uint8Array(randomBytes(n));
    if (at + n > pool.length) {
      pool = new Uint8Array(randomBytes(4096));
      at = 0;
    }
    const out = pool.slice(at, at + n);
    pool.fill(0, at, at + n);
    at += n;
    return out;
  };
}
