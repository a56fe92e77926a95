/**
 * Cryptokey routing (whitepaper §3): a longest-prefix-match table from IP prefixes to peers, one
 * path-compressed binary trie per address family, as the kernel's allowedips.c. It serves both
 * directions: on send, the destination address of a TUN packet picks the peer; on receive, the
 * source address of a decrypted packet must map back to the peer that sent it.
 *
 * A node holds a prefix (its address masked to `cidr` bits) and maybe a value; its two children
 * extend the prefix and differ at bit position `cidr` (bit 0 is the most significant bit of the
 * first address byte). Runs of single-child nodes are compressed away, so a node exists only
 * where a prefix was inserted or where two prefixes diverge. Lookups walk at most one node per
 * bit and compare 32-bit words, each word of the address at most once.
 *
 * Memory: nodes are not objects but indices into typed arrays (struct of arrays), about 30 bytes
 * per IPv4 node and 42 per IPv6 node, plus one Map entry per value; the table grows by doubling
 * and reuses freed nodes. The prefixes of one value are threaded through the nodes as an
 * intrusive doubly-linked list (as the kernel's per-peer list), so removing a peer or listing its
 * prefixes costs O(its prefixes), not O(table).
 *
 * A prefix belongs to at most one value: inserting an existing prefix moves it to the new value.
 */

const NONE = -1;

/** The big-endian 32-bit words of `addr`, masked to its first `cidr` bits. */
function maskedWords(addr: Uint8Array, cidr: number): Uint32Array {
  const out = new Uint32Array(addr.length >> 2);
  for (let w = 0; w < out.length; w++) {
    const word = ((addr[4 * w] << 24) | (addr[4 * w + 1] << 16) | (addr[4 * w + 2] << 8) | addr[4 * w + 3]) >>> 0;
    const bits = Math.min(32, Math.max(0, cidr - 32 * w));
    out[w] = bits === 0 ? 0 : bits === 32 ? word : (word & (0xffffffff << (32 - bits))) >>> 0;
  }
  return out;
}

/** Bit `i` (0 = most significant) of a word array. Only called with i below the address width. */
function bitOf(words: Uint32Array, base: number, i: number): number {
  return (words[base + (i >>> 5)] >>> (31 - (i & 31))) & 1;
}

class Trie<T> {
  /** 32-bit words per address: 1 for IPv4, 4 for IPv6. */
  private readonly words: number;
  private capacity = 0;
  /** Node n's prefix occupies keys[n*words .. n*words+words), masked to cidrs[n] bits. */
  private keys = new Uint32Array(0);
  private cidrs = new Uint8Array(0);
  /** Children of node n at child[2n] (next bit 0) and child[2n+1] (next bit 1). */
  private child = new Int32Array(0);
  /** The parent of a live node; for a free node, the next free node. */
  private parent = new Int32Array(0);
  /** The per-value list of valued nodes. */
  private nextOfValue = new Int32Array(0);
  private prevOfValue = new Int32Array(0);
  private readonly values: Array<T | undefined> = [];
  private readonly heads = new Map<T, number>();
  private freeHead = NONE;
  /** Nodes ever handed out (the high-water mark; below it, a node is live or on the free list). */
  private used = 0;
  /** Live nodes: valued ones plus valueless forks. */
  live = 0;
  private root = NONE;
  /** Scratch for the address under lookup, so lookup allocates nothing. */
  private readonly addr: Uint32Array;

  constructor(readonly bits: 32 | 128) {
    this.words = bits >> 5;
    this.addr = new Uint32Array(this.words);
  }

  // — node storage —

  private alloc(): number {
    let n = this.freeHead;
    if (n !== NONE) this.freeHead = this.parent[n];
    else {
      if (this.used === this.capacity) this.grow();
      n = this.used++;
      this.values.push(undefined);
    }
    this.child[2 * n] = this.child[2 * n + 1] = NONE;
    this.parent[n] = NONE;
    this.nextOfValue[n] = this.prevOfValue[n] = NONE;
    this.values[n] = undefined;
    this.live++;
    return n;
  }

