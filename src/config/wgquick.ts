/**
 * The wg-quick configuration format (wg-quick(8), wg(8)), parsed strictly: every error names the
 * file, the 1-based line and what is wrong, and never echoes a key. Rules as wg-quick: section
 * and key names are case-insensitive, `#` starts a comment anywhere on a line, list values are
 * comma-separated and may repeat over several lines (they accumulate), DNS entries that are not
 * IP addresses are search domains. Stricter than wg-quick in two places, both to catch mistakes
 * early: an unknown key or a [Peer] repeating another's PublicKey is an error here.
 *
 * keymesh's own keys: IsLighthouse, PortMapping, MssClamp, MetricsListen, MetricsPublic, the mesh
 * keys Certificate, CA and Revocations (checked in mesh.ts), and a gateway's Devices and
 * DevicesMayLeave (devices.ts).
 *
 * Secrets: error messages never contain a key. Key values are never echoed, names are echoed
 * only when they look like names, and anything key-shaped is cut from every message.
 */
import { lookup } from 'node:dns/promises';
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { decodeKey, encodeKey } from './keys.js';
import { checkMeshKeys, completeInlineMesh, completeMeshFiles, type MeshConfig, type MeshKeys } from './mesh.js';

export interface InterfaceConfig {
  privateKey: Uint8Array;
  listenPort?: number;
  fwmark?: number;
  addresses: Array<{ addr: string; cidr: number; family: 4 | 6 }>;
  mtu?: number;
  dns: string[];
  dnsSearch: string[];
  table?: string;
  preUp: string[];
  postUp: string[];
  preDown: string[];
  postDown: string[];
  saveConfig: boolean;
  /** keymesh: this node is a lighthouse (answers lookups and relays for the peers in its config). */
  isLighthouse: boolean;
  /** keymesh: ask the home router to map the listen port (PCP, else NAT-PMP). `PortMapping = on|off`, default on. */
  portMapping: boolean;
  /** keymesh: lower the MSS of TCP SYNs crossing the tunnel to fit the path. `MssClamp = on|off`, default on. */
  mssClamp: boolean;
  /** keymesh: how the mesh's resolver is hooked into the host's (`MeshDNS = auto|direct|off`, default auto; host-dns.ts). */
  meshDns?: 'auto' | 'direct' | 'off';
  /** keymesh: seconds without traffic after which a peer admitted by certificate is forgotten (`ForgetAfter`, default 600). */
  forgetAfter?: number;
  /**
   * keymesh: serve Prometheus metrics over HTTP at this address (`MetricsListen = 127.0.0.1:9586`;
   * off without it). A non-loopback address needs `MetricsPublic = true` as well.
   */
  metricsListen?: { host: string; port: number };
  /** keymesh: `MetricsPublic = true` allows MetricsListen on an address other hosts can reach. */
  metricsPublic: boolean;
  /** keymesh: `Devices = PATH`, a gateway's stock WireGuard devices file (devices.ts), as written (relative: to the config's directory). */
  devices?: string;
  /** keymesh: `DevicesMayLeave = true`: those devices may reach addresses outside the mesh's networks (default false). */
  devicesMayLeave: boolean;
  /** keymesh: `Certificate`, `CA`, `Revocations` as written (see mesh.ts); absent without them. */
  meshKeys?: MeshKeys;
  /** keymesh: the mesh certificate, CA and revocation list, decoded and checked (see mesh.ts). */
  mesh?: MeshConfig;
}

export interface PeerConfig {
  publicKey: Uint8Array;
  presharedKey?: Uint8Array;
  allowedIps: Array<{ addr: Uint8Array; cidr: number; family: 4 | 6; text: string }>;
  endpoint?: { host: string; port: number };
  persistentKeepalive?: number;
  /** keymesh: this peer is a lighthouse we register with and ask about other peers. */
  lighthouse: boolean;
  /** keymesh: `Name =`, what the peer is called in the mesh's names. */
  name?: string;
  line: number;
}

export interface WgQuickConfig {
  file: string;
  interface: InterfaceConfig;
  peers: PeerConfig[];
}

