/**
 * NAT Port Mapping Protocol, NAT-PMP (RFC 6886): the wire format, as small encode/decode
 * functions, and the client's Seconds Since Start of Epoch check (§3.6). No I/O here.
 *
 * Every message starts with an 8-bit version (0) and an 8-bit opcode; opcodes 0–127 are client
 * requests, 128 + op is the gateway's response to op (§3). All numbers are big-endian; the
 * IPv4 address goes as its four bytes (§3). Responses carry a 16-bit result code and the
 * gateway's Seconds Since Start of Epoch (SSSoE), the time since its mapping table was last
 * initialised, which is how a client notices that the gateway restarted and lost its mappings.
 *
 *   external address request (§3.2)   | 0 | 0 |
 *   external address response         | 0 | 128 | result (16) | SSSoE (32) | external IPv4 (32) |
 *   map request (§3.3)                | 0 | 1 UDP / 2 TCP | reserved (16) | internal port (16) |
 *                                     | suggested external port (16) | requested lifetime (32) |
 *   map response                      | 0 | 128 + op | result (16) | SSSoE (32) | internal port (16) |
 *                                     | mapped external port (16) | lifetime (32) |
 *
 * Decoders return null for anything malformed and never throw: a datagram is data.
 */
import { formatAddress } from '../../core/ip.js';
import { parseIp } from '../../config/wgquick.js';

export const NATPMP_VERSION = 0;
/** §3.1: requests go to this port of the gateway. */
export const NATPMP_SERVER_PORT = 5351;
/** §3.2.1: the gateway announces its address (and a restart) to 224.0.0.1 on this port. */
export const NATPMP_CLIENT_PORT = 5350;
export const NATPMP_ANNOUNCE_GROUP = '224.0.0.1';

export const NATPMP_OP_EXTERNAL_ADDRESS = 0;
export const NATPMP_OP_MAP_UDP = 1;
export const NATPMP_OP_MAP_TCP = 2;
/** §3: a response's opcode is 128 + the request's. */
export const NATPMP_RESPONSE = 128;

/** §3.5 result codes. Clients treat codes not listed here as fatal errors of the request. */
export const NatPmpResult = {
  SUCCESS: 0,
  UNSUPPORTED_VERSION: 1,
  NOT_AUTHORIZED: 2,
  NETWORK_FAILURE: 3,
  OUT_OF_RESOURCES: 4,
  UNSUPPORTED_OPCODE: 5,
} as const;

const RESULT_NAMES = ['Success', 'Unsupported Version', 'Not Authorized/Refused', 'Network Failure', 'Out of resources', 'Unsupported opcode'];

/** "Not Authorized/Refused (2)"; an undefined code as "result 9". */
export function natPmpResultName(code: number): string {
  return code < RESULT_NAMES.length ? `${RESULT_NAMES[code]} (${code})` : `result ${code}`;
}

/** §3.3: the RECOMMENDED mapping lifetime, seconds. */
export const NATPMP_RECOMMENDED_LIFETIME = 7200;
/** §3.1: wait 250 ms for the first answer, doubling each time, for up to nine attempts. */
export const NATPMP_INITIAL_TIMEOUT_MS = 250;
export const NATPMP_MAX_ATTEMPTS = 9;

const EXTERNAL_ADDRESS_REQUEST_SIZE = 2;
const MAP_REQUEST_SIZE = 12;
const HEADER_SIZE = 8; // version, opcode, result, SSSoE: every response has at least this
const EXTERNAL_ADDRESS_RESPONSE_SIZE = 12;
const MAP_RESPONSE_SIZE = 16;

export type MapProtocol = 'udp' | 'tcp';

const opOf = (p: MapProtocol) => (p === 'udp' ? NATPMP_OP_MAP_UDP : NATPMP_OP_MAP_TCP);

// ───────────────────────────── requests ─────────────────────────────

export interface NatPmpMapRequest {
  protocol: MapProtocol;
  internalPort: number;
  /** 0: any port the gateway likes. A renewal suggests the port it was given (§3.3). */
  suggestedExternalPort: number;
  /** Seconds; 0 deletes the mapping (§3.4), and then the suggested port must be 0. */
  lifetime: number;
}

