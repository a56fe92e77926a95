/**
 * What changed between two readings of a config file: the pure half of `keymesh reload` (and
 * SIGHUP). src/io/config-reload.ts applies the result to the running node; this file only
 * compares, so it can be checked against the naive twin (tear everything down and build it again
 * from the new file) on random configs (test/unit/config-diff.test.ts).
 *
 * The rule that keeps sessions: a peer whose settings are the same in both files is not in the
 * diff at all, and a changed peer is changed field by field (never removed and added again), so
 * its handshake, keypairs and paths live on. Only a new PrivateKey ends sessions.
 *
 * Allowed IPs are compared as the kernel holds them, not as the file lists them: a prefix
 * belongs to the last [Peer] that lists it (wg setconf inserts in file order, and an insert takes
 * the prefix from whoever had it), and host bits are masked off. So a prefix that moves from one
 * peer to another is one removal and one addition, and applying every removal before every
 * addition gives the same table as building it from scratch.
 */
import { encodeKey } from './keys.js';
import type { InterfaceConfig, PeerConfig, WgQuickConfig } from './wgquick.js';

export interface Prefix {
  addr: Uint8Array;
  cidr: number;
  family: 4 | 6;
  /** "10.0.0.0/24", host bits masked off. */
  text: string;
}

export interface PeerChanges {
  publicKey: Uint8Array;
  /** The peer as the new file has it (for its Endpoint's line, its name, …). */
  fresh: PeerConfig;
  /** New PresharedKey; null: removed from the file (zeros, as `wg` clears it). */
  presharedKey?: Uint8Array | null;
  allowedIps?: { add: Prefix[]; remove: Prefix[] };
  /** New Endpoint; null: removed from the file (the peer keeps the address it has, as with `wg`). */
  endpoint?: { host: string; port: number } | null;
  /** New PersistentKeepalive in seconds; 0: removed or off. */
  persistentKeepalive?: number;
  lighthouse?: boolean;
  name?: string | null;
}

type Address = InterfaceConfig['addresses'][number];

export interface ConfigDiff {
  /** A new PrivateKey: every session restarts under it. */
  privateKey?: Uint8Array;
  /** A new ListenPort: a new UDP socket. (No ListenPort in the new file keeps the port in use.) */
  listenPort?: number;
  fwmark?: number;
  addresses: { add: Address[]; remove: Address[] };
  dns?: { dns: string[]; search: string[] };
  isLighthouse?: boolean;
  mssClamp?: boolean;
  portMapping?: boolean;
  /** The certificate, CA or revocation list differs (by content, not only by path). */
  mesh: boolean;
  /** Keys whose new value is simply kept for when it is used (hooks at down, SaveConfig). */
  adopted: string[];
  /** Keys that changed but take effect only at the next `keymesh up`: MTU, Table, ForgetAfter. */
  needsRestart: string[];
  removed: Uint8Array[];
  /** New peers, each with the allowed IPs that are its own once the whole file is applied. */
  added: Array<{ fresh: PeerConfig; allowedIps: Prefix[] }>;
  changed: PeerChanges[];
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

function sameBytes(a: Uint8Array | undefined | null, b: Uint8Array | undefined | null): boolean {
  if (!a || !b) return !a === !b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** addr/cidr with the host bits cleared, as the allowed-IPs table keeps it. */
export function maskPrefix(addr: Uint8Array, cidr: number, family: 4 | 6): Prefix {
  const b = addr.slice();
  for (let bit = cidr; bit < b.length * 8; bit++) b[bit >> 3] &= ~(0x80 >> (bit & 7));
  const text = family === 4 ? `${[...b].join('.')}/${cidr}` : `${ipv6Text(b)}/${cidr}`;
  return { addr: b, cidr, family, text };
}

function ipv6Text(b: Uint8Array): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((b[i] << 8) | b[i + 1]).toString(16));
  // the longest run of zero groups becomes "::" (RFC 5952 §4.2)
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === '0') j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return g.join(':');
  return `${g.slice(0, best).join(':')}::${g.slice(best + bestLen).join(':')}`;
}

/**
 * Each peer's allowed IPs as the table holds them after the whole file is applied: prefix text →
 * prefix, per peer (by hex key). A prefix listed by several peers is the last one's.
 */
export function effectiveAllowedIps(cfg: WgQuickConfig): Map<string, Map<string, Prefix>> {
  const owner = new Map<string, { peer: string; prefix: Prefix }>();
  for (const p of cfg.peers) {
    const id = hex(p.publicKey);
    for (const a of p.allowedIps) {
      const m = maskPrefix(a.addr, a.cidr, a.family);
      owner.delete(m.text); // re-inserted last: Map order is then table-insertion order
      owner.set(m.text, { peer: id, prefix: m });
    }
  }
  const out = new Map<string, Map<string, Prefix>>();
  for (const p of cfg.peers) out.set(hex(p.publicKey), new Map());
  for (const [text, o] of owner) out.get(o.peer)!.set(text, o.prefix);
  return out;
}

function endpointText(e: PeerConfig['endpoint']): string | null {
  return e ? `${e.host.toLowerCase()}:${e.port}` : null;
}

