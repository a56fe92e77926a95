/**
 * Port Control Protocol, PCP (RFC 6887): the wire format of the common header (§7.1, §7.2), the
 * MAP opcode (§11.1) and ANNOUNCE (§14.1), options only as far as a server must read them
 * (§7.3), and the client's Epoch Time check (§8.5). No I/O here.
 *
 *   request header (24 bytes)   | version 2 | R=0, opcode (7) | reserved (16) |
 *                               | requested lifetime (32) | PCP client's IP address (128) |
 *   response header (24 bytes)  | version 2 | R=1, opcode (7) | reserved (8) | result code (8) |
 *                               | lifetime (32) | epoch time (32) | reserved (96) |
 *   MAP payload (36 bytes)      | mapping nonce (96) | protocol (8) | reserved (24) |
 *                               | internal port (16) | suggested/assigned external port (16) |
 *                               | suggested/assigned external IP address (128) |
 *   ANNOUNCE                    header only; lifetime 0
 *
 * Addresses are always 128-bit fields; IPv4 goes as the IPv4-mapped IPv6 address ::ffff:a.b.c.d
 * (§5). A PCP message is a multiple of 4 bytes and at most 1100 bytes (§7).
 *
 * Decoders return null (or a tagged result a server answers with an error) and never throw.
 */
import { formatAddress } from '../../core/ip.js';
import { parseIp } from '../../config/wgquick.js';
import { isMapped } from '../udp-path.js';

export const PCP_VERSION = 2;
/** Requests go to the server's port 5351; ANNOUNCE is multicast to the clients' port 5350 (§14.1). */
export const PCP_SERVER_PORT = 5351;
export const PCP_CLIENT_PORT = 5350;
/** §14.1: where a restarted server announces itself, by family. */
export const PCP_ANNOUNCE_GROUP = { 4: '224.0.0.1', 6: 'ff02::1' } as const;

/** §7: the largest PCP message. */
export const PCP_MAX_MESSAGE = 1100;
export const PCP_HEADER_SIZE = 24;
export const PCP_MAP_PAYLOAD_SIZE = 36;
export const PCP_NONCE_SIZE = 12;
/** §7.1: the top bit of the second byte: 0 request, 1 response. */
export const PCP_RESPONSE_BIT = 0x80;

export const PcpOpcode = { ANNOUNCE: 0, MAP: 1, PEER: 2 } as const;
/** §11.1: the MAP Protocol field holds an IANA protocol number; 0 is "all protocols". */
export const PCP_PROTOCOL_TCP = 6;
export const PCP_PROTOCOL_UDP = 17;

/** §7.4 result codes. */
export const PcpResult = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  NOT_AUTHORIZED: 2,
  MALFORMED_REQUEST: 3,
  UNSUPP_OPCODE: 4,
  UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6,
  NETWORK_FAILURE: 7,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  ADDRESS_MISMATCH: 12,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;

const RESULT_NAMES = Object.keys(PcpResult);

/** "NOT_AUTHORIZED (2)"; an undefined code as "result 42". */
export function pcpResultName(code: number): string {
  return code < RESULT_NAMES.length ? `${RESULT_NAMES[code]} (${code})` : `result ${code}`;
}

/**
 * §7.4: an error's Lifetime says how long the same request will get the same error. The
 * RECOMMENDED values: 30 s for the short-lifetime errors (the network or the server's resources,
 * which pass), 30 min for the long ones (policy, a malformed request, what the server lacks).
 */
export const PCP_SHORT_ERROR_LIFETIME = 30;
export const PCP_LONG_ERROR_LIFETIME = 1800;
const SHORT_LIFETIME_ERRORS: ReadonlySet<number> = new Set([PcpResult.NETWORK_FAILURE, PcpResult.NO_RESOURCES, PcpResult.USER_EX_QUOTA]);

export function pcpErrorLifetime(resultCode: number): number {
  return SHORT_LIFETIME_ERRORS.has(resultCode) ? PCP_SHORT_ERROR_LIFETIME : PCP_LONG_ERROR_LIFETIME;
}

