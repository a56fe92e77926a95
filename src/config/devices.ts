/**
 * A gateway's stock WireGuard devices (phones, tablets: anything that runs the WireGuard app and
 * cannot hold a mesh certificate): the devices file `Devices = PATH` names, the choice of a free
 * address for a new device, and the wg-quick configuration the device imports.
 *
 * The devices file is kept by `keymesh device add/remove` and read at `up`; it may be edited by
 * hand while the node is down. Its format is wg-quick's, one section per device:
 *
 *   # comments as in wg-quick
 *   [Device]
 *   Name = phone                  a DNS label: the device resolves mesh-wide as phone.GATEWAY.DOMAIN
 *   PublicKey = <base64>          the device's key (its private key is printed once, by `device add`)
 *   Address = 10.99.200.2         one host address per family, inside the gateway's subnets
 *   PresharedKey = <base64>       optional, as in a [Peer]
 *
 * Each device becomes a static peer of the gateway with AllowedIPs = its addresses (/32, /128).
 * The file holds preshared keys: it is written 0600, and a looser mode is warned about.
 */
import { readFile, stat } from 'node:fs/promises';
import { isLabel } from '../core/cert.js';
import { formatAddress } from '../core/ip.js';
import { decodeKey, encodeKey } from './keys.js';
import { ConfigError, parseCidr } from './wgquick.js';

export interface Device {
  name: string;
  publicKey: Uint8Array;
  presharedKey?: Uint8Array;
  /** Host addresses, 4 or 16 bytes each, at most one per family. */
  addresses: Uint8Array[];
}

/** A prefix as certificates carry them (cert.ts's IpPrefix). */
export interface Prefix {
  addr: Uint8Array;
  bits: number;
}

const DEVICE_KEYS = new Set(['name', 'publickey', 'presharedkey', 'address']);

/** Cut anything key-shaped from an error message (a key on a malformed line must not be echoed). */
function redact(problem: string): string {
  return problem.replace(/[A-Za-z0-9+/]{40,}={0,2}/g, '(hidden)');
}

/** Parse a devices file; throws ConfigError ("FILE:LINE: what is wrong") at the first problem. */
export function parseDevices(text: string, file: string): Device[] {
  const err = (line: number, problem: string): never => {
    throw new ConfigError(file, line, redact(problem));
  };
  const out: Array<Partial<Device> & { line: number; addresses: Uint8Array[] }> = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const ln = i + 1;
    const hash = lines[i].indexOf('#');
    const raw = (hash >= 0 ? lines[i].slice(0, hash) : lines[i]).trim();
    if (raw === '') continue;
    if (raw.startsWith('[')) {
      if (!/^\[\s*device\s*\]$/i.test(raw)) err(ln, 'unknown section (a devices file has only [Device] sections)');
      out.push({ line: ln, addresses: [] });
      continue;
    }
    const eq = raw.indexOf('=');
    const key = eq > 0 ? raw.slice(0, eq).trim().toLowerCase() : '';
    if (!/^[a-z]{1,32}$/.test(key)) err(ln, 'expected "Key = Value"');
    if (out.length === 0) err(ln, 'outside any section (the file must start with [Device])');
    if (!DEVICE_KEYS.has(key)) err(ln, `unknown key in [Device] (expected Name, PublicKey, Address or PresharedKey)`);
    const d = out[out.length - 1];
    const value = raw.slice(eq + 1).trim();
    switch (key) {
      case 'name':
        if (d.name !== undefined) err(ln, 'a second Name in this [Device]');
        if (!isLabel(value)) err(ln, `Name: "${/^[\x21-\x7e]{1,63}$/.test(value) ? value : '…'}" is not a name (a lowercase DNS label: a-z 0-9 and '-', 1–63 characters)`);
        d.name = value;
        break;
      case 'publickey': {
        const k = decodeKey(value.replace(/\s+/g, ''));
        if (!k) err(ln, 'PublicKey is not a valid base64 key (44 characters)');
        d.publicKey = k!;
        break;
      }
      case 'presharedkey': {
        const k = decodeKey(value.replace(/\s+/g, ''));
        if (!k) err(ln, 'PresharedKey is not a valid base64 key (44 characters)');
        d.presharedKey = k!;
        break;
      }
      case 'address':
        for (const item of value.split(/[\s,]+/).filter(Boolean)) {
          const c = parseCidr(item);
          if (typeof c === 'string') err(ln, `Address: ${c}`);
          const cc = c as Exclude<typeof c, string>;
          if (cc.cidr !== cc.bytes.length * 8) err(ln, `Address: "${item}" is a network; a device has one host address per family (/${cc.bytes.length * 8})`);
          if (d.addresses.some((a) => a.length === cc.bytes.length)) err(ln, `Address: a second IPv${cc.family} address (a device has one per family)`);
          d.addresses.push(cc.bytes);
        }
        break;
    }
  }
  const names = new Map<string, number>();
  const keys = new Map<string, number>();
  const addrs = new Map<string, number>();
  for (const d of out) {
    if (d.name === undefined) err(d.line, '[Device] has no Name');
    if (!d.publicKey) err(d.line, '[Device] has no PublicKey');
    if (d.addresses.length === 0) err(d.line, '[Device] has no Address');
    const seen = (m: Map<string, number>, k: string, what: string) => {
      const at = m.get(k);
      if (at !== undefined) err(d.line, `this [Device] has the same ${what} as the one at line ${at}`);
      m.set(k, d.line);
    };
    seen(names, d.name!, 'Name');
    seen(keys, encodeKey(d.publicKey!), 'PublicKey');
    for (const a of d.addresses) seen(addrs, formatAddress(a), 'Address');
  }
  return out.map((d) => ({ name: d.name!, publicKey: d.publicKey!, ...(d.presharedKey ? { presharedKey: d.presharedKey } : {}), addresses: d.addresses }));
}

