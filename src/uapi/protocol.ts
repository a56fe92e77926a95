/**
 * WireGuard's cross-platform userspace API (wireguard.com/xplatform): the text protocol `wg`
 * speaks to a userspace implementation over /var/run/wireguard/NAME.sock.
 *
 *   get=1\n\n                → key=value lines, then errno=0\n\n
 *   set=1\n key=value… \n\n  → errno=N\n\n
 *
 * Keys are hex for keys, decimal for numbers; peer sections start at public_key=.
 */
import { formatAddress } from '../core/ip.js';
import { hexToKey, isZeroKey, keyToHex } from '../config/keys.js';
import { parseCidr, parseEndpoint, parseIp } from '../config/wgquick.js';

export interface PeerSnapshot {
  publicKey: Uint8Array;
  presharedKey?: Uint8Array;
  endpoint?: { address: string; port: number; family: 4 | 6 };
  persistentKeepalive: number;
  lastHandshakeMs: number;
  rxBytes: bigint;
  txBytes: bigint;
  allowedIps: Array<{ addr: Uint8Array; cidr: number; family: 4 | 6 }>;
}

export interface DeviceSnapshot {
  privateKey?: Uint8Array;
  listenPort: number;
  fwmark: number;
  peers: PeerSnapshot[];
}

export interface PeerChange {
  publicKey: Uint8Array;
  remove: boolean;
  updateOnly: boolean;
  /** undefined: unchanged; null: cleared */
  presharedKey?: Uint8Array | null;
  endpoint?: { address: string; port: number; family: 4 | 6 };
  persistentKeepalive?: number;
  replaceAllowedIps: boolean;
  /** In order; `remove`: `allowed_ip=-PREFIX` (wg ≥ 1.0.20250521 and wireguard-go take one prefix away). */
  allowedIps: Array<{ addr: Uint8Array; cidr: number; family: 4 | 6; remove?: true }>;
}

export interface DeviceChange {
  privateKey?: Uint8Array | null;
  listenPort?: number;
  fwmark?: number;
  replacePeers: boolean;
  peers: PeerChange[];
}

export const EINVAL = 22;
export const EPROTO = 71;

/** A request the UAPI refuses; errno goes back to the client as "errno=N". */
export class UapiError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = 'UapiError';
  }
}

/**
 * The body of a get=1 reply, in wireguard-go's order: device keys, then per peer public_key
 * first (it opens the peer), preshared_key (zeros when none), protocol_version, endpoint,
 * handshake time split into seconds and nanoseconds, counters, keepalive, allowed IPs. The
 * caller appends "errno=0\n\n". A private key is present only when one is set.
 */
export function serializeGet(s: DeviceSnapshot): string {
  const out: string[] = [];
  if (s.privateKey) out.push(`private_key=${keyToHex(s.privateKey)}`);
  out.push(`listen_port=${s.listenPort}`);
  if (s.fwmark) out.push(`fwmark=${s.fwmark}`);
  for (const p of s.peers) {
    out.push(`public_key=${keyToHex(p.publicKey)}`);
    out.push(`preshared_key=${keyToHex(p.presharedKey ?? new Uint8Array(32))}`);
    out.push('protocol_version=1');
    if (p.endpoint) {
      out.push(`endpoint=${p.endpoint.family === 6 ? `[${p.endpoint.address}]` : p.endpoint.address}:${p.endpoint.port}`);
    }
    const ms = Math.max(0, Math.floor(p.lastHandshakeMs));
    out.push(`last_handshake_time_sec=${Math.floor(ms / 1000)}`);
    out.push(`last_handshake_time_nsec=${(ms % 1000) * 1_000_000}`);
    out.push(`tx_bytes=${p.txBytes}`);
    out.push(`rx_bytes=${p.rxBytes}`);
    out.push(`persistent_keepalive_interval=${p.persistentKeepalive}`);
    for (const a of p.allowedIps) out.push(`allowed_ip=${formatAddress(a.addr)}/${a.cidr}`);
  }
  return out.map((l) => l + '\n').join('');
}

function keyName(key: string): string {
  return /^[a-z_]{1,40}$/.test(key) ? key : '(not shown)';
}

function num(key: string, v: string, max: number): number {
  if (!/^\d{1,10}$/.test(v) || Number(v) > max) throw new UapiError(EINVAL, `${key}: "${v}" is not a number in 0–${max}`);
  return Number(v);
}

