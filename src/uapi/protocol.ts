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
  allowedIps: Array<{ addr: Uint8Array; cidr: number; family: 4 | 6 }>;
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

export class UapiError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

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

function num(key: string, v: string, max: number): number {
  if (!/^\d{1,10}$/.test(v) || Number(v) > max) throw new UapiError(EINVAL, `${key}: "${v}" is not a number in 0–${max}`);
  return Number(v);
}

function bool(key: string, v: string): boolean {
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new UapiError(EINVAL, `${key}: "${v}" is not true or false`);
}

/** Parse the lines of a set=1 request (without the set=1 line and the terminating blank line). */
export function parseSet(body: string): DeviceChange {
  const change: DeviceChange = { replacePeers: false, peers: [] };
  let peer: PeerChange | null = null;
  for (const line of body.split('\n')) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new UapiError(EINVAL, `malformed line "${line.slice(0, 40)}"`);
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
          change.replacePeers = bool(key, value);
          break;
        case 'protocol_version':
          if (value !== '1') throw new UapiError(EPROTO, `protocol_version ${value} is not supported`);
          break;
        default:
          throw new UapiError(EINVAL, `unknown device key ${key}`);
      }
      continue;
    }
    switch (key) {
      case 'remove':
        peer.remove = bool(key, value);
        break;
      case 'update_only':
        peer.updateOnly = bool(key, value);
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
        const ip = parseIp(e.host);
        if (!ip) throw new UapiError(EINVAL, `endpoint: "${e.host}" is not an IP address`);
        peer.endpoint = { address: e.host, port: e.port, family: ip.family };
        break;
      }
      case 'persistent_keepalive_interval':
        peer.persistentKeepalive = num(key, value, 65535);
        break;
      case 'replace_allowed_ips':
        peer.replaceAllowedIps = bool(key, value);
        break;
      case 'allowed_ip': {
        const c = parseCidr(value);
        if (typeof c === 'string' || !value.includes('/')) throw new UapiError(EINVAL, `allowed_ip: "${value}" is not a prefix`);
        peer.allowedIps.push({ addr: c.bytes, cidr: c.cidr, family: c.family });
        break;
      }
      case 'protocol_version':
        if (value !== '1') throw new UapiError(EPROTO, `protocol_version ${value} is not supported`);
        break;
      default:
        throw new UapiError(EINVAL, `unknown peer key ${key}`);
    }
  }
  return change;
}
