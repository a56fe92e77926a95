/**
 * Fakes for the PortMapper's seams: a virtual clock, and a gateway on a virtual link that runs
 * the netns responder's own server logic (netns/portmap-server.ts), so the client is driven
 * against the same answers the real router gives in the netns test:
 *
 *   PortMapper ──transport.send──▶ (1 ms) ──▶ PortMapServer.handle ──▶ (1 ms) ──▶ handlers.datagram
 *
 * The gateway can go silent (drops every request), answer ICMP port unreachable, restart (lose
 * its mappings and its epoch) and announce itself, or deliver any bytes the test likes.
 */
import type { PortMapClock } from '../../../src/io/portmap/client.js';
import type { DatagramSource, OpenPortMapTransport, PortMapTransportHandlers } from '../../../src/io/portmap/udp-transport.js';
import { PortMapServer, type PortMapServerOptions } from '../../../netns/portmap-server.js';

export class FakeClock implements PortMapClock {
  t = 0;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** When the next timer is due, or null if none is set. */
  nextAt(): number | null {
    let at: number | null = null;
    for (const e of this.timers.values()) if (at === null || e.at < at) at = e.at;
    return at;
  }

  /**
   * Like advance(), for code that awaits: before each timer, let every pending promise
   * continuation run (they may set timers of their own).
   */
  async run(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await new Promise((r) => setImmediate(r));
      const at = this.nextAt();
      if (at === null || at > end) break;
      this.advance(Math.max(0, at - this.t));
    }
    this.t = end;
  }

  /** Run every timer due within `ms`, in time order (ties in the order they were set). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | null = null;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

export const GATEWAY = '10.1.0.1';
export const CLIENT = '10.1.0.2';
export const WAN = '203.0.113.11';

export interface Sent {
  at: number;
  bytes: Uint8Array;
}

export class FakeGateway {
  readonly server: PortMapServer;
  /** Everything the client sent, when. */
  readonly sent: Sent[] = [];
  /** Drop every request. */
  silent = false;
  /** Answer every request with ICMP port unreachable. */
  unreachable = false;
  closed = false;
  private handlers: PortMapTransportHandlers | null = null;

  constructor(
    readonly clock: FakeClock,
    opts: Partial<PortMapServerOptions> = {},
  ) {
    this.server = new PortMapServer({ wanAddress: WAN, random: () => 0.5, ...opts }, clock.now());
  }

  readonly transport: OpenPortMapTransport = (_gateway, h) => {
    this.handlers = h;
    this.closed = false;
    this.clock.setTimeout(() => h.ready(CLIENT), 0);
    return {
      send: (bytes) => this.request(bytes),
      keepAlive: () => {},
      close: () => {
        this.closed = true;
      },
    };
  };

  private request(bytes: Uint8Array): void {
    this.sent.push({ at: this.clock.now(), bytes: bytes.slice() });
    if (this.closed || this.silent) return;
    if (this.unreachable) {
      this.clock.setTimeout(() => this.handlers?.unreachable(`${GATEWAY}:5351 answered ICMP port unreachable`), 1);
      return;
    }
    this.clock.setTimeout(() => {
      const r = this.server.handle(bytes, { address: CLIENT }, this.clock.now());
      if (r.reply) this.deliver(r.reply, 'request', 1);
    }, 1);
  }

  /** Bytes from the gateway (or from `from`) reach the client after `delay` ms. */
  deliver(bytes: Uint8Array, via: DatagramSource['via'] = 'request', delay = 0, from = GATEWAY): void {
    this.clock.setTimeout(() => {
      if (!this.closed) this.handlers?.datagram(bytes, { address: from, port: 5351, via });
    }, delay);
  }

  /** Reboot: the mapping table and the epoch start again; announce it if asked. */
  restart(announce: boolean): void {
    this.server.restart(this.clock.now());
    if (announce) for (const a of this.server.announcements(this.clock.now())) this.deliver(a, 'announce', 1);
  }

  /** The requests sent, by protocol and opcode: "pcp map 7200", "nat-pmp address", "nat-pmp map 0". */
  get summary(): string[] {
    return this.sent.map(({ bytes: b }) => {
      const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      if (b[0] === 2) return b[1] === 1 ? `pcp map ${dv.getUint32(4)}` : `pcp op ${b[1]}`;
      if (b[0] === 0) return b[1] === 0 ? 'nat-pmp address' : `nat-pmp map ${b.length >= 12 ? dv.getUint32(8) : '?'}`;
      return `version ${b[0]}`;
    });
  }
}