/** §8.1.1: the retransmission timer as the RFC gives it (initial 3 s ±10 %, doubling, at most 1024 s). */
export const PCP_IRT_MS = 3000;
export const PCP_MRT_MS = 1_024_000;

/**
 * §11.2.1: renew a mapping at a random point between 1/2 and 5/8 of its lifetime, so that the
 * clients of one server do not all renew at once. `random` is in [0, 1).
 */
export function pcpRenewalDelayMs(lifetime: number, random: number): number {
  return lifetime * 1000 * (0.5 + random / 8);
}

// ───────────────────────────── addresses ─────────────────────────────

/**
 * An IPv4 or IPv6 literal as PCP's 128-bit field (§5): IPv4 as ::ffff:a.b.c.d, so the all-zeros
 * IPv4 address is ::ffff:0.0.0.0 and the all-zeros IPv6 address is ::. A zone (%eth0) is not
 * part of the address and is dropped. Throws on anything else (caller misuse).
 */
export function pcpAddress(text: string): Uint8Array {
  const ip = parseIp(text.replace(/%.*$/, ''));
  if (!ip) throw new Error(`PCP: "${text}" is not an IPv4 or IPv6 address`);
  if (ip.family === 6) return ip.bytes;
  const out = new Uint8Array(16);
  out[10] = out[11] = 0xff;
  out.set(ip.bytes, 12);
  return out;
}

/** The text of a 128-bit field: a dotted quad for an IPv4-mapped address (all 96 prefix bits checked, §5). */
export function pcpAddressText(a: Uint8Array): string {
  return isMapped(a) ? formatAddress(a.subarray(12, 16)) : formatAddress(a.subarray(0, 16));
}

// ───────────────────────────── requests ─────────────────────────────

/** The MAP opcode's fields (§11.1): suggested values in a request, assigned ones in a success response. */
export interface PcpMapFields {
  /** 12 random bytes the client chose; a renewal or a delete repeats them (§11.2). */
  nonce: Uint8Array;
  /** IANA protocol number: 17 UDP, 6 TCP, 0 all. */
  protocol: number;
  internalPort: number;
  externalPort: number;
  /** Text; "0.0.0.0" or "::" for "no preference" in a request. */
  externalAddress: string;
}

export interface PcpMapRequest extends PcpMapFields {
  /** Seconds; 0 deletes the mapping. */
  lifetime: number;
  /** The source address the request leaves from (§7.1); the server checks it against the packet's (§8.2). */
  clientAddress: string;
}

export function encodePcpMapRequest(r: PcpMapRequest): Uint8Array {
  const b = requestHeader(PcpOpcode.MAP, r.lifetime, r.clientAddress, PCP_MAP_PAYLOAD_SIZE);
  writeMap(b, r);
  return b;
}

/** §14.1: an ANNOUNCE request asks the server for its epoch; lifetime 0. */
export function encodePcpAnnounceRequest(r: { clientAddress: string }): Uint8Array {
  return requestHeader(PcpOpcode.ANNOUNCE, 0, r.clientAddress, 0);
}

export interface PcpOption {
  code: number;
  data: Uint8Array;
}

/**
 * A request as the server reads it (§8.2), or what the server must answer instead:
 *   unsupported-version  → UNSUPP_VERSION, with the version the server speaks
 *   malformed            → MALFORMED_REQUEST (bad length, or a MAP without its 36 bytes)
 *   malformed-option     → MALFORMED_OPTION (an option runs past the message)
 *   unsupported-opcode   → UNSUPP_OPCODE
 * Null for what §8.2 drops silently: shorter than 2 bytes, or the R bit set (a response).
 */
export type PcpRequest =
  | { kind: 'announce'; lifetime: number; clientAddress: string; options: PcpOption[] }
  | ({ kind: 'map'; lifetime: number; clientAddress: string; options: PcpOption[] } & PcpMapFields)
  | { kind: 'unsupported-version'; version: number }
  | { kind: 'malformed' | 'malformed-option' | 'unsupported-opcode'; opcode: number };