export type NatPmpRequest =
  | { kind: 'external-address' }
  | ({ kind: 'map' } & NatPmpMapRequest)
  /** An opcode below 128 that this version does not define: the gateway answers result 5 (§3.5). */
  | { kind: 'unsupported-opcode'; opcode: number };

export function encodeNatPmpExternalAddressRequest(): Uint8Array {
  return new Uint8Array([NATPMP_VERSION, NATPMP_OP_EXTERNAL_ADDRESS]);
}

export function encodeNatPmpMapRequest(r: NatPmpMapRequest): Uint8Array {
  const b = new Uint8Array(MAP_REQUEST_SIZE);
  const v = new DataView(b.buffer);
  b[0] = NATPMP_VERSION;
  b[1] = opOf(r.protocol);
  // bytes 2–3 reserved, zero
  v.setUint16(4, r.internalPort);
  v.setUint16(6, r.suggestedExternalPort);
  v.setUint32(8, r.lifetime);
  return b;
}

/**
 * A request as the gateway reads it. Null for what §3.5 says to ignore silently (an opcode of 128
 * or more is a response, not a request) and for what cannot be read (too short, not version 0:
 * the caller answers a wrong version itself, since it may speak PCP).
 */
export function decodeNatPmpRequest(b: Uint8Array): NatPmpRequest | null {
  if (b.length < EXTERNAL_ADDRESS_REQUEST_SIZE || b[0] !== NATPMP_VERSION) return null;
  const op = b[1];
  if (op >= NATPMP_RESPONSE) return null;
  if (op === NATPMP_OP_EXTERNAL_ADDRESS) return { kind: 'external-address' };
  if (op !== NATPMP_OP_MAP_UDP && op !== NATPMP_OP_MAP_TCP) return { kind: 'unsupported-opcode', opcode: op };
  if (b.length < MAP_REQUEST_SIZE) return null;
  const v = view(b);
  return {
    kind: 'map',
    protocol: op === NATPMP_OP_MAP_UDP ? 'udp' : 'tcp',
    internalPort: v.getUint16(4),
    suggestedExternalPort: v.getUint16(6),
    lifetime: v.getUint32(8),
  };
}

// ───────────────────────────── responses ─────────────────────────────

export interface NatPmpExternalAddressResponse {
  kind: 'external-address';
  resultCode: number;
  /** Seconds Since Start of Epoch. */
  epoch: number;
  /** Dotted quad; null when the result is an error (the field is then undefined, §3.2). */
  externalAddress: string | null;
}

export interface NatPmpMapResponse {
  kind: 'map';
  protocol: MapProtocol;
  resultCode: number;
  epoch: number;
  internalPort: number;
  externalPort: number;
  lifetime: number;
}

/**
 * An error answer of the header alone (version, opcode, result, SSSoE): how a gateway answers a
 * version it does not speak (§3.5), and how a NAT-PMP-only gateway answers a PCP request.
 * `opcode` is as sent: §3.5's figure shows 0 there, most gateways send 128 + the request's.
 */
export interface NatPmpErrorResponse {
  kind: 'error';
  opcode: number;
  resultCode: number;
  epoch: number;
}

export type NatPmpResponse = NatPmpExternalAddressResponse | NatPmpMapResponse | NatPmpErrorResponse;

export function encodeNatPmpExternalAddressResponse(r: { resultCode: number; epoch: number; externalAddress: string | null }): Uint8Array {
  const b = header(NATPMP_RESPONSE + NATPMP_OP_EXTERNAL_ADDRESS, r.resultCode, r.epoch, EXTERNAL_ADDRESS_RESPONSE_SIZE);
  // On an error the address MUST be sent as zero (§3.2).
  if (r.resultCode === NatPmpResult.SUCCESS && r.externalAddress !== null) b.set(ipv4Bytes(r.externalAddress), 8);
  return b;
}

export function encodeNatPmpMapResponse(r: Omit<NatPmpMapResponse, 'kind'>): Uint8Array {
  const b = header(NATPMP_RESPONSE + opOf(r.protocol), r.resultCode, r.epoch, MAP_RESPONSE_SIZE);
  const v = view(b);
  v.setUint16(8, r.internalPort);
  v.setUint16(10, r.externalPort);
  v.setUint32(12, r.lifetime);
  return b;
}

