/**
 * Cryptokey routing (whitepaper §3): a longest-prefix-match table from IP prefixes to peers, one
 * path-compressed binary trie per address family (as the kernel's allowedips.c). Each node holds
 * a prefix (address bytes masked to `cidr` bits) and maybe a value; a node's children extend its
 * prefix by one more bit chosen at bit position `cidr`. Lookups walk at most one node per bit of
 * the address, compare in place inside the packet buffer and allocate nothing.
 *
 * A prefix belongs to at most one peer: inserting an existing prefix moves it to the new value.
 */

class Node<T> {
  value: T | undefined = undefined;
  readonly child: [Node<T> | null, Node<T> | null] = [null, null];
  parent: Node<T> | null = null;
  constructor(
    /** The prefix, masked to cidr bits (4 or 16 bytes). */
    readonly key: Uint8Array,
    readonly cidr: number,
  ) {}
}

function bitAt(b: Uint8Array, off: number, i: number): 0 | 1 {
  return ((b[off + (i >> 3)] >> (7 - (i & 7))) & 1) as 0 | 1;
}

function masked(addr: Uint8Array, cidr: number): Uint8Array {
  const out = new Uint8Array(addr.length);
  const full = cidr >> 3;
  out.set(addr.subarray(0, full));
  if (cidr & 7) out[full] = addr[full] & (0xff << (8 - (cidr & 7)));
  return out;
}

/** Number of leading bits (up to max) that a and b[off..] share. */
function commonBits(a: Uint8Array, b: Uint8Array, off: number, max: number): number {
  let i = 0;
  for (let byte = 0; i < max; byte++) {
    const x = a[byte] ^ b[off + byte];
    if (x === 0) {
      i += 8;
      continue;
    }
    return Math.min(max, i + Math.clz32(x) - 24);
  }
  return Math.min(i, max);
}

/** Does b[off..] start with the node's prefix? */
function matches<T>(n: Node<T>, b: Uint8Array, off: number): boolean {
  const full = n.cidr >> 3;
  for (let i = 0; i < full; i++) if (n.key[i] !== b[off + i]) return false;
  const rest = n.cidr & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (b[off + full] & mask) === n.key[full];
}

class Trie<T> {
  root: Node<T> | null = null;

  constructor(readonly bits: number) {}

  /** Insert or move a prefix; returns the node and the value it had before. */
  insert(key: Uint8Array, cidr: number, value: T): { node: Node<T>; previous: T | undefined } {
    const k = masked(key, cidr);
    let parent: Node<T> | null = null;
    let side: 0 | 1 = 0;
    let cur = this.root;
    while (cur) {
      const common = commonBits(cur.key, k, 0, Math.min(cur.cidr, cidr));
      if (common === cur.cidr && cur.cidr === cidr) {
        const previous = cur.value;
        cur.value = value;
        return { node: cur, previous };
      }
      if (common === cur.cidr) {
        // cur is a proper prefix of the new key: descend.
        parent = cur;
        side = bitAt(k, 0, cur.cidr);
        cur = cur.child[side];
        continue;
      }
      const fresh = new Node<T>(k, cidr);
      fresh.value = value;
      if (common === cidr) {
        // The new key is a proper prefix of cur: it goes above cur.
        this.link(fresh, bitAt(cur.key, 0, cidr), cur);
        this.replaceChild(parent, side, fresh);
      } else {
        // They diverge at bit `common`: a valueless branch node joins them.
        const branch = new Node<T>(masked(k, common), common);
        this.link(branch, bitAt(k, 0, common), fresh);
        this.link(branch, bitAt(cur.key, 0, common), cur);
        this.replaceChild(parent, side, branch);
      }
      return { node: fresh, previous: undefined };
    }
    const fresh = new Node<T>(k, cidr);
    fresh.value = value;
    this.replaceChild(parent, side, fresh);
    return { node: fresh, previous: undefined };
  }

  private link(parent: Node<T>, side: 0 | 1, child: Node<T>): void {
    parent.child[side] = child;
    child.parent = parent;
  }