/** What an [Interface] section without the optional keys means: no addresses, DNS, hooks or extras. */
export function interfaceDefaults(): Omit<InterfaceConfig, 'privateKey' | 'listenPort' | 'fwmark' | 'mtu' | 'table'> {
  return { addresses: [], dns: [], dnsSearch: [], preUp: [], postUp: [], preDown: [], postDown: [], saveConfig: false, isLighthouse: false, portMapping: true, mssClamp: true, metricsPublic: false, devicesMayLeave: false };
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly problem: string,
  ) {
    super(`${file}:${line}: ${problem}`);
    this.name = 'ConfigError';
  }
}

/** IPv4/IPv6 literal → bytes, or null. */
export function parseIp(text: string): { bytes: Uint8Array; family: 4 | 6 } | null {
  const fam = isIP(text);
  if (fam === 4) return { bytes: new Uint8Array(text.split('.').map(Number)), family: 4 };
  if (fam !== 6 || text.includes('%')) return null;
  let s = text;
  const last = s.lastIndexOf(':');
  if (s.slice(last + 1).includes('.')) {
    const q = s.slice(last + 1).split('.').map(Number);
    s = `${s.slice(0, last + 1)}${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = s.includes('::') ? [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    bytes[2 * i] = v >> 8;
    bytes[2 * i + 1] = v & 0xff;
  });
  return { bytes, family: 6 };
}

/** "a.b.c.d/n" or "x::y/n" (prefix optional: full length). Returns a problem string on error. */
export function parseCidr(text: string): { bytes: Uint8Array; family: 4 | 6; cidr: number; addr: string } | string {
  const slash = text.indexOf('/');
  const addr = slash >= 0 ? text.slice(0, slash) : text;
  const ip = parseIp(addr);
  if (!ip) return `"${text}" is not an IPv4 or IPv6 address`;
  const max = ip.family === 4 ? 32 : 128;
  let cidr = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      return `"${text}" is not a valid IPv${ip.family} prefix (length must be 0–${max})`;
    }
    cidr = Number(p);
  }
  return { bytes: ip.bytes, family: ip.family, cidr, addr };
}

/** 127.0.0.0/8, ::1 (and ::ffff:127.x.y.z): only this host can connect. */
export function isLoopback(host: string): boolean {
  const ip = parseIp(host);
  if (!ip) return false;
  const b = ip.bytes;
  if (ip.family === 4) return b[0] === 127;
  const zeros = (n: number) => b.slice(0, n).every((x) => x === 0);
  if (zeros(15) && b[15] === 1) return true;
  return zeros(10) && b[10] === 0xff && b[11] === 0xff && b[12] === 127;
}

/** Address and DNS values: wg-quick turns commas into spaces and splits on whitespace. */
function list(value: string): string[] {
  return value.split(/[\s,]+/).filter((s) => s.length > 0);
}

const HOSTNAME_SHAPE = /^(?=.{1,253}\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/;

/** A DNS name; all-digit dotted text ("300.1.1.1") is a broken IPv4 address, not a name. */
function isHostname(text: string): boolean {
  return HOSTNAME_SHAPE.test(text) && !/^[\d.]+$/.test(text);
}

function parsePort(v: string): number | null {
  if (!/^\d{1,5}$/.test(v)) return null;
  const n = Number(v);
  return n <= 65535 ? n : null;
}

/**
 * Endpoint forms: `192.0.2.1:51820`, `[2001:db8::1]:51820` (a zone such as `%eth0` is kept),
 * `vpn.example.net:51820`. The host is not resolved here. Returns a problem string on error.
 */
export function parseEndpoint(v: string): { host: string; port: number } | string {
  let host: string;
  let portText: string;
  if (v.startsWith('[')) {
    const close = v.indexOf(']');
    if (close < 0 || v[close + 1] !== ':') return `"${v}" is not HOST:PORT (IPv6 addresses go in brackets: [2001:db8::1]:51820)`;
    host = v.slice(1, close);
    portText = v.slice(close + 2);
    if (isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  } else {
    const colon = v.lastIndexOf(':');
    if (colon <= 0) return `"${v}" is not HOST:PORT (e.g. 192.0.2.1:51820 or vpn.example.net:51820)`;
    host = v.slice(0, colon);
    portText = v.slice(colon + 1);
    if (host.includes(':')) return `"${v}": put an IPv6 address in brackets, e.g. [${host}]:${portText}`;
    if (!isIP(host) && !isHostname(host)) {
      return `"${host}" is not an IP address or a host name`;
    }
  }
  const port = parsePort(portText);
  if (port === null || port === 0) return `"${portText}" is not a port number (1–65535)`;
  return { host, port };
}

const INTERFACE_KEYS = new Set([
  'privatekey',
  'listenport',
  'fwmark',
  'address',
  'mtu',
  'dns',
  'table',
  'preup',
  'postup',
  'predown',
  'postdown',
  'saveconfig',
  'islighthouse',
  'portmapping',
  'mssclamp',
  'forgetafter',
  'meshdns',
  'metricslisten',
  'metricspublic',
  'devices',
  'devicesmayleave',
  'certificate',
  'ca',
  'revocations',
]);
const PEER_KEYS = new Set(['publickey', 'presharedkey', 'allowedips', 'endpoint', 'persistentkeepalive', 'lighthouse', 'name']);

/** keymesh's own boolean keys: true or false, case-insensitive, as SaveConfig. */
function parseBool(value: string): boolean | null {
  return /^true$/i.test(value) ? true : /^false$/i.test(value) ? false : null;
}

/**
 * Names are echoed in errors only when they look like names: a line such as
 * "PrivateKey oJpZ…=" (no "=" between) must not come back out with the key in it.
 */
function shown(name: string): string | null {
  return /^[A-Za-z][A-Za-z0-9]{0,31}$/.test(name) ? name : null;
}

/** Belt and braces: anything shaped like a base64 key is cut out of every error message. */
function redact(problem: string): string {
  return problem.replace(/[A-Za-z0-9+/]{40,}={0,2}/g, '(hidden)');
}

type PartialInterface = Omit<InterfaceConfig, 'privateKey'> & { privateKey?: Uint8Array; line: number; addressLine?: number; metricsLine?: number };
type PartialPeer = Omit<PeerConfig, 'publicKey'> & { publicKey?: Uint8Array };

/**
 * Parse a wg-quick configuration. Splitting follows the two programs that read the file today:
 * for the keys `wg setconf` reads (PrivateKey, ListenPort, FwMark, PublicKey, PresharedKey,
 * AllowedIPs, Endpoint, PersistentKeepalive) all whitespace inside the value is ignored, as
 * wireguard-tools strips it; Address and DNS are split on commas and whitespace, as wg-quick's
 * `${value//,/ }` does; PreUp/PostUp/PreDown/PostDown keep their text (trimmed) verbatim.
 * Throws ConfigError ("FILE:LINE: what is wrong") at the first problem. Mesh keys given inline
 * are checked here against `opts.nowSec` (default: the clock); files they name wait for loadWgQuick.
 */
export function parseWgQuick(text: string, file: string, opts: { nowSec?: number } = {}): WgQuickConfig {
  const lines = text.split(/\r?\n/);
  let section: 'none' | 'interface' | 'peer' = 'none';
  let iface: PartialInterface | null = null;
  const peers: PartialPeer[] = [];
  const err = (line: number, problem: string): never => {
    throw new ConfigError(file, line, redact(problem));
  };

  for (let i = 0; i < lines.length; i++) {
    const ln = i + 1;
    const hash = lines[i].indexOf('#');
    const raw = (hash >= 0 ? lines[i].slice(0, hash) : lines[i]).trim();
    if (raw === '') continue;
    if (raw.startsWith('[')) {
      const m = /^\[\s*([A-Za-z]+)\s*\]$/.exec(raw);
      const name = m?.[1].toLowerCase();
      if (name === 'interface') {
        if (iface) err(ln, `a second [Interface] section (the first is at line ${iface.line}; only one is allowed)`);
        iface = { line: ln, ...interfaceDefaults() };
        section = 'interface';
      } else if (name === 'peer') {
        peers.push({ allowedIps: [], lighthouse: false, line: ln });
        section = 'peer';
      } else {
        const what = m && shown(m[1]) ? `[${m[1]}]` : 'header';
        err(ln, `unknown section ${what} (expected [Interface] or [Peer])`);
      }
      continue;
    }
    const eq = raw.indexOf('=');
    const keyText = eq >= 0 ? raw.slice(0, eq).trim() : '';
    const name = shown(keyText);
    if (eq < 0 || !name) {
      const first = shown(raw.split(/\s+/)[0]);
      err(ln, `expected "Key = Value"${first ? ` (the line starts with ${first})` : ''}`);
    }
    const key = keyText.toLowerCase();
    const value = raw.slice(eq + 1).trim();
    // wireguard-tools removes every whitespace character before parsing its own keys.
    const packed = value.replace(/\s+/g, '');
    if (section === 'none') err(ln, `${name} is outside any section (the file must start with [Interface])`);

    if (section === 'interface') {
      const f = iface!;
      if (!INTERFACE_KEYS.has(key)) {
        err(ln, PEER_KEYS.has(key) ? `${name} belongs in a [Peer] section, not [Interface]` : `unknown key ${name} in [Interface]`);
      }
      switch (key) {
        case 'privatekey': {
          const k = decodeKey(packed);
          if (!k) err(ln, 'PrivateKey is not a valid base64 key (44 characters, as `wg genkey` prints)');
          f.privateKey = k!;
          break;
        }
        case 'listenport': {
          const p = parsePort(packed);
          if (p === null) err(ln, `ListenPort: "${packed}" is not a port number (0–65535)`);
          f.listenPort = p!;
          break;
        }
        case 'fwmark': {
          if (packed.toLowerCase() === 'off') f.fwmark = 0;
          else {
            const n = /^0x[0-9a-f]{1,8}$/i.test(packed) ? parseInt(packed, 16) : /^\d{1,10}$/.test(packed) ? Number(packed) : NaN;
            if (!(n >= 0 && n <= 0xffffffff)) err(ln, `FwMark: "${packed}" is not a 32-bit number (decimal or 0x hex) or "off"`);
            f.fwmark = n;
          }
          break;
        }
        case 'address':
          f.addressLine ??= ln;
          for (const item of list(value)) {
            const c = parseCidr(item);
            if (typeof c === 'string') err(ln, `Address: ${c}`);
            const cc = c as Exclude<typeof c, string>;
            f.addresses.push({ addr: cc.addr, cidr: cc.cidr, family: cc.family });
          }
          break;
        case 'mtu': {
          const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
          if (!(n >= 576 && n <= 65535)) err(ln, `MTU: "${value}" is not a valid MTU (576–65535)`);
          f.mtu = n;
          break;
        }
        case 'dns':
          for (const item of list(value)) {
            if (isIP(item)) f.dns.push(item);
            else if (isHostname(item)) f.dnsSearch.push(item);
            else err(ln, `DNS: "${item}" is neither an IP address nor a search domain`);
          }
          break;
        case 'table':
          if (!/^[A-Za-z0-9_.-]+$/.test(value)) err(ln, `Table: "${value}" is not "off", "auto", a number or a table name`);
          f.table = value.toLowerCase() === 'off' || value.toLowerCase() === 'auto' ? value.toLowerCase() : value;
          break;
        case 'preup':
          f.preUp.push(value);
          break;
        case 'postup':
          f.postUp.push(value);
          break;
        case 'predown':
          f.preDown.push(value);
          break;
        case 'postdown':
          f.postDown.push(value);
          break;
        case 'saveconfig':
          if (!/^(true|false)$/i.test(value)) err(ln, `SaveConfig: "${value}" is neither true nor false`);
          f.saveConfig = value.toLowerCase() === 'true';
          break;
        case 'islighthouse': {
          const b = parseBool(value);
          if (b === null) err(ln, `IsLighthouse: "${value}" is neither true nor false`);
          f.isLighthouse = b!;
          break;
        }
        case 'portmapping':
          if (!/^(on|off)$/i.test(value)) err(ln, `PortMapping: "${value}" is neither on nor off`);
          f.portMapping = value.toLowerCase() === 'on';
          break;
        case 'mssclamp':
          if (!/^(on|off)$/i.test(value)) err(ln, `MssClamp: "${value}" is neither on nor off`);
          f.mssClamp = value.toLowerCase() === 'on';
          break;
        case 'meshdns':
          if (!/^(auto|direct|off)$/i.test(value)) err(ln, `MeshDNS: "${shown(value) ?? '…'}" is none of auto, direct, off`);
          f.meshDns = value.toLowerCase() as 'auto' | 'direct' | 'off';
          break;
        case 'forgetafter': {
          if (!/^\d{1,7}$/.test(value) || Number(value) < 10) err(ln, `ForgetAfter: "${value}" is not a number of seconds (at least 10)`);
          f.forgetAfter = Number(value);
          break;
        }
        case 'metricslisten': {
          const e = parseEndpoint(packed);
          if (typeof e === 'string' || isIP(e.host) === 0 || e.host.includes('%')) {
            err(ln, `MetricsListen: "${packed}" is not IP:PORT (e.g. 127.0.0.1:9586 or [::1]:9586)`);
          }
          f.metricsListen = e as { host: string; port: number };
          f.metricsLine = ln;
          break;
        }
        case 'metricspublic': {
          const b = parseBool(value);
          if (b === null) err(ln, `MetricsPublic: "${value}" is neither true nor false`);
          f.metricsPublic = b!;
          break;
        }
        case 'devices':
          if (f.devices !== undefined) err(ln, 'a second Devices');
          if (value === '') err(ln, 'Devices is empty (expected the path of the devices file)');
          f.devices = value;
          break;
        case 'devicesmayleave': {
          const b = parseBool(value);
          if (b === null) err(ln, `DevicesMayLeave: "${value}" is neither true nor false`);
          f.devicesMayLeave = b!;
          break;
        }
        case 'certificate':
        case 'ca':
        case 'revocations': {
          const which = key as 'certificate' | 'ca' | 'revocations';
          const keys = (f.meshKeys ??= {});
          const first = keys[which];
          if (first) err(ln, `a second ${name} (the first is at line ${first.line})`);
          if (value === '') err(ln, `${name} is empty (expected a file path${which === 'revocations' ? '' : ' or the one-line form'})`);
          keys[which] = { value, line: ln };
          break;
        }
      }
    } else {
      const p = peers[peers.length - 1];
      if (!PEER_KEYS.has(key)) {
        err(ln, INTERFACE_KEYS.has(key) ? `${name} belongs in the [Interface] section, not [Peer]` : `unknown key ${name} in [Peer]`);
      }
      switch (key) {
        case 'publickey': {
          const k = decodeKey(packed);
          if (!k) err(ln, 'PublicKey is not a valid base64 key (44 characters, as `wg pubkey` prints)');
          p.publicKey = k!;
          break;
        }
        case 'presharedkey': {
          const k = decodeKey(packed);
          if (!k) err(ln, 'PresharedKey is not a valid base64 key (44 characters, as `wg genpsk` prints)');
          p.presharedKey = k!;
          break;
        }
        case 'allowedips':
          for (const item of packed.split(',')) {
            if (item === '') continue;
            const c = parseCidr(item);
            if (typeof c === 'string') err(ln, `AllowedIPs: ${c}`);
            const cc = c as Exclude<typeof c, string>;
            p.allowedIps.push({ addr: cc.bytes, cidr: cc.cidr, family: cc.family, text: `${cc.addr}/${cc.cidr}` });
          }
          break;
        case 'endpoint': {
          const e = parseEndpoint(packed);
          if (typeof e === 'string') err(ln, `Endpoint: ${e}`);
          p.endpoint = e as { host: string; port: number };
          break;
        }
        case 'persistentkeepalive': {
          if (packed.toLowerCase() === 'off') p.persistentKeepalive = undefined;
          else {
            const n = /^\d{1,5}$/.test(packed) ? Number(packed) : NaN;
            if (!(n >= 0 && n <= 65535)) err(ln, `PersistentKeepalive: "${packed}" is not a number of seconds (0–65535) or "off"`);
            p.persistentKeepalive = n === 0 ? undefined : n;
          }
          break;
        }
        case 'lighthouse': {
          const b = parseBool(value);
          if (b === null) err(ln, `Lighthouse: "${value}" is neither true nor false`);
          p.lighthouse = b!;
          break;
        }
        case 'name':
          // keymesh: what the peer is called in the mesh's names (DNS: NAME.DOMAIN)
          if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(value.toLowerCase())) err(ln, `Name: "${shown(value) ?? '…'}" is not a name (a DNS label: letters, digits and '-', 1–63 characters, no '-' at either end)`);
          if (p.name !== undefined) err(ln, 'a second Name in this [Peer]');
          p.name = value.toLowerCase();
          break;
      }
    }
  }
  if (!iface) return err(1, 'no [Interface] section');
  const { line: ifaceLine, addressLine, metricsLine, privateKey, ...rest } = iface as PartialInterface;
  if (!privateKey) err(ifaceLine, '[Interface] has no PrivateKey');
  // The metrics name every peer by its public key, with its traffic and handshakes: they stay on
  // this host unless the file says, in a second key, that they should not.
  if (rest.metricsListen && !isLoopback(rest.metricsListen.host) && !rest.metricsPublic) {
    err(
      metricsLine!,
      `MetricsListen: ${rest.metricsListen.host} is not a loopback address; the metrics list every peer's key and traffic, so ` +
        'serving them to the network needs MetricsPublic = true as well (or listen on 127.0.0.1 / [::1])',
    );
  }
  checkMeshKeys(rest.meshKeys, err);
  if (rest.meshKeys && addressLine) rest.meshKeys.addressLine = addressLine;
  const seen = new Map<string, number>();
  const out: PeerConfig[] = [];
  for (const p of peers) {
    if (!p.publicKey) err(p.line, '[Peer] has no PublicKey');
    if (p.lighthouse && !p.endpoint) err(p.line, 'this [Peer] has Lighthouse = true but no Endpoint (a lighthouse must be reachable at a known address)');
    const id = encodeKey(p.publicKey!);
    if (seen.has(id)) err(p.line, `this [Peer] has the same PublicKey as the one at line ${seen.get(id)}`);
    seen.set(id, p.line);
    out.push(p as PeerConfig);
  }
  const result: InterfaceConfig = { privateKey: privateKey!, ...rest };
  completeInlineMesh(result, opts.nowSec ?? Math.floor(Date.now() / 1000), err, addressLine);
  return { file, interface: result, peers: out };
}

/**
 * Read and parse a config file. Like wg-quick, a file that others can read is a warning, not an
 * error (here: any group or other permission bit, since the file holds a private key). Read
 * errors keep their Node `code` (ENOENT, EACCES) for the caller to report. The mesh keys' files
 * (Certificate, CA, Revocations; relative to the file's directory) are read and checked here.
 */
export async function loadWgQuick(path: string, opts: { nowSec?: number } = {}): Promise<{ config: WgQuickConfig; warnings: string[] }> {
  const text = await readFile(path, 'utf8');
  const warnings: string[] = [];
  const st = await stat(path);
  if (st.mode & 0o077) {
    warnings.push(`${path} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}) and holds a private key: chmod 600 ${path}`);
  }
  const config = parseWgQuick(text, path, opts);
  const i = config.interface;
  const err = (line: number, problem: string): never => {
    throw new ConfigError(path, line, redact(problem));
  };
  await completeMeshFiles(i, path, opts.nowSec ?? Math.floor(Date.now() / 1000), err, i.meshKeys?.addressLine);
  return { config, warnings };
}

/**
 * Resolve an endpoint's host; IP literals (with an IPv6 zone, if any) pass through untouched.
 *
 * Choice of address: `wg` takes the first answer getaddrinfo(3) gives, whose order depends on
 * the host's gai.conf and routes. We prefer the first IPv4 answer and fall back to the first
 * IPv6 one, so the same config picks the same path on every machine and a host with a broken
 * IPv6 uplink still connects; a peer that should be reached over IPv6 can be given an IPv6
 * literal. Failure throws, naming the host and the resolver's error code (kept as the error's
 * `code`: EAI_AGAIN, no answer yet; ENOTFOUND, the name does not exist).
 */
export async function resolveEndpoint(ep: { host: string; port: number }): Promise<{ address: string; family: 4 | 6; port: number }> {
  const fam = isIP(ep.host);
  if (fam === 4 || fam === 6) return { address: ep.host, family: fam, port: ep.port };
  let all: Array<{ address: string; family: number }>;
  try {
    all = await lookup(ep.host, { all: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw Object.assign(new Error(`cannot resolve endpoint host "${ep.host}": ${code ?? (e as Error).message}`), { code });
  }
  const pick = all.find((a) => a.family === 4) ?? all[0];
  if (!pick) throw Object.assign(new Error(`endpoint host "${ep.host}" has no addresses`), { code: 'ENODATA' });
  return { address: pick.address, family: pick.family as 4 | 6, port: ep.port };
}

/**
 * Write a config back (SaveConfig) in the form wg-quick's `save` produces; parsing the result
 * gives back an equal config. It contains the private key: the caller writes it with mode 0600
 * and nothing else should print it.
 */
export function serializeWgQuick(cfg: WgQuickConfig): string {
  const i = cfg.interface;
  const out: string[] = ['[Interface]', `PrivateKey = ${encodeKey(i.privateKey)}`];
  if (i.listenPort !== undefined) out.push(`ListenPort = ${i.listenPort}`);
  if (i.fwmark) out.push(`FwMark = 0x${i.fwmark.toString(16)}`);
  if (i.addresses.length && !i.mesh?.addressesFromCert) out.push(`Address = ${i.addresses.map((a) => `${a.addr}/${a.cidr}`).join(', ')}`);
  if (i.mtu !== undefined) out.push(`MTU = ${i.mtu}`);
  if (i.dns.length || i.dnsSearch.length) out.push(`DNS = ${[...i.dns, ...i.dnsSearch].join(', ')}`);
  if (i.table !== undefined) out.push(`Table = ${i.table}`);
  for (const [k, v] of [
    ['PreUp', i.preUp],
    ['PostUp', i.postUp],
    ['PreDown', i.preDown],
    ['PostDown', i.postDown],
  ] as const)
    for (const c of v) out.push(`${k} = ${c}`);
  if (i.saveConfig) out.push('SaveConfig = true');
  if (i.isLighthouse) out.push('IsLighthouse = true');
  if (!i.portMapping) out.push('PortMapping = off');
  if (!i.mssClamp) out.push('MssClamp = off');
  if (i.meshDns) out.push(`MeshDNS = ${i.meshDns}`);
  if (i.forgetAfter !== undefined) out.push(`ForgetAfter = ${i.forgetAfter}`);
  if (i.metricsListen) out.push(`MetricsListen = ${i.metricsListen.host.includes(':') ? `[${i.metricsListen.host}]` : i.metricsListen.host}:${i.metricsListen.port}`);
  if (i.metricsPublic) out.push('MetricsPublic = true');
  if (i.devices !== undefined) out.push(`Devices = ${i.devices}`);
  if (i.devicesMayLeave) out.push('DevicesMayLeave = true');
  const m = i.meshKeys;
  if (m?.certificate) out.push(`Certificate = ${m.certificate.value}`);
  if (m?.ca) out.push(`CA = ${m.ca.value}`);
  if (m?.revocations) out.push(`Revocations = ${m.revocations.value}`);
  for (const p of cfg.peers) {
    out.push('', '[Peer]', `PublicKey = ${encodeKey(p.publicKey)}`);
    if (p.presharedKey) out.push(`PresharedKey = ${encodeKey(p.presharedKey)}`);
    if (p.allowedIps.length) out.push(`AllowedIPs = ${p.allowedIps.map((a) => a.text).join(', ')}`);
    if (p.endpoint) out.push(`Endpoint = ${p.endpoint.host.includes(':') ? `[${p.endpoint.host}]` : p.endpoint.host}:${p.endpoint.port}`);
    if (p.persistentKeepalive) out.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
    if (p.lighthouse) out.push('Lighthouse = true');
    if (p.name) out.push(`Name = ${p.name}`);
  }
  return out.join('\n') + '\n';
}
