/**
 * The router side of NAT-PMP (RFC 6886) and PCP (RFC 6887), as a test gateway needs it: MAP
 * requests create, refresh and delete mappings with a lifetime; NAT-PMP's external address
 * request is answered with the WAN address; errors for what the gateway does not take. No I/O:
 * it is fed datagrams and the time and returns the answer and the mapping changes, so the same
 * code runs in the netns responder (netns/portmap-responder.ts, which turns the changes into
 * nftables rules) and as the fake gateway of the PortMapper's unit tests.
 *
 * What it does with a request, by its first byte:
 *   0   NAT-PMP: external address (op 0), map UDP/TCP (op 1/2); other ops below 128 come back
 *       with result 5 (§3.5); responses sent to it are ignored
 *   2   PCP: ANNOUNCE and MAP; PEER and others UNSUPP_OPCODE; options in the mandatory range
 *       UNSUPP_OPTION (it supports none); a PCP Client IP that is not the packet's source
 *       ADDRESS_MISMATCH; a malformed request MALFORMED_REQUEST. With natPmpOnly it answers
 *       every PCP request as an old NAT-PMP gateway does: NAT-PMP Unsupported Version (§1.1).
 *   any other version: UNSUPP_VERSION, naming 2 (the highest it speaks)
 * `refuse` answers every map request with NOT_AUTHORIZED (PCP) / result 2 (NAT-PMP), as a
 * router with the feature turned off.
 *
 * A mapping is keyed by (protocol, internal address, internal port): asking again refreshes it
 * and returns the same external port (RFC 6886 §3.3); a PCP mapping answers only to its nonce
 * (a request with another nonce is NOT_AUTHORIZED). Lifetimes are granted up to maxLifetime.
 * The epoch counts seconds from construction or restart().
 */
import {
  decodeNatPmpRequest,
  encodeNatPmpErrorResponse,
  encodeNatPmpExternalAddressResponse,
  encodeNatPmpMapResponse,
  encodeNatPmpUnsupportedOpcodeResponse,
  NATPMP_RESPONSE,
  NATPMP_VERSION,
  natPmpResultName,
  NatPmpResult,
  type MapProtocol,
} from '../src/io/portmap/natpmp.js';
import {
  decodePcpRequest,
  encodePcpErrorForRequest,
  encodePcpResponse,
  PCP_PROTOCOL_TCP,
  PCP_PROTOCOL_UDP,
  PCP_RESPONSE_BIT,
  PCP_VERSION,
  pcpErrorLifetime,
  PcpOpcode,
  pcpResultName,
  PcpResult,
  type PcpMapFields,
} from '../src/io/portmap/pcp.js';

export interface PortMapServerOptions {
  /** The router's WAN (external) IPv4 address. */
  wanAddress: string;
  refuse?: boolean;
  natPmpOnly?: boolean;
  /** The longest lifetime granted, seconds. */
  maxLifetime?: number;
  /** In [0, 1): picks an external port when the suggested one is taken. */
  random?: () => number;
}

export interface ServerMapping {
  protocol: MapProtocol;
  internalAddress: string;
  internalPort: number;
  externalPort: number;
  /** Seconds granted by the last request. */
  lifetime: number;
  expiresAt: number;
  /** The PCP mapping nonce; null for a mapping NAT-PMP made. */
  nonce: Uint8Array | null;
}

export interface MappingChange {
  change: 'add' | 'refresh' | 'delete' | 'expire';
  via: 'pcp' | 'nat-pmp' | 'timer' | 'restart';
  mapping: ServerMapping;
}

export interface Handled {
  reply: Uint8Array | null;
  changes: MappingChange[];
  /** What the request was and what it got, for the responder's log ("PCP MAP → SUCCESS (0)"). */
  note: string;
}

const MIN_DYNAMIC_PORT = 1024;

export class PortMapServer {
  readonly mappings = new Map<string, ServerMapping>();
  readonly counters = { requests: 0, ignored: 0, errors: 0 };
  private epochStart: number;
  private readonly maxLifetime: number;
  private readonly random: () => number;