  private release(n: number): void {
    this.values[n] = undefined;
    this.parent[n] = this.freeHead;
    this.freeHead = n;
    this.live--;
  }

  private grow(): void {
    const cap = Math.max(16, this.capacity * 2);
    const keys = new Uint32Array(cap * this.words);
    keys.set(this.keys);
    this.keys = keys;
    const cidrs = new Uint8Array(cap);
    cidrs.set(this.cidrs);
    this.cidrs = cidrs;
    const child = new Int32Array(cap * 2);
    child.set(this.child);
    this.child = child;
    for (const name of ['parent', 'nextOfValue', 'prevOfValue'] as const) {
      const a = new Int32Array(cap);
      a.set(this[name]);
      this[name] = a;
    }
    this.capacity = cap;
  }

  private setKey(n: number, k: Uint32Array, cidr: number): void {
    this.keys.set(k, n * this.words);
    this.cidrs[n] = cidr;
  }

  /** Leading bits (at most `max`) that node n's key shares with k. */
  private commonBits(n: number, k: Uint32Array, max: number): number {
    const base = n * this.words;
    for (let w = 0; w < this.words; w++) {
      const x = (this.keys[base + w] ^ k[w]) >>> 0;
      if (x !== 0) return Math.min(max, 32 * w + Math.clz32(x));
      if (32 * (w + 1) >= max) return max;
    }
    return max;
  }

  private link(p: number, side: number, c: number): void {
    this.child[2 * p + side] = c;
    this.parent[c] = p;
  }

  private replaceChild(p: number, side: number, c: number): void {
    if (p === NONE) this.root = c;
    else this.child[2 * p + side] = c;
    if (c !== NONE) this.parent[c] = p;
  }

  // — per-value lists —

  private setValue(n: number, value: T): void {
    if (this.values[n] !== undefined) this.unlinkValue(n);
    this.values[n] = value;
    const head = this.heads.get(value) ?? NONE;
    this.nextOfValue[n] = head;
    this.prevOfValue[n] = NONE;
    if (head !== NONE) this.prevOfValue[head] = n;
    this.heads.set(value, n);
  }

  private unlinkValue(n: number): void {
    const value = this.values[n] as T;
    const prev = this.prevOfValue[n];
    const next = this.nextOfValue[n];
    if (prev !== NONE) this.nextOfValue[prev] = next;
    else if (next !== NONE) this.heads.set(value, next);
    else this.heads.delete(value);
    if (next !== NONE) this.prevOfValue[next] = prev;
  }

  // — operations —

  /** Insert k/cidr (k already masked) or move it to `value`; returns the value it had before. */
  insert(k: Uint32Array, cidr: number, value: T): T | undefined {
    let p = NONE;
    let side = 0;
    let cur = this.root;
    while (cur !== NONE) {
      const curCidr = this.cidrs[cur];
      const common = this.commonBits(cur, k, Math.min(curCidr, cidr));
      if (common === curCidr && curCidr === cidr) {
        const previous = this.values[cur];
        this.setValue(cur, value);
        return previous;
      }
      if (common === curCidr) {
        // cur's prefix is a proper prefix of k: descend by k's next bit.
        p = cur;
        side = bitOf(k, 0, curCidr);
        cur = this.child[2 * cur + side];
        continue;
      }
      const fresh = this.alloc();
      this.setKey(fresh, k, cidr);
      if (common === cidr) {
        // k is a proper prefix of cur's: the new node goes above cur.
        this.link(fresh, bitOf(this.keys, cur * this.words, cidr), cur);
        this.replaceChild(p, side, fresh);
      } else {
        // They diverge at bit `common`: a valueless branch node joins them.
        const branch = this.alloc();
        const bk = k.slice();
        const w = common >>> 5;
        if (common & 31) bk[w] = (bk[w] & (0xffffffff << (32 - (common & 31)))) >>> 0;
        else bk[w] = 0;
        bk.fill(0, w + 1);
        this.setKey(branch, bk, common);
        this.link(branch, bitOf(k, 0, common), fresh);
        this.link(branch, bitOf(this.keys, cur * this.words, common), cur);
        this.replaceChild(p, side, branch);
      }
      this.setValue(fresh, value);
      return undefined;
    }
    const fresh = this.alloc();
    this.setKey(fresh, k, cidr);
    this.replaceChild(p, side, fresh);
    this.setValue(fresh, value);
    return undefined;
  }