  private replaceChild(parent: Node<T> | null, side: 0 | 1, n: Node<T> | null): void {
    if (parent) parent.child[side] = n;
    else this.root = n;
    if (n) n.parent = parent;
  }

  find(key: Uint8Array, cidr: number): Node<T> | null {
    const k = masked(key, cidr);
    let cur = this.root;
    while (cur && cur.cidr <= cidr) {
      if (!matches(cur, k, 0)) return null;
      if (cur.cidr === cidr) return cur;
      cur = cur.child[bitAt(k, 0, cur.cidr)];
    }
    return null;
  }

  /** Clear a node's value and remove nodes that no longer carry a value or a fork. */
  clearNode(n: Node<T>): void {
    n.value = undefined;
    let cur: Node<T> | null = n;
    while (cur && cur.value === undefined) {
      const [l, r] = cur.child;
      if (l && r) break; // still a fork
      const only = l ?? r;
      const parent: Node<T> | null = cur.parent;
      const side: 0 | 1 = parent && parent.child[1] === cur ? 1 : 0;
      this.replaceChild(parent, side, only);
      cur.parent = null;
      cur = parent;
    }
  }

  lookup(b: Uint8Array, off: number): T | undefined {
    let best: T | undefined;
    let cur = this.root;
    while (cur) {
      if (!matches(cur, b, off)) break;
      if (cur.value !== undefined) best = cur.value;
      if (cur.cidr === this.bits) break;
      cur = cur.child[bitAt(b, off, cur.cidr)];
    }
    return best;
  }
}

export class AllowedIps<T> {
  private readonly v4 = new Trie<T>(32);
  private readonly v6 = new Trie<T>(128);
  private readonly byValue = new Map<T, Set<Node<T>>>();
  private count = 0;

  private trieFor(addr: Uint8Array, cidr: number): Trie<T> {
    if (addr.length === 4) {
      if (!Number.isInteger(cidr) || cidr < 0 || cidr > 32) throw new RangeError(`IPv4 prefix length must be 0–32, got ${cidr}`);
      return this.v4;
    }
    if (addr.length === 16) {
      if (!Number.isInteger(cidr) || cidr < 0 || cidr > 128) throw new RangeError(`IPv6 prefix length must be 0–128, got ${cidr}`);
      return this.v6;
    }
    throw new RangeError(`expected a 4- or 16-byte address, got length=${addr.length}`);
  }

  insert(addr: Uint8Array, cidr: number, value: T): void {
    const { node, previous } = this.trieFor(addr, cidr).insert(addr, cidr, value);
    if (previous !== undefined) {
      if (previous === value) return;
      this.byValue.get(previous)?.delete(node);
    } else this.count++;
    let set = this.byValue.get(value);
    if (!set) this.byValue.set(value, (set = new Set()));
    set.add(node);
  }

  remove(addr: Uint8Array, cidr: number, value: T): boolean {
    const trie = this.trieFor(addr, cidr);
    const node = trie.find(addr, cidr);
    if (!node || node.value !== value) return false;
    this.byValue.get(value)?.delete(node);
    trie.clearNode(node);
    this.count--;
    return true;
  }

  removeValue(value: T): void {
    const set = this.byValue.get(value);
    if (!set) return;
    for (const node of set) {
      (node.key.length === 4 ? this.v4 : this.v6).clearNode(node);
      this.count--;
    }
    this.byValue.delete(value);
  }

  /** Longest-prefix match of the address at b[off..] (4 or 16 bytes). Allocation-free. */
  lookup(b: Uint8Array, off: number, family: 4 | 6): T | undefined {
    return (family === 4 ? this.v4 : this.v6).lookup(b, off);
  }

  entriesFor(value: T): Array<{ addr: Uint8Array; cidr: number; family: 4 | 6 }> {
    const set = this.byValue.get(value);
    if (!set) return [];
    return [...set].map((n) => ({ addr: n.key.slice(), cidr: n.cidr, family: n.key.length === 4 ? 4 : 6 }) as const);
  }

  clear(): void {
    this.v4.root = null;
    this.v6.root = null;
    this.byValue.clear();
    this.count = 0;
  }

  get size(): number {
    return this.count;
  }
}