/** replace_peers, remove, update_only, replace_allowed_ips: wireguard-go takes "true" and nothing else. */
function onlyTrue(key: string, v: string): true {
  if (v === 'true') return true;
  throw new UapiError(EINVAL, `${key}: "${v}" is not true (the only value it takes)`);
}

/**
 * Parse the lines of a set=1 request (without the set=1 line and the terminating blank line)
 * into one DeviceChange. The whole request is parsed before anything is applied, so a bad line
 * changes nothing (wireguard-go applies line by line and may leave half a change behind).
 * Throws UapiError: EINVAL for anything malformed or unknown, EPROTO for protocol_version != 1.
 * An all-zero private_key or preshared_key means "clear" (null), as `wg … private-key /dev/null`
 * sends.
 */
export function parseSet(body: string): DeviceChange {
  const change: DeviceChange = { replacePeers: false, peers: [] };
  let peer: PeerChange | null = null;
  for (const line of body.split('\n')) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    // Line contents are never echoed: a mangled private_key line would otherwise end up in a log.
    if (eq <= 0) throw new UapiError(EINVAL, 'malformed line (expected key=value)');
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'public_key') {
      const k = hexToKey(value);
      if (!k) throw new UapiError(EINVAL, 'public_key is not 64 hex digits');
      peer = { publicKey: k, remove: false, updateOnly: false, replaceAllowedIps: false, allowedIps: [] };
      change.peers.push(peer);
      continue;
    }
    if (!peer) {
      switch (key) {
        case 'private_key': {
          const k = hexToKey(value);
          if (!k) throw new UapiError(EINVAL, 'private_key is not 64 hex digits');
          change.privateKey = isZeroKey(k) ? null : k;
          break;
        }
        case 'listen_port':
          change.listenPort = num(key, value, 65535);
          break;
        case 'fwmark':
          change.fwmark = value === '' ? 0 : num(key, value, 0xffffffff);
          break;
        case 'replace_peers':
          change.replacePeers = onlyTrue(key, value);
          break;
        case 'protocol_version':
          if (value !== '1') throw new UapiError(EPROTO, `protocol_version ${value} is not supported`);
          break;
        default:
          throw new UapiError(EINVAL, `unknown device key ${keyName(key)}`);
      }
      continue;
    }
    switch (key) {
      case 'remove':
        peer.remove = onlyTrue(key, value);
        break;
      case 'update_only':
        peer.updateOnly = onlyTrue(key, value);
        break;
      case 'preshared_key': {
        const k = hexToKey(value);
        if (!k) throw new UapiError(EINVAL, 'preshared_key is not 64 hex digits');
        peer.presharedKey = isZeroKey(k) ? null : k;
        break;
      }
      case 'endpoint': {
        const e = parseEndpoint(value);
        if (typeof e === 'string') throw new UapiError(EINVAL, `endpoint: ${e}`);
        // `wg` resolves names itself and sends numbers; an IPv6 link-local address may carry
        // its zone ("fe80::1%eth0"), which is kept for the socket layer.
        const zone = e.host.indexOf('%');
        const ip = parseIp(zone >= 0 ? e.host.slice(0, zone) : e.host);
        if (!ip || (zone >= 0 && (ip.family !== 6 || !/^[A-Za-z0-9_.-]{1,15}$/.test(e.host.slice(zone + 1))))) {
          throw new UapiError(EINVAL, `endpoint: "${e.host}" is not an IP address`);
        }
        peer.endpoint = { address: e.host, port: e.port, family: ip.family };
        break;
      }
      case 'persistent_keepalive_interval':
        peer.persistentKeepalive = num(key, value, 65535);
        break;
      case 'replace_allowed_ips':
        // what came before in this section is cleared with the rest (wireguard-go applies in order)
        peer.replaceAllowedIps = onlyTrue(key, value);
        peer.allowedIps = [];
        break;
      case 'allowed_ip': {
        const remove = value.startsWith('-');
        const text = remove ? value.slice(1) : value;
        const c = parseCidr(text);
        if (typeof c === 'string' || !text.includes('/')) throw new UapiError(EINVAL, `allowed_ip: "${value}" is not a prefix`);
        peer.allowedIps.push(remove ? { addr: c.bytes, cidr: c.cidr, family: c.family, remove } : { addr: c.bytes, cidr: c.cidr, family: c.family });
        break;
      }
      case 'protocol_version':
        if (value !== '1') throw new UapiError(EPROTO, `protocol_version ${value} is not supported`);
        break;
      default:
        throw new UapiError(EINVAL, `unknown peer key ${keyName(key)}`);
    }
  }
  return change;
}