  constructor(
    readonly opts: PortMapServerOptions,
    now: number,
  ) {
    this.epochStart = now;
    this.maxLifetime = opts.maxLifetime ?? 86_400;
    this.random = opts.random ?? Math.random;
  }

  /** Seconds since the mapping table was initialised (RFC 6886 §3.6, RFC 6887 §8.5). */
  epoch(now: number): number {
    return Math.floor(Math.max(0, now - this.epochStart) / 1000);
  }

  /** Lose every mapping and start a new epoch, as a rebooted router does. Returns the mappings dropped. */
  restart(now: number): MappingChange[] {
    const gone = [...this.mappings.values()].map((mapping) => ({ change: 'delete' as const, via: 'restart' as const, mapping }));
    this.mappings.clear();
    this.epochStart = now;
    return gone;
  }

  /** The unsolicited announcements of a (re)started gateway: PCP ANNOUNCE (§14.1), NAT-PMP's address (§3.2.1). */
  announcements(now: number): Uint8Array[] {
    const epoch = this.epoch(now);
    return [
      encodePcpResponse({ opcode: PcpOpcode.ANNOUNCE, resultCode: PcpResult.SUCCESS, lifetime: 0, epoch, map: null }),
      encodeNatPmpExternalAddressResponse({ resultCode: NatPmpResult.SUCCESS, epoch, externalAddress: this.opts.wanAddress }),
    ];
  }

  /** Drop the mappings whose lifetime ran out. */
  expire(now: number): MappingChange[] {
    const out: MappingChange[] = [];
    for (const [k, m] of this.mappings) {
      if (m.expiresAt > now) continue;
      this.mappings.delete(k);
      out.push({ change: 'expire', via: 'timer', mapping: m });
    }
    return out;
  }

  nextExpiry(): number | null {
    let t: number | null = null;
    for (const m of this.mappings.values()) if (t === null || m.expiresAt < t) t = m.expiresAt;
    return t;
  }

  /** One request from a LAN client (the source address as the packet had it). */
  handle(b: Uint8Array, from: { address: string }, now: number): Handled {
    this.counters.requests++;
    if (b.length === 0) return this.ignore('an empty datagram');
    if (b[0] === NATPMP_VERSION) return this.natPmp(b, from.address, now);
    if (b.length >= 2 && b[1] & PCP_RESPONSE_BIT) return this.ignore(`a response (version ${b[0]})`);
    if (b[0] === PCP_VERSION && this.opts.natPmpOnly) {
      // RFC 6886 §1.1: a NAT-PMP gateway answers a PCP request with Unsupported Version, version 0.
      const reply = encodeNatPmpErrorResponse({ opcode: NATPMP_RESPONSE + (b.length > 1 ? b[1] : 0), resultCode: NatPmpResult.UNSUPPORTED_VERSION, epoch: this.epoch(now) });
      return { reply, changes: [], note: 'PCP request → NAT-PMP Unsupported Version (1)' };
    }
    return this.pcp(b, from.address, now);
  }

  // ───────────────────────────── NAT-PMP ─────────────────────────────

