/**
 * The mesh's resolver, sans-I/O: a DNS query (RFC 1035 §4.1, the wire codec is the npm package
 * dns-packet) goes in with `now`; out comes a reply, nothing (malformed: counted), "forward it"
 * (a name outside the domain, forwarding on: upstream.ts), or "wait" (a name only a lighthouse
 * can know: the caller hears back through onNameAnswer or expire).
 *
 *   query ──decode──▶ malformed? ──────────────────────────────▶ drop, malformed++
 *            │
 *            ▼        NAME.DOMAIN ──zone──▶ found ─────────────▶ A / AAAA (NOERROR, AA)
 *        which name?                 ├──▶ absent ────────────▶ NXDOMAIN (+SOA)
 *            │                       └──▶ unknown ──ask LH──▶ wait ≤ LOOKUP_WAIT_MS ─▶ answer,
 *            │                                                    NXDOMAIN, or SERVFAIL (no word)
 *            ├─ reverse name of an overlay address ─────────────▶ PTR / NXDOMAIN
 *            └─ anything else ──forwarding?──yes──────────────▶ forward
 *                                  └──no───────────────────────▶ REFUSED
 *
 * Over UDP a reply larger than the client's limit (512 bytes, or its EDNS payload size, RFC 6891
 * §6.2.5) goes out with no records and the TC bit (RFC 1035 §4.2.1), and the client retries over
 * TCP, which carries any size (framing.ts).
 *
 * May touch: its counters, its waiting queries, and the zone's cache of lighthouse answers.
 */
import * as dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, Packet, Question } from 'dns-packet';
import { NEGATIVE_TTL_MS, type Zone } from './zone.js';
import { formatAddress } from '../core/ip.js';

/** How long a query waits for the lighthouses' answer about a name. */
export const LOOKUP_WAIT_MS = 1000;
/** TTL of names this node knows itself (certificates, `Name =`): short, they change with certificates. */
export const LOCAL_TTL = 15;
/** Queries waiting for the lighthouses, at most (past that: SERVFAIL at once). */
export const MAX_WAITING = 1024;
/** RFC 1035 §4.2.1: the UDP limit without EDNS. */
const UDP_LIMIT = 512;
/** The largest EDNS payload we honour, and advertise (the DNS flag day 2020 value). */
const EDNS_LIMIT = 1232;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface ResolverCounters {
  /** Every message received (malformed ones included). */
  queries: number;
  /** Replies with NOERROR (records, or none for a type the name lacks). */
  answered: number;
  nxdomain: number;
  refused: number;
  servfail: number;
  /** Not a query we could read: no reply. */
  malformed: number;
  /** Dropped by the per-source limit (counted by the server). */
  rateLimited: number;
  /** Sent to the previous nameservers. */
  forwarded: number;
  /** UDP replies cut to the header with TC. */
  truncated: number;
}

export type Outcome = { type: 'reply'; bytes: Buffer } | { type: 'drop' } | { type: 'wait' } | { type: 'forward' };

export interface ResolverOptions {
  /** Ask the lighthouses about `name` (relative); false if nothing was asked (engine.lookupName). */
  ask: (name: string, now: number) => boolean;
  /** Names outside the domain are forwarded (MeshDNS = direct) rather than refused. */
  forwarding: boolean;
  waitMs?: number;
}

interface Waiting<T> {
  query: DecodedPacket;
  tcp: boolean;
  tag: T;
  until: number;
}

/** An address from a reverse name ("4.3.2.1.in-addr.arpa", 32 nibbles + "ip6.arpa"), or null. */
export function reverseAddress(name: string): Uint8Array | null {
  const labels = name.toLowerCase().replace(/\.$/, '').split('.');
  if (labels.length === 6 && labels[4] === 'in-addr' && labels[5] === 'arpa') {
    const b = new Uint8Array(4);
    for (let i = 0; i < 4; i++) {
      const l = labels[3 - i];
      if (!/^(0|[1-9]\d{0,2})$/.test(l) || Number(l) > 255) return null;
      b[i] = Number(l);
    }
    return b;
  }
  if (labels.length === 34 && labels[32] === 'ip6' && labels[33] === 'arpa') {
    const b = new Uint8Array(16);
    for (let i = 0; i < 32; i++) {
      const l = labels[31 - i];
      if (!/^[0-9a-f]$/.test(l)) return null;
      b[i >> 1] |= parseInt(l, 16) << (i & 1 ? 0 : 4);
    }
    return b;
  }
  return null;
}