/** The devices file for `devices`; parseDevices gives them back. Holds preshared keys: write it 0600. */
export function serializeDevices(devices: readonly Device[]): string {
  const out = ['# keymesh: stock WireGuard devices served by this gateway (`keymesh device add|remove` keep this file)'];
  for (const d of devices) {
    out.push('', '[Device]', `Name = ${d.name}`, `PublicKey = ${encodeKey(d.publicKey)}`);
    if (d.presharedKey) out.push(`PresharedKey = ${encodeKey(d.presharedKey)}`);
    out.push(`Address = ${d.addresses.map((a) => `${formatAddress(a)}/${a.length * 8}`).join(', ')}`);
  }
  return out.join('\n') + '\n';
}

/**
 * Read a devices file: a missing file means no devices yet (the first `device add` creates it).
 * A file others may read is a warning, as for the config itself.
 */
export async function loadDevices(file: string): Promise<{ devices: Device[]; warnings: string[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { devices: [], warnings: [] };
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const warnings: string[] = [];
  const st = await stat(file);
  if (st.mode & 0o077) warnings.push(`${file} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}) and holds preshared keys: chmod 600 ${file}`);
  return { devices: parseDevices(text, file), warnings };
}

// ───────────────────────────── addresses ─────────────────────────────

function toBig(a: Uint8Array): bigint {
  let v = 0n;
  for (const b of a) v = (v << 8n) | BigInt(b);
  return v;
}

function fromBig(v: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Addresses of a large IPv6 subnet tried before giving up (the first ones: short, easy to read). */
const MAX_TRIED = 1 << 16;

/**
 * The first free host address of `family` in `subnets` (the gateway's certified subnets, in
 * order): not in `taken` (the gateway's own addresses, the other devices'). Skipped as a host
 * would skip them: an IPv4 subnet's network and broadcast addresses (of /30 and larger), and an
 * IPv6 subnet's first address (the subnet-router anycast, RFC 4291 §2.6.1). Throws a message for
 * the user when there is no subnet of the family or every address is in use.
 */
export function allocateAddress(subnets: readonly Prefix[], taken: readonly Uint8Array[], family: 4 | 6): Uint8Array {
  const len = family === 4 ? 4 : 16;
  const mine = subnets.filter((s) => s.addr.length === len);
  if (mine.length === 0) throw new Error(`the gateway's certificate has no IPv${family} subnet to give devices addresses from (keymesh ca sign --subnets)`);
  const used = new Set(taken.filter((a) => a.length === len).map((a) => toBig(a)));
  for (const s of mine) {
    const hostBits = len * 8 - s.bits;
    const size = 1n << BigInt(hostBits);
    const base = toBig(s.addr);
    const first = hostBits <= 1 ? 0n : 1n;
    const last = family === 4 && hostBits > 1 ? size - 2n : size - 1n;
    const end = last - first >= BigInt(MAX_TRIED) ? first + BigInt(MAX_TRIED) - 1n : last;
    for (let i = first; i <= end; i++) if (!used.has(base + i)) return fromBig(base + i, len);
  }
  throw new Error(`no free IPv${family} address left in ${mine.map((s) => `${formatAddress(s.addr)}/${s.bits}`).join(', ')} (${used.size} in use): remove a device or sign the gateway a larger subnet`);
}

// ───────────────────────────── the device's configuration ─────────────────────────────

export interface DeviceConfigFields {
  name: string;
  gatewayName: string;
  meshName: string;
  privateKey: Uint8Array;
  presharedKey?: Uint8Array;
  addresses: Uint8Array[];
  /** The gateway's resolver (its overlay addresses) and the mesh's domain, for `DNS =`. */
  dns: Uint8Array[];
  domain: string;
  gatewayPublicKey: Uint8Array;
  endpoint: string;
  /** The mesh's networks: everything the device reaches through the gateway. */
  allowedIps: readonly Prefix[];
}

/**
 * The device's wg-quick configuration, as the WireGuard apps import it (text or QR code). It
 * holds the device's private key: printed once, never stored by keymesh.
 */
export function deviceConfigText(f: DeviceConfigFields): string {
  const p = (x: Prefix) => `${formatAddress(x.addr)}/${x.bits}`;
  return [
    `# ${f.name}.${f.gatewayName}.${f.domain}: a stock WireGuard device of mesh "${f.meshName}" through gateway ${f.gatewayName} (keymesh device add)`,
    '[Interface]',
    `PrivateKey = ${encodeKey(f.privateKey)}`,
    `Address = ${f.addresses.map((a) => `${formatAddress(a)}/${a.length * 8}`).join(', ')}`,
    `DNS = ${[...f.dns.map(formatAddress), f.domain].join(', ')}`,
    '',
    '[Peer]',
    `PublicKey = ${encodeKey(f.gatewayPublicKey)}`,
    ...(f.presharedKey ? [`PresharedKey = ${encodeKey(f.presharedKey)}`] : []),
    `Endpoint = ${f.endpoint}`,
    `AllowedIPs = ${f.allowedIps.map(p).join(', ')}`,
    'PersistentKeepalive = 25',
    '',
  ].join('\n');
}