  /** The node holding exactly k/cidr (valued or not), or NONE. */
  find(k: Uint32Array, cidr: number): number {
    let cur = this.root;
    while (cur !== NONE && this.cidrs[cur] <= cidr) {
      const c = this.cidrs[cur];
      if (this.commonBits(cur, k, c) < c) return NONE;
      if (c === cidr) return cur;
      cur = this.child[2 * cur + bitOf(k, 0, c)];
    }
    return NONE;
  }

  valueAt(n: number): T | undefined {
    return this.values[n];
  }

  /** Drop node n's value, then prune nodes left with neither a value nor two children. */
  removeNode(n: number): void {
    this.unlinkValue(n);
    this.values[n] = undefined;
    let cur = n;
    while (cur !== NONE && this.values[cur] === undefined) {
      const l = this.child[2 * cur];
      const r = this.child[2 * cur + 1];
      if (l !== NONE && r !== NONE) break; // still a fork
      const p = this.parent[cur];
      const side = p !== NONE && this.child[2 * p + 1] === cur ? 1 : 0;
      this.replaceChild(p, side, l !== NONE ? l : r);
      this.release(cur);
      cur = p;
    }
  }

  /** Remove every prefix of `value`; returns how many there were. */
  removeValue(value: T): number {
    let n = this.heads.get(value) ?? NONE;
    let removed = 0;
    while (n !== NONE) {
      // Pruning frees only valueless nodes, so the next node of the list stays live.
      const next = this.nextOfValue[n];
      this.removeNode(n);
      removed++;
      n = next;
    }
    return removed;
  }

  entries(value: T, family: 4 | 6, out: Array<{ addr: Uint8Array; cidr: number; family: 4 | 6 }>): void {
    // The per-value list is newest-first; report in insertion order (as configured), so walk to its tail.
    let tail = this.heads.get(value) ?? NONE;
    while (tail !== NONE && this.nextOfValue[tail] !== NONE) tail = this.nextOfValue[tail];
    for (let n = tail; n !== NONE; n = this.prevOfValue[n]) {
      const addr = new Uint8Array(this.words * 4);
      for (let w = 0; w < this.words; w++) {
        const word = this.keys[n * this.words + w];
        addr[4 * w] = word >>> 24;
        addr[4 * w + 1] = word >>> 16;
        addr[4 * w + 2] = word >>> 8;
        addr[4 * w + 3] = word;
      }
      out.push({ addr, cidr: this.cidrs[n], family });
    }
  }

