/**
 * The resolver's sockets: UDP and TCP port 53 on the node's overlay addresses only — never a
 * wildcard, so nothing on the underlay (the internet side) can query it. Each source address but
 * our own (the host's programs) has a token bucket (RATE_PER_SECOND, RATE_BURST); a query past it
 * is dropped and counted, as are messages that are not DNS queries (the resolver's `malformed`).
 *
 *   UDP/TCP ──▶ rate limit ──▶ Resolver.handle ──reply──▶ back to the client
 *                                   ├──wait──▶ (lighthouse) onNameAnswer / expire timer ──▶ reply
 *                                   └──forward──▶ Upstream ──▶ reply (or SERVFAIL)
 *
 * May touch: its own sockets and one timer (the waiting queries' deadline).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { frame, TcpDeframer } from '../dns/framing.js';
import type { Resolver } from '../dns/resolver.js';
import type { Upstream } from '../dns/upstream.js';

/** Queries per second a source may make, and its burst. Generous for a host's stub resolver. */
export const RATE_PER_SECOND = 500;
export const RATE_BURST = 1000;
/** TCP: connections at most (all sources), and how long an idle one is kept (RFC 7766 §6.2.3). */
export const MAX_TCP_CONNECTIONS = 128;
export const TCP_IDLE_MS = 10_000;

export type DnsClient = { udp: dgram.Socket; address: string; port: number } | { tcp: net.Socket };

export interface DnsServerOptions {
  /** The addresses to listen on (the overlay's). */
  addresses: string[];
  port?: number;
  resolver: Resolver<DnsClient>;
  upstream: Upstream | null;
  now: () => number;
  log: (line: string) => void;
  /** Per-source limit (queries per second, burst); 0 turns it off (the benchmark). */
  ratePerSecond?: number;
  burst?: number;
}

/** A token bucket per source address; buckets idle for a while are forgotten. */
class SourceLimit {
  private readonly buckets = new Map<string, { tokens: number; last: number }>();
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}
  allow(source: string, now: number): boolean {
    if (this.perSecond <= 0) return true;
    let b = this.buckets.get(source);
    if (!b) {
      if (this.buckets.size >= 65536) this.collect(now);
      b = { tokens: this.burst, last: now };
      this.buckets.set(source, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.last) * this.perSecond) / 1000);
    b.last = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
  collect(now: number): void {
    const idle = (this.burst / this.perSecond) * 1000;
    for (const [k, b] of this.buckets) if (now - b.last > idle) this.buckets.delete(k);
  }
}

export class DnsServer {
  private readonly udp: dgram.Socket[] = [];
  private readonly tcp: net.Server[] = [];
  private readonly conns = new Set<net.Socket>();
  private timer: NodeJS.Timeout | null = null;
  private collector: NodeJS.Timeout | null = null;
  private readonly limit: SourceLimit;
  /** The addresses actually listened on. */
  readonly listening: string[] = [];
  private stopped = false;

  private constructor(private readonly o: DnsServerOptions) {
    this.limit = new SourceLimit(o.ratePerSecond ?? RATE_PER_SECOND, o.burst ?? RATE_BURST);
  }

  /** Listen on every address that can be bound (a failure is logged, the others still serve). */
  static async start(o: DnsServerOptions): Promise<DnsServer> {
    const s = new DnsServer(o);
    for (const a of o.addresses) {
      try {
        await s.listenOn(a);
        s.listening.push(a);
      } catch (e) {
        o.log(`DNS: cannot listen on ${a} port ${o.port ?? 53}: ${(e as Error).message}`);
      }
    }
    s.collector = setInterval(() => s.limit.collect(o.now()), 10_000);
    s.collector.unref();
    return s;
  }

  get resolver(): Resolver<DnsClient> {
    return this.o.resolver;
  }

  private async listenOn(address: string): Promise<void> {
    const port = this.o.port ?? 53;
    const u = dgram.createSocket({ type: net.isIPv6(address) ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      u.once('error', reject);
      u.bind({ address, port, exclusive: true }, () => {
        u.off('error', reject);
        resolve();
      });
    });
    u.on('error', () => undefined);
    u.on('message', (m, rinfo) => this.onQuery(m, { udp: u, address: rinfo.address, port: rinfo.port }, rinfo.address));
    this.udp.push(u);
    const t = net.createServer((c) => this.onConnection(c));
    try {
      await new Promise<void>((resolve, reject) => {
        t.once('error', reject);
        t.listen({ host: address, port, exclusive: true }, () => {
          t.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      u.close();
      this.udp.pop();
      throw e;
    }
    t.on('error', () => undefined);
    this.tcp.push(t);
  }

  private onConnection(c: net.Socket): void {
    if (this.conns.size >= MAX_TCP_CONNECTIONS || this.stopped) {
      c.destroy();
      return;
    }
    this.conns.add(c);
    const deframer = new TcpDeframer();
    c.setTimeout(TCP_IDLE_MS, () => c.destroy());
    c.on('data', (chunk) => {
      const msgs = deframer.push(chunk);
      if (msgs === null) {
        this.o.resolver.counters.queries++;
        this.o.resolver.counters.malformed++;
        c.destroy();
        return;
      }
      for (const m of msgs) this.onQuery(m, { tcp: c }, c.remoteAddress ?? '');
    });
    c.on('error', () => undefined);
    c.on('close', () => this.conns.delete(c));
  }

  private onQuery(msg: Buffer, client: DnsClient, source: string): void {
    const now = this.o.now();
    // the host itself (MeshDNS = direct: every program on it, from our own address) is not limited
    if (!this.listening.includes(source) && !this.limit.allow(source, now)) {
      this.o.resolver.counters.rateLimited++;
      return;
    }
    const tcp = 'tcp' in client;
    const r = this.o.resolver.handle(msg, tcp, client, now);
    if (r.type === 'reply') this.send(client, r.bytes);
    else if (r.type === 'wait') this.arm();
    else if (r.type === 'forward') this.forward(msg, client, tcp);
  }

  private forward(msg: Buffer, client: DnsClient, tcp: boolean): void {
    const fail = () => {
      const b = this.o.resolver.servfailFor(msg, tcp);
      if (b) this.send(client, b);
    };
    if (!this.o.upstream) return fail();
    const copy = Buffer.from(msg); // the TCP deframer's buffer is reused
    this.o.upstream.query(copy, tcp).then((answer) => (answer ? this.send(client, answer) : fail()), fail);
  }

  private send(client: DnsClient, bytes: Buffer): void {
    if (this.stopped) return;
    if ('tcp' in client) {
      if (!client.tcp.destroyed) client.tcp.write(frame(bytes));
    } else client.udp.send(bytes, client.port, client.address);
  }

  /** The engine's 'name-answer': replies to the queries that waited for it. */
  onNameAnswer(name: string, found: boolean, addresses: Uint8Array[]): void {
    for (const r of this.o.resolver.onNameAnswer(name, found, addresses, this.o.now())) this.send(r.tag, r.bytes);
    this.arm();
  }

  /** One timer for the earliest waiting query's deadline. */
  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const at = this.o.resolver.nextDeadline();
    if (at === Infinity || this.stopped) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        for (const r of this.o.resolver.expire(this.o.now())) this.send(r.tag, r.bytes);
        this.arm();
      },
      Math.max(0, Math.ceil(at - this.o.now())),
    );
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.collector) clearInterval(this.collector);
    for (const c of this.conns) c.destroy();
    for (const u of this.udp) u.close();
    await Promise.all(this.tcp.map((t) => new Promise<void>((r) => t.close(() => r()))));
    this.o.upstream?.close();
  }
}