/** The 8-byte error answer (§3.5): e.g. Unsupported Version, with 0 as the version we speak. */
export function encodeNatPmpErrorResponse(r: { opcode: number; resultCode: number; epoch: number }): Uint8Array {
  return header(r.opcode, r.resultCode, r.epoch, HEADER_SIZE);
}

/**
 * §3.5 Unsupported opcode: the whole request comes back with the opcode's top bit set and result
 * code 5 (a request too short to hold a result code is padded to the 4 bytes that do).
 */
export function encodeNatPmpUnsupportedOpcodeResponse(request: Uint8Array): Uint8Array {
  const b = new Uint8Array(Math.max(4, request.length));
  b.set(request);
  b[1] |= NATPMP_RESPONSE;
  view(b).setUint16(2, NatPmpResult.UNSUPPORTED_OPCODE);
  return b;
}

/**
 * A response as the client reads it; null when it is malformed: shorter than its opcode's format,
 * not version 0, or an opcode this version does not answer with. Bytes past the format are
 * ignored. A short (header-only) answer is accepted for an error result only.
 */
export function decodeNatPmpResponse(b: Uint8Array): NatPmpResponse | null {
  if (b.length < HEADER_SIZE || b[0] !== NATPMP_VERSION) return null;
  const v = view(b);
  const op = b[1];
  const resultCode = v.getUint16(2);
  const epoch = v.getUint32(4);
  const error: NatPmpErrorResponse = { kind: 'error', opcode: op, resultCode, epoch };
  switch (op) {
    case NATPMP_RESPONSE + NATPMP_OP_EXTERNAL_ADDRESS:
      if (b.length < EXTERNAL_ADDRESS_RESPONSE_SIZE) return resultCode !== NatPmpResult.SUCCESS ? error : null;
      return {
        kind: 'external-address',
        resultCode,
        epoch,
        externalAddress: resultCode === NatPmpResult.SUCCESS ? formatAddress(b.subarray(8, 12)) : null,
      };
    case NATPMP_RESPONSE + NATPMP_OP_MAP_UDP:
    case NATPMP_RESPONSE + NATPMP_OP_MAP_TCP:
      if (b.length < MAP_RESPONSE_SIZE) return resultCode !== NatPmpResult.SUCCESS ? error : null;
      return {
        kind: 'map',
        protocol: op === NATPMP_RESPONSE + NATPMP_OP_MAP_UDP ? 'udp' : 'tcp',
        resultCode,
        epoch,
        internalPort: v.getUint16(8),
        externalPort: v.getUint16(10),
        lifetime: v.getUint32(12),
      };
    case NATPMP_OP_EXTERNAL_ADDRESS:
      // §3.5's Unsupported Version figure carries opcode 0; take it as that error and nothing else.
      return resultCode !== NatPmpResult.SUCCESS ? error : null;
    default:
      return null;
  }
}

// ───────────────────────────── epoch ─────────────────────────────

/** What the client remembers of the last packet from the gateway: its SSSoE and our clock then. */
export interface EpochSample {
  epoch: number;
  atMs: number;
}

/**
 * §3.6: the gateway's SSSoE is plausible unless it is more than 2 s below the client's
 * conservative estimate — the last SSSoE plus 7/8 of the time elapsed on the client's clock
 * since. Below that, the gateway has restarted or lost its mapping table, and the client
 * recreates its mappings at once (§3.7).
 */
export function natPmpEpochPlausible(prev: EpochSample, epoch: number, nowMs: number): boolean {
  const elapsed = Math.max(0, nowMs - prev.atMs) / 1000;
  return epoch + 2 >= prev.epoch + (elapsed * 7) / 8;
}

// ───────────────────────────── bytes ─────────────────────────────

function header(op: number, resultCode: number, epoch: number, size: number): Uint8Array {
  const b = new Uint8Array(size);
  const v = view(b);
  b[0] = NATPMP_VERSION;
  b[1] = op;
  v.setUint16(2, resultCode);
  v.setUint32(4, epoch);
  return b;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A dotted quad's four bytes; throws on anything else (caller misuse: addresses are ours). */
function ipv4Bytes(text: string): Uint8Array {
  const ip = parseIp(text);
  if (!ip || ip.family !== 4) throw new Error(`NAT-PMP: "${text}" is not an IPv4 address (NAT-PMP carries IPv4 only)`);
  return ip.bytes;
}