  /** Longest-prefix match of the address at b[off..]. The hot path: no allocation. */
  lookup(b: Uint8Array, off: number): T | undefined {
    const a = this.addr;
    for (let w = 0, o = off; w < this.words; w++, o += 4) a[w] = (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
    const { keys, cidrs, child, values, words, bits } = this;
    let best: T | undefined;
    let n = this.root;
    // Words below `from` were already compared whole by an ancestor.
    let from = 0;
    while (n !== NONE) {
      const cidr = cidrs[n];
      const base = n * words;
      const full = cidr >>> 5;
      for (let w = from; w < full; w++) if (keys[base + w] !== a[w]) return best;
      const rest = cidr & 31;
      if (rest !== 0 && (keys[base + full] ^ a[full]) >>> (32 - rest) !== 0) return best;
      const v = values[n];
      if (v !== undefined) best = v;
      if (cidr === bits) return best;
      from = full;
      n = child[2 * n + ((a[full] >>> (31 - rest)) & 1)];
    }
    return best;
  }

  clear(): void {
    this.capacity = this.used = this.live = 0;
    this.keys = new Uint32Array(0);
    this.cidrs = new Uint8Array(0);
    this.child = new Int32Array(0);
    this.parent = new Int32Array(0);
    this.nextOfValue = new Int32Array(0);
    this.prevOfValue = new Int32Array(0);
    this.values.length = 0;
    this.heads.clear();
    this.freeHead = this.root = NONE;
  }
}

export class AllowedIps<T> {
  private readonly v4 = new Trie<T>(32);
  private readonly v6 = new Trie<T>(128);
  private count = 0;

  private trieFor(addr: Uint8Array, cidr: number): Trie<T> {
    if (!(addr instanceof Uint8Array)) throw new TypeError('allowed IP: expected a Uint8Array address');
    const trie = addr.length === 4 ? this.v4 : addr.length === 16 ? this.v6 : null;
    if (!trie) throw new RangeError(`allowed IP: expected a 4- or 16-byte address, got length=${addr.length}`);
    if (!Number.isInteger(cidr) || cidr < 0 || cidr > trie.bits) {
      throw new RangeError(`allowed IP: IPv${trie === this.v4 ? 4 : 6} prefix length must be 0–${trie.bits}, got ${cidr}`);
    }
    return trie;
  }

  /** Map addr/cidr (host bits masked off) to value, taking the prefix from any other value. */
  insert(addr: Uint8Array, cidr: number, value: T): void {
    if (value === undefined) throw new TypeError('allowed IP: value must not be undefined');
    const trie = this.trieFor(addr, cidr);
    if (trie.insert(maskedWords(addr, cidr), cidr, value) === undefined) this.count++;
  }

  /** Remove addr/cidr if it currently maps to value; true if it did. */
  remove(addr: Uint8Array, cidr: number, value: T): boolean {
    const trie = this.trieFor(addr, cidr);
    const n = trie.find(maskedWords(addr, cidr), cidr);
    if (n === NONE || trie.valueAt(n) !== value || value === undefined) return false;
    trie.removeNode(n);
    this.count--;
    return true;
  }

  /** Remove every prefix of value (a peer being removed, or its allowed IPs replaced). */
  removeValue(value: T): void {
    this.count -= this.v4.removeValue(value) + this.v6.removeValue(value);
  }

  /**
   * Longest-prefix match of the 4 (family 4) or 16 (family 6) address bytes at b[off..], read in
   * place, e.g. a packet's destination at offset 16 (IPv4) or 24 (IPv6). Allocation-free.
   */
  lookup(b: Uint8Array, off: number, family: 4 | 6): T | undefined {
    return (family === 4 ? this.v4 : this.v6).lookup(b, off);
  }

  /** The prefixes of value (fresh copies), IPv4 first; order within a family is unspecified. */
  entriesFor(value: T): Array<{ addr: Uint8Array; cidr: number; family: 4 | 6 }> {
    const out: Array<{ addr: Uint8Array; cidr: number; family: 4 | 6 }> = [];
    this.v4.entries(value, 4, out);
    this.v6.entries(value, 6, out);
    return out;
  }

  clear(): void {
    this.v4.clear();
    this.v6.clear();
    this.count = 0;
  }

  /** Number of prefixes in the table. */
  get size(): number {
    return this.count;
  }

  /**
   * Trie nodes in use (prefixes plus valueless fork nodes), for tests and memory accounting.
   * Path compression keeps this below 2 × size: a valueless node always has two children.
   */
  get nodeCount(): number {
    return this.v4.live + this.v6.live;
  }
}