export function decodePcpRequest(b: Uint8Array): PcpRequest | null {
  if (b.length < 2 || b[1] & PCP_RESPONSE_BIT) return null;
  const opcode = b[1];
  if (b[0] !== PCP_VERSION) return { kind: 'unsupported-version', version: b[0] };
  if (!wellSized(b)) return { kind: 'malformed', opcode };
  const v = view(b);
  const lifetime = v.getUint32(4);
  const clientAddress = pcpAddressText(b.subarray(8, 24));
  let payload: number;
  if (opcode === PcpOpcode.ANNOUNCE) payload = 0;
  else if (opcode === PcpOpcode.MAP) payload = PCP_MAP_PAYLOAD_SIZE;
  else return { kind: 'unsupported-opcode', opcode };
  if (b.length < PCP_HEADER_SIZE + payload) return { kind: 'malformed', opcode };
  const options = readOptions(b, PCP_HEADER_SIZE + payload);
  if (!options) return { kind: 'malformed-option', opcode };
  if (opcode === PcpOpcode.ANNOUNCE) return { kind: 'announce', lifetime, clientAddress, options };
  return { kind: 'map', lifetime, clientAddress, options, ...readMap(b) };
}

// ───────────────────────────── responses ─────────────────────────────

export interface PcpResponse {
  /** 2, or for UNSUPP_VERSION the version the server speaks (§9). */
  version: number;
  opcode: number;
  resultCode: number;
  /** Seconds: the mapping's on success; on an error, how long the same request gets the same error. */
  lifetime: number;
  /** The server's Epoch Time, seconds (§8.5). */
  epoch: number;
  /** MAP fields when the response carries them (a success always does; an error may not). */
  map: PcpMapFields | null;
}

export function encodePcpResponse(r: Omit<PcpResponse, 'version'> & { version?: number }): Uint8Array {
  const b = new Uint8Array(PCP_HEADER_SIZE + (r.map ? PCP_MAP_PAYLOAD_SIZE : 0));
  b[0] = r.version ?? PCP_VERSION;
  writeResponseHeader(b, r.opcode, r.resultCode, r.lifetime, r.epoch);
  if (r.map) writeMap(b, r.map);
  return b;
}

/**
 * The error answer to a request the server could not take apart (§7.2, §8.2): the request
 * itself, cut to a multiple of 4 bytes and to 1100 (and padded to a header), with the response
 * header written over its first 12 bytes. That leaves the last 96 bits of the PCP client's IP
 * address in the response's reserved field, where §7.2 wants them.
 */
export function encodePcpErrorForRequest(request: Uint8Array, r: { resultCode: number; lifetime: number; epoch: number }): Uint8Array {
  const n = Math.max(PCP_HEADER_SIZE, Math.min(PCP_MAX_MESSAGE, request.length) & ~3);
  const b = new Uint8Array(n);
  b.set(request.subarray(0, n));
  b[0] = PCP_VERSION;
  writeResponseHeader(b, request.length > 1 ? request[1] & 0x7f : 0, r.resultCode, r.lifetime, r.epoch);
  return b;
}

/**
 * A response as the client reads it (§8.3); null when it is not one: the wrong size (under 24,
 * over 1100, not a multiple of 4), the R bit clear, a version other than 2 except in an
 * UNSUPP_VERSION answer, or a success to MAP without its payload.
 */
export function decodePcpResponse(b: Uint8Array): PcpResponse | null {
  if (!wellSized(b) || !(b[1] & PCP_RESPONSE_BIT)) return null;
  const v = view(b);
  const opcode = b[1] & 0x7f;
  const resultCode = b[3];
  if (b[0] !== PCP_VERSION && resultCode !== PcpResult.UNSUPP_VERSION) return null;
  let map: PcpMapFields | null = null;
  if (opcode === PcpOpcode.MAP) {
    if (b.length >= PCP_HEADER_SIZE + PCP_MAP_PAYLOAD_SIZE) map = readMap(b);
    else if (resultCode === PcpResult.SUCCESS) return null;
  }
  return { version: b[0], opcode, resultCode, lifetime: v.getUint32(4), epoch: v.getUint32(8), map };
}