/** The reverse name of an address (for tests and the benchmark). */
export function reverseName(addr: Uint8Array): string {
  if (addr.length === 4) return `${addr[3]}.${addr[2]}.${addr[1]}.${addr[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) nibbles.push((addr[i] & 15).toString(16), (addr[i] >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}

export class Resolver<T = unknown> {
  readonly counters: ResolverCounters = { queries: 0, answered: 0, nxdomain: 0, refused: 0, servfail: 0, malformed: 0, rateLimited: 0, forwarded: 0, truncated: 0 };
  /** Queries waiting for the lighthouses, by the name asked about. */
  private readonly waiting = new Map<string, Array<Waiting<T>>>();
  private waitingCount = 0;
  private readonly waitMs: number;

  constructor(
    readonly zone: Zone,
    private readonly opts: ResolverOptions,
  ) {
    this.waitMs = opts.waitMs ?? LOOKUP_WAIT_MS;
  }

  get forwarding(): boolean {
    return this.opts.forwarding;
  }

  /** One DNS message from a client (over TCP: without its length prefix). */
  handle(msg: Uint8Array, tcp: boolean, tag: T, now: number): Outcome {
    this.counters.queries++;
    // The header first (RFC 1035 §4.1.1): a query (QR 0) with one question, or it is dropped
    // before the codec sees it. What remains malformed makes dns-packet throw; a throw costs a
    // stack trace (~50 µs, ten times an answer) unless traces are off, and nobody reads this one.
    if (msg.length < 17 || (msg[2] & 0x80) !== 0 || msg[4] !== 0 || msg[5] !== 1) {
      this.counters.malformed++;
      return { type: 'drop' };
    }
    let q: DecodedPacket;
    const traces = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      q = dnsPacket.decode(Buffer.isBuffer(msg) ? msg : Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength));
    } catch {
      this.counters.malformed++;
      return { type: 'drop' };
    } finally {
      Error.stackTraceLimit = traces;
    }
    // A response sent to us is never answered (two resolvers must not reflect each other);
    // a query without exactly one question is not one we can read (RFC 9619).
    if (q.flag_qr || q.type !== 'query' || !q.questions || q.questions.length !== 1 || typeof q.questions[0].name !== 'string') {
      this.counters.malformed++;
      return { type: 'drop' };
    }
    if (((q as unknown as { opcode: string }).opcode ?? 'QUERY') !== 'QUERY') return this.reply(q, tcp, RCODE.NOTIMP, [], false);
    const question = q.questions[0];
    if (question.class !== undefined && question.class !== 'IN' && question.class !== 'ANY') return this.outside(q, tcp);
    const rel = this.zone.relative(question.name);
    if (rel !== null) return this.inZone(q, question, rel, tcp, tag, now);
    const addr = reverseAddress(question.name);
    if (addr && this.zone.isOverlay(addr)) {
      const name = this.zone.nameOfAddress(addr, now);
      if (name === null) return this.reply(q, tcp, RCODE.NXDOMAIN, [], true);
      const answers: Answer[] = question.type === 'PTR' || (question.type as string) === 'ANY' ? [{ type: 'PTR', name: question.name, ttl: LOCAL_TTL, class: 'IN', data: `${name}.${this.zone.domain}` }] : [];
      return this.reply(q, tcp, RCODE.NOERROR, answers, true);
    }
    return this.outside(q, tcp);
  }

  /**
   * The lighthouses answered about `name` (an engine 'name-answer' event): the answer is kept in
   * the zone, and the queries that waited for it get their replies.
   */
  onNameAnswer(name: string, found: boolean, addresses: Uint8Array[], now: number): Array<{ tag: T; tcp: boolean; bytes: Buffer }> {
    const list = this.waiting.get(name);
    // an answer nobody waits for is kept too: the next query finds it
    this.zone.learn(name, found ? addresses : null, now);
    if (!list) return [];
    this.waiting.delete(name);
    this.waitingCount -= list.length;
    const out: Array<{ tag: T; tcp: boolean; bytes: Buffer }> = [];
    for (const w of list) {
      const r = this.inZone(w.query, w.query.questions![0], name, w.tcp, w.tag, now);
      if (r.type === 'reply') out.push({ tag: w.tag, tcp: w.tcp, bytes: r.bytes });
    }
    return out;
  }

  /** Queries whose wait ran out by `now`: SERVFAIL (the lighthouses said nothing; try again later). */
  expire(now: number): Array<{ tag: T; tcp: boolean; bytes: Buffer }> {
    const out: Array<{ tag: T; tcp: boolean; bytes: Buffer }> = [];
    if (this.waitingCount === 0 || this.nextDeadline() > now) return out;
    for (const [name, list] of this.waiting) {
      const keep = list.filter((w) => w.until > now);
      for (const w of list) if (w.until <= now) out.push({ tag: w.tag, tcp: w.tcp, bytes: this.servfail(w.query, w.tcp) });
      this.waitingCount -= list.length - keep.length;
      if (keep.length) this.waiting.set(name, keep);
      else this.waiting.delete(name);
    }
    return out;
  }

  /** When expire() next has work (Infinity: nothing waits). */
  nextDeadline(): number {
    let at = Infinity;
    for (const list of this.waiting.values()) for (const w of list) if (w.until < at) at = w.until;
    return at;
  }

  /** Queries waiting for a lighthouse now. */
  get pending(): number {
    return this.waitingCount;
  }

  /** A name outside the domain (or a reverse name outside the overlay). */
  private outside(q: DecodedPacket, tcp: boolean): Outcome {
    if (this.opts.forwarding) {
      this.counters.forwarded++;
      return { type: 'forward' };
    }
    return this.reply(q, tcp, RCODE.REFUSED, [], false);
  }

  /** The upstream said nothing usable about a forwarded query. */
  servfail(q: DecodedPacket, tcp: boolean): Buffer {
    return (this.reply(q, tcp, RCODE.SERVFAIL, [], false) as { bytes: Buffer }).bytes;
  }

  /** SERVFAIL for a forwarded query given as bytes (null if they do not decode). */
  servfailFor(msg: Uint8Array, tcp: boolean): Buffer | null {
    try {
      return this.servfail(dnsPacket.decode(Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength)), tcp);
    } catch {
      return null;
    }
  }

  private inZone(q: DecodedPacket, question: Question, rel: string, tcp: boolean, tag: T, now: number): Outcome {
    if (rel === '') {
      const answers: Answer[] = question.type === 'SOA' ? [this.soa()] : [];
      return this.reply(q, tcp, RCODE.NOERROR, answers, true);
    }
    const found = this.zone.lookup(rel, now);
    if (found.kind === 'absent') return this.reply(q, tcp, RCODE.NXDOMAIN, [], true);
    if (found.kind === 'found') {
      const ttl = LOCAL_TTL;
      const answers: Answer[] = [];
      const t = question.type as string;
      for (const a of found.addresses) {
        if (a.length === 4 && (t === 'A' || t === 'ANY')) answers.push({ type: 'A', name: question.name, ttl, class: 'IN', data: formatAddress(a) });
        if (a.length === 16 && (t === 'AAAA' || t === 'ANY')) answers.push({ type: 'AAAA', name: question.name, ttl, class: 'IN', data: formatAddress(a) });
      }
      return this.reply(q, tcp, RCODE.NOERROR, answers, true);
    }
    // unknown here: a lighthouse may know it
    const list = this.waiting.get(rel);
    if (list) {
      if (this.waitingCount >= MAX_WAITING) return this.reply(q, tcp, RCODE.SERVFAIL, [], true);
      list.push({ query: q, tcp, tag, until: now + this.waitMs });
      this.waitingCount++;
      return { type: 'wait' };
    }
    if (this.waitingCount >= MAX_WAITING) return this.reply(q, tcp, RCODE.SERVFAIL, [], true);
    if (!this.opts.ask(rel, now)) return this.reply(q, tcp, RCODE.NXDOMAIN, [], true); // no lighthouse to ask, or not a name
    this.waiting.set(rel, [{ query: q, tcp, tag, until: now + this.waitMs }]);
    this.waitingCount++;
    return { type: 'wait' };
  }

  private soa(): Answer {
    const d = this.zone.domain;
    return {
      type: 'SOA',
      name: d,
      ttl: NEGATIVE_TTL_MS / 1000,
      class: 'IN',
      data: { mname: d, rname: `hostmaster.${d}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: NEGATIVE_TTL_MS / 1000 },
    };
  }

  private reply(q: DecodedPacket, tcp: boolean, rcode: number, answers: Answer[], authoritative: boolean): Outcome {
    if (rcode === RCODE.NOERROR) this.counters.answered++;
    else if (rcode === RCODE.NXDOMAIN) this.counters.nxdomain++;
    else if (rcode === RCODE.REFUSED) this.counters.refused++;
    else if (rcode === RCODE.SERVFAIL) this.counters.servfail++;
    const opt = q.additionals?.find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
    let flags = rcode | (q.flag_rd ? dnsPacket.RECURSION_DESIRED : 0) | (this.opts.forwarding ? dnsPacket.RECURSION_AVAILABLE : 0);
    if (authoritative) flags |= dnsPacket.AUTHORITATIVE_ANSWER;
    // negative answers carry the SOA, whose minimum is how long to cache them (RFC 2308 §3)
    const authorities = authoritative && answers.length === 0 && rcode !== RCODE.SERVFAIL ? [this.soa()] : [];
    const additionals: Answer[] = opt ? [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_LIMIT, flags: 0, options: [] } as unknown as Answer] : [];
    const r: Packet = { type: 'response', id: q.id, flags, questions: q.questions, answers, authorities, additionals };
    let bytes = dnsPacket.encode(r);
    const limit = opt ? Math.min(EDNS_LIMIT, Math.max(UDP_LIMIT, opt.udpPayloadSize ?? UDP_LIMIT)) : UDP_LIMIT;
    if (!tcp && bytes.length > limit) {
      this.counters.truncated++;
      bytes = dnsPacket.encode({ ...r, flags: flags | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [] });
    }
    return { type: 'reply', bytes };
  }
}
