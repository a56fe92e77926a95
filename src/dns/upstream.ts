/**
 * Forwarding to the nameservers the host had before keymesh became its resolver (MeshDNS =
 * direct): names outside the mesh's domain go there as they came, and the answer goes back as it
 * came. Each forwarded query gets an ID of ours (RFC 5452 §9.2: many clients may use the same
 * one; an answer is taken only from the server it was sent to, with the ID we chose), and its
 * own ID back in the answer. A server that does not answer within TIMEOUT_MS is skipped for the
 * next one; after the last, the caller replies SERVFAIL.
 *
 * May touch: two UDP sockets (one per family) and one TCP connection per TCP query.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import { frame, TcpDeframer } from './framing.js';

export const TIMEOUT_MS = 2000;
/** Forwarded queries in flight, at most (each holds an ID of the 65536). */
export const MAX_IN_FLIGHT = 4096;

interface InFlight {
  id: number;
  server: string;
  clientId: number;
  resolve: (b: Buffer | null) => void;
  timer: NodeJS.Timeout;
}

export class Upstream {
  private readonly sockets = new Map<4 | 6, dgram.Socket>();
  private readonly inFlight = new Map<number, InFlight>();
  private closed = false;

  constructor(
    /** Nameserver addresses (IPv4 or IPv6 literals), tried in order. */
    readonly servers: string[],
    private readonly timeoutMs = TIMEOUT_MS,
    private readonly port = 53,
  ) {}

  /** The answer to `msg` (an ID-bearing DNS message) from the first server that gives one, or null. */
  async query(msg: Buffer, tcp: boolean): Promise<Buffer | null> {
    if (msg.length < 12) return null;
    for (const s of this.servers) {
      if (this.closed) return null;
      const r = tcp ? await this.overTcp(s, msg) : await this.overUdp(s, msg);
      if (r) return r;
    }
    return null;
  }

  private socket(family: 4 | 6): dgram.Socket {
    let s = this.sockets.get(family);
    if (!s) {
      s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
      s.on('message', (m, rinfo) => this.onMessage(m, rinfo.address));
      s.on('error', () => undefined); // ICMP errors and the like: the query times out
      s.unref();
      this.sockets.set(family, s);
    }
    return s;
  }

  private overUdp(server: string, msg: Buffer): Promise<Buffer | null> {
    const family = isIP(server) as 4 | 6;
    if (family !== 4 && family !== 6 || this.inFlight.size >= MAX_IN_FLIGHT) return Promise.resolve(null);
    let id = randomInt(65536);
    while (this.inFlight.has(id)) id = (id + 1) & 0xffff;
    const out = Buffer.from(msg);
    out.writeUInt16BE(id, 0);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.finish(id, null), this.timeoutMs);
      this.inFlight.set(id, { id, server, clientId: msg.readUInt16BE(0), resolve, timer });
      this.socket(family).send(out, this.port, server, (err) => {
        if (err) this.finish(id, null);
      });
    });
  }

  private onMessage(m: Buffer, from: string): void {
    if (m.length < 12) return;
    const f = this.inFlight.get(m.readUInt16BE(0));
    if (!f || f.server !== from || (m[2] & 0x80) === 0) return; // not the answer we wait for
    this.finish(f.id, m);
  }

  private finish(id: number, answer: Buffer | null): void {
    const f = this.inFlight.get(id);
    if (!f) return;
    this.inFlight.delete(id);
    clearTimeout(f.timer);
    if (answer) answer.writeUInt16BE(f.clientId, 0);
    f.resolve(answer);
  }

  private overTcp(server: string, msg: Buffer): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const conn = net.connect({ host: server, port: this.port });
      const deframer = new TcpDeframer(65535);
      const done = (b: Buffer | null) => {
        clearTimeout(timer);
        conn.destroy();
        resolve(b);
      };
      const timer = setTimeout(() => done(null), this.timeoutMs);
      conn.on('connect', () => conn.write(frame(msg)));
      conn.on('data', (chunk) => {
        const msgs = deframer.push(chunk);
        if (msgs === null) done(null);
        else if (msgs.length) done(msgs[0].readUInt16BE(0) === msg.readUInt16BE(0) ? Buffer.from(msgs[0]) : null);
      });
      conn.on('error', () => done(null));
      conn.on('close', () => done(null));
    });
  }

  close(): void {
    this.closed = true;
    for (const id of [...this.inFlight.keys()]) this.finish(id, null);
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
  }
}