// ───────────────────────────── epoch ─────────────────────────────

/** What the client remembers of the last response from a server: its Epoch Time and our clock then. */
export interface PcpEpochSample {
  epoch: number;
  atMs: number;
}

/**
 * §8.5: the client's check of a response's Epoch Time against the previous one, in whole
 * seconds. Invalid — the server lost its state — when the server's time went back by more than
 * a second (a second is allowed for reordering), or when the two clocks advanced at clearly
 * different rates: client_delta + 2 < server_delta − server_delta/16, or the same the other way.
 */
export function pcpEpochValid(prev: PcpEpochSample, epoch: number, nowMs: number): boolean {
  if (epoch + 1 < prev.epoch) return false;
  const clientDelta = Math.floor(Math.max(0, nowMs - prev.atMs) / 1000);
  const serverDelta = Math.max(0, epoch - prev.epoch);
  return !(clientDelta + 2 < serverDelta - Math.floor(serverDelta / 16) || serverDelta + 2 < clientDelta - Math.floor(clientDelta / 16));
}

// ───────────────────────────── bytes ─────────────────────────────

function wellSized(b: Uint8Array): boolean {
  return b.length >= PCP_HEADER_SIZE && b.length <= PCP_MAX_MESSAGE && b.length % 4 === 0;
}

function requestHeader(opcode: number, lifetime: number, clientAddress: string, payload: number): Uint8Array {
  const b = new Uint8Array(PCP_HEADER_SIZE + payload);
  b[0] = PCP_VERSION;
  b[1] = opcode; // R = 0
  // bytes 2–3 reserved, zero
  view(b).setUint32(4, lifetime);
  b.set(pcpAddress(clientAddress), 8);
  return b;
}

function writeResponseHeader(b: Uint8Array, opcode: number, resultCode: number, lifetime: number, epoch: number): void {
  const v = view(b);
  b[1] = PCP_RESPONSE_BIT | opcode;
  b[2] = 0;
  b[3] = resultCode;
  v.setUint32(4, lifetime);
  v.setUint32(8, epoch);
}

function writeMap(b: Uint8Array, m: PcpMapFields): void {
  if (m.nonce.length !== PCP_NONCE_SIZE) throw new Error(`PCP: a mapping nonce is ${PCP_NONCE_SIZE} bytes, got ${m.nonce.length}`);
  const o = PCP_HEADER_SIZE;
  b.set(m.nonce, o);
  b[o + 12] = m.protocol;
  // o+13 … o+15 reserved, zero
  const v = view(b);
  v.setUint16(o + 16, m.internalPort);
  v.setUint16(o + 18, m.externalPort);
  b.set(pcpAddress(m.externalAddress), o + 20);
}

function readMap(b: Uint8Array): PcpMapFields {
  const o = PCP_HEADER_SIZE;
  const v = view(b);
  return {
    nonce: b.slice(o, o + PCP_NONCE_SIZE),
    protocol: b[o + 12],
    internalPort: v.getUint16(o + 16),
    externalPort: v.getUint16(o + 18),
    externalAddress: pcpAddressText(b.subarray(o + 20, o + 36)),
  };
}

/**
 * §7.3: options follow the opcode's payload, each a code (8), reserved (8), length (16) of its
 * data, then the data padded to a multiple of 4. Null when one runs past the message.
 */
function readOptions(b: Uint8Array, from: number): PcpOption[] | null {
  const out: PcpOption[] = [];
  const v = view(b);
  let o = from;
  while (o < b.length) {
    if (o + 4 > b.length) return null;
    const length = v.getUint16(o + 2);
    const end = o + 4 + ((length + 3) & ~3);
    if (end > b.length) return null;
    out.push({ code: b[o], data: b.slice(o + 4, o + 4 + length) });
    o = end;
  }
  return out;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