  private natPmp(b: Uint8Array, client: string, now: number): Handled {
    const epoch = this.epoch(now);
    const req = decodeNatPmpRequest(b);
    if (!req) return this.ignore('a malformed or response NAT-PMP datagram');
    if (req.kind === 'unsupported-opcode') {
      this.counters.errors++;
      return { reply: encodeNatPmpUnsupportedOpcodeResponse(b), changes: [], note: `NAT-PMP opcode ${req.opcode} → ${natPmpResultName(NatPmpResult.UNSUPPORTED_OPCODE)}` };
    }
    if (req.kind === 'external-address') {
      return {
        reply: encodeNatPmpExternalAddressResponse({ resultCode: NatPmpResult.SUCCESS, epoch, externalAddress: this.opts.wanAddress }),
        changes: [],
        note: `NAT-PMP external address → ${this.opts.wanAddress}`,
      };
    }
    const answer = (resultCode: number, externalPort: number, lifetime: number, changes: MappingChange[], what: string): Handled => {
      if (resultCode !== NatPmpResult.SUCCESS) this.counters.errors++;
      return {
        reply: encodeNatPmpMapResponse({ protocol: req.protocol, resultCode, epoch, internalPort: req.internalPort, externalPort, lifetime }),
        changes,
        note: `NAT-PMP ${what} ${req.protocol} ${client}:${req.internalPort} → ${natPmpResultName(resultCode)}`,
      };
    };
    if (req.lifetime === 0) {
      // §3.4: a delete; one for a mapping that does not exist succeeds all the same. Internal
      // port 0 deletes all of the client's mappings of that protocol.
      const gone = this.remove((m) => m.protocol === req.protocol && m.internalAddress === client && (req.internalPort === 0 || m.internalPort === req.internalPort), 'nat-pmp');
      return answer(NatPmpResult.SUCCESS, 0, 0, gone, 'delete');
    }
    if (this.opts.refuse || req.internalPort === 0) return answer(NatPmpResult.NOT_AUTHORIZED, 0, 0, [], 'map');
    const r = this.map(req.protocol, client, req.internalPort, req.suggestedExternalPort, req.lifetime, null, now, 'nat-pmp');
    if (!r) return answer(NatPmpResult.OUT_OF_RESOURCES, 0, 0, [], 'map');
    return answer(NatPmpResult.SUCCESS, r.mapping.externalPort, r.mapping.lifetime, [r], 'map');
  }

  // ───────────────────────────── PCP ─────────────────────────────

  private pcp(b: Uint8Array, client: string, now: number): Handled {
    const epoch = this.epoch(now);
    const req = decodePcpRequest(b);
    if (!req) return this.ignore('a PCP datagram under 2 bytes');
    const unreadable = (resultCode: number, what: string): Handled => {
      this.counters.errors++;
      return { reply: encodePcpErrorForRequest(b, { resultCode, lifetime: pcpErrorLifetime(resultCode), epoch }), changes: [], note: `PCP ${what} → ${pcpResultName(resultCode)}` };
    };
    switch (req.kind) {
      case 'unsupported-version':
        return unreadable(PcpResult.UNSUPP_VERSION, `version ${req.version}`);
      case 'malformed':
        return unreadable(PcpResult.MALFORMED_REQUEST, `opcode ${req.opcode}, ${b.length} bytes`);
      case 'malformed-option':
        return unreadable(PcpResult.MALFORMED_OPTION, `opcode ${req.opcode}`);
      case 'unsupported-opcode':
        return unreadable(PcpResult.UNSUPP_OPCODE, `opcode ${req.opcode}`);
    }
    const payload: PcpMapFields | null =
      req.kind === 'map' ? { nonce: req.nonce, protocol: req.protocol, internalPort: req.internalPort, externalPort: req.externalPort, externalAddress: req.externalAddress } : null;
    const opName = req.kind === 'map' ? `MAP ${req.protocol} ${client}:${req.internalPort} lifetime ${req.lifetime}` : 'ANNOUNCE';
    const error = (resultCode: number): Handled => {
      this.counters.errors++;
      // An error answer copies the request's MAP fields (RFC 6887 §11.1: assigned = suggested).
      return { reply: encodePcpResponse({ opcode: b[1], resultCode, lifetime: pcpErrorLifetime(resultCode), epoch, map: payload }), changes: [], note: `PCP ${opName} → ${pcpResultName(resultCode)}` };
    };
    if (req.clientAddress !== client) return error(PcpResult.ADDRESS_MISMATCH);
    if (req.options.some((o) => o.code < 128)) return error(PcpResult.UNSUPP_OPTION);
    if (req.kind === 'announce') {
      return { reply: encodePcpResponse({ opcode: PcpOpcode.ANNOUNCE, resultCode: PcpResult.SUCCESS, lifetime: 0, epoch, map: null }), changes: [], note: 'PCP ANNOUNCE → SUCCESS (0)' };
    }
    const protocol: MapProtocol | null = req.protocol === PCP_PROTOCOL_UDP ? 'udp' : req.protocol === PCP_PROTOCOL_TCP ? 'tcp' : null;
    if (!protocol) return error(PcpResult.UNSUPP_PROTOCOL);
    if (req.internalPort === 0) return error(req.lifetime === 0 ? PcpResult.UNSUPP_PROTOCOL : PcpResult.MALFORMED_REQUEST);
    if (this.opts.refuse) return error(PcpResult.NOT_AUTHORIZED);
    const existing = this.mappings.get(key(protocol, client, req.internalPort));
    if (existing?.nonce && !sameBytes(existing.nonce, req.nonce)) return error(PcpResult.NOT_AUTHORIZED);
    const ok = (m: { externalPort: number; lifetime: number }, changes: MappingChange[]): Handled => ({
      reply: encodePcpResponse({ opcode: PcpOpcode.MAP, resultCode: PcpResult.SUCCESS, lifetime: m.lifetime, epoch, map: { ...payload!, externalPort: m.externalPort, externalAddress: this.opts.wanAddress } }),
      changes,
      note: `PCP ${opName} → SUCCESS (0), external ${this.opts.wanAddress}:${m.externalPort}`,
    });
    if (req.lifetime === 0) {
      const gone = this.remove((m) => m === existing, 'pcp');
      return ok({ externalPort: existing?.externalPort ?? req.externalPort, lifetime: 0 }, gone);
    }
    const r = this.map(protocol, client, req.internalPort, req.externalPort, req.lifetime, req.nonce, now, 'pcp');
    if (!r) return error(PcpResult.NO_RESOURCES);
    return ok(r.mapping, [r]);
  }