/** Compare two readings of a config; `old` is what the node runs, `fresh` the file just read. */
export function diffConfigs(old: WgQuickConfig, fresh: WgQuickConfig): ConfigDiff {
  const o = old.interface;
  const f = fresh.interface;
  const d: ConfigDiff = { addresses: { add: [], remove: [] }, mesh: false, adopted: [], needsRestart: [], removed: [], added: [], changed: [] };

  if (!sameBytes(o.privateKey, f.privateKey)) d.privateKey = f.privateKey;
  if (f.listenPort !== undefined && f.listenPort !== o.listenPort) d.listenPort = f.listenPort;
  if ((f.fwmark ?? 0) !== (o.fwmark ?? 0)) d.fwmark = f.fwmark ?? 0;
  const addr = (a: Address) => `${a.addr}/${a.cidr}`;
  const oldAddrs = new Set(o.addresses.map(addr));
  const freshAddrs = new Set(f.addresses.map(addr));
  d.addresses.add = f.addresses.filter((a) => !oldAddrs.has(addr(a)));
  d.addresses.remove = o.addresses.filter((a) => !freshAddrs.has(addr(a)));
  if (!sameList(o.dns, f.dns) || !sameList(o.dnsSearch, f.dnsSearch)) d.dns = { dns: f.dns, search: f.dnsSearch };
  if (o.isLighthouse !== f.isLighthouse) d.isLighthouse = f.isLighthouse;
  if (o.mssClamp !== f.mssClamp) d.mssClamp = f.mssClamp;
  if (o.portMapping !== f.portMapping) d.portMapping = f.portMapping;
  const om = o.mesh;
  const fm = f.mesh;
  d.mesh = !!om !== !!fm || (!!om && !!fm && (om.cert.fingerprint !== fm.cert.fingerprint || om.ca.fingerprint !== fm.ca.fingerprint || om.crl?.serial !== fm.crl?.serial));
  for (const [key, a, b] of [
    ['PreUp', o.preUp, f.preUp],
    ['PostUp', o.postUp, f.postUp],
    ['PreDown', o.preDown, f.preDown],
    ['PostDown', o.postDown, f.postDown],
  ] as const)
    if (!sameList(a, b)) d.adopted.push(key);
  if (o.saveConfig !== f.saveConfig) d.adopted.push('SaveConfig');
  if (o.mtu !== f.mtu) d.needsRestart.push('MTU');
  if ((o.table ?? 'auto') !== (f.table ?? 'auto')) d.needsRestart.push('Table');
  if (o.forgetAfter !== f.forgetAfter) d.needsRestart.push('ForgetAfter');

  const oldPeers = new Map(old.peers.map((p) => [hex(p.publicKey), p]));
  const freshIds = new Set(fresh.peers.map((p) => hex(p.publicKey)));
  for (const [id, p] of oldPeers) if (!freshIds.has(id)) d.removed.push(p.publicKey);
  const oldIps = effectiveAllowedIps(old);
  const freshIps = effectiveAllowedIps(fresh);
  for (const p of fresh.peers) {
    const id = hex(p.publicKey);
    const was = oldPeers.get(id);
    if (!was) {
      d.added.push({ fresh: p, allowedIps: [...freshIps.get(id)!.values()] });
      continue;
    }
    const c: PeerChanges = { publicKey: p.publicKey, fresh: p };
    let any = false;
    if (!sameBytes(was.presharedKey, p.presharedKey)) {
      c.presharedKey = p.presharedKey ?? null;
      any = true;
    }
    const before = oldIps.get(id)!;
    const after = freshIps.get(id)!;
    const add = [...after.values()].filter((x) => !before.has(x.text));
    const remove = [...before.values()].filter((x) => !after.has(x.text));
    if (add.length || remove.length) {
      c.allowedIps = { add, remove };
      any = true;
    }
    if (endpointText(was.endpoint) !== endpointText(p.endpoint)) {
      c.endpoint = p.endpoint ? { ...p.endpoint } : null;
      any = true;
    }
    if ((was.persistentKeepalive ?? 0) !== (p.persistentKeepalive ?? 0)) {
      c.persistentKeepalive = p.persistentKeepalive ?? 0;
      any = true;
    }
    if (was.lighthouse !== p.lighthouse) {
      c.lighthouse = p.lighthouse;
      any = true;
    }
    if ((was.name ?? null) !== (p.name ?? null)) {
      c.name = p.name ?? null;
      any = true;
    }
    if (any) d.changed.push(c);
  }
  return d;
}

/** Does the diff change nothing at all? */
export function isEmptyDiff(d: ConfigDiff): boolean {
  return (
    d.privateKey === undefined &&
    d.listenPort === undefined &&
    d.fwmark === undefined &&
    d.addresses.add.length + d.addresses.remove.length === 0 &&
    !d.dns &&
    d.isLighthouse === undefined &&
    d.mssClamp === undefined &&
    d.portMapping === undefined &&
    !d.mesh &&
    d.adopted.length + d.needsRestart.length + d.removed.length + d.added.length + d.changed.length === 0
  );
}

/** A peer as a reload's report names it: its Name if it has one, else the start of its key. */
export function peerLabel(p: { publicKey: Uint8Array; name?: string | null }): string {
  const k = `${encodeKey(p.publicKey).slice(0, 8)}…`;
  return p.name ? `${p.name} (${k})` : k;
}