  // ───────────────────────────── mappings ─────────────────────────────

  /** Create or refresh; null when no external port is free. */
  private map(protocol: MapProtocol, client: string, internalPort: number, suggested: number, lifetime: number, nonce: Uint8Array | null, now: number, via: 'pcp' | 'nat-pmp'): MappingChange | null {
    const granted = Math.min(lifetime, this.maxLifetime);
    const k = key(protocol, client, internalPort);
    const existing = this.mappings.get(k);
    if (existing) {
      existing.lifetime = granted;
      existing.expiresAt = now + granted * 1000;
      existing.nonce ??= nonce;
      return { change: 'refresh', via, mapping: existing };
    }
    const externalPort = this.freePort(protocol, suggested);
    if (externalPort === null) return null;
    const mapping: ServerMapping = { protocol, internalAddress: client, internalPort, externalPort, lifetime: granted, expiresAt: now + granted * 1000, nonce };
    this.mappings.set(k, mapping);
    return { change: 'add', via, mapping };
  }

  private remove(which: (m: ServerMapping) => boolean, via: 'pcp' | 'nat-pmp'): MappingChange[] {
    const out: MappingChange[] = [];
    for (const [k, m] of this.mappings) {
      if (!which(m)) continue;
      this.mappings.delete(k);
      out.push({ change: 'delete', via, mapping: m });
    }
    return out;
  }

  /** The suggested port if it is a free dynamic one, else a random free one. */
  private freePort(protocol: MapProtocol, suggested: number): number | null {
    const taken = new Set([...this.mappings.values()].filter((m) => m.protocol === protocol).map((m) => m.externalPort));
    if (suggested >= MIN_DYNAMIC_PORT && !taken.has(suggested)) return suggested;
    const span = 65536 - MIN_DYNAMIC_PORT;
    const start = Math.floor(this.random() * span);
    for (let i = 0; i < span; i++) {
      const p = MIN_DYNAMIC_PORT + ((start + i) % span);
      if (!taken.has(p)) return p;
    }
    return null;
  }

  private ignore(what: string): Handled {
    this.counters.ignored++;
    return { reply: null, changes: [], note: `ignored ${what}` };
  }
}

function key(protocol: MapProtocol, address: string, port: number): string {
  return `${protocol} ${address} ${port}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
