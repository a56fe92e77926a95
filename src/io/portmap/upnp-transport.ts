/**
 * The UpnpMapper's real I/O (node:dgram, node:http), behind the UpnpTransport seam that the unit
 * tests fill with an in-memory IGD:
 *
 *   localAddress  our source address toward the gateway: a UDP socket connected to it (no
 *                 datagram is sent) tells which address the kernel's route picks.
 *   openSsdp      a UDP socket bound to that address, multicast leaving through it, for the
 *                 M-SEARCH and its unicast answers.
 *   http          one request, no agent (no pooled sockets), bounded in time and size: the
 *                 answer is cut off and the request fails past maxBytes or timeoutMs.
 *
 * Everything is unref'd — port mapping never keeps the process alive — except a request made
 * with `hold` (the delete on stop, which must get out before the process exits).
 */
import dgram from 'node:dgram';
import http from 'node:http';

export interface SsdpSource {
  address: string;
  port: number;
}

export interface SsdpSocket {
  send(datagram: Uint8Array, address: string, port: number): void;
  close(): void;
}

export interface SsdpHandlers {
  datagram(bytes: Uint8Array, from: SsdpSource): void;
  error(detail: string): void;
}

export interface HttpRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
  timeoutMs: number;
  maxBytes: number;
  /** Keep the process alive until it completes. */
  hold?: boolean;
}

export type HttpResult = { status: number; body: string } | { error: string };

export interface UpnpTransport {
  localAddress(gateway: string): Promise<string | null>;
  openSsdp(localAddress: string, h: SsdpHandlers): SsdpSocket;
  /** Never rejects. */
  http(req: HttpRequest): Promise<HttpResult>;
}

export const upnpTransport: UpnpTransport = {
  localAddress(gateway) {
    return new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      s.unref();
      const done = (a: string | null) => {
        try {
          s.close();
        } catch {
          /* closed */
        }
        resolve(a);
      };
      s.on('error', () => done(null));
      s.connect(1900, gateway, () => {
        try {
          done(s.address().address);
        } catch {
          done(null);
        }
      });
    });
  },

  openSsdp(localAddress, h) {
    let closed = false;
    let bound = false;
    const queue: Array<[Uint8Array, string, number]> = [];
    const s = dgram.createSocket('udp4');
    s.unref();
    s.on('message', (msg, r) => h.datagram(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), { address: r.address, port: r.port }));
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (!closed) h.error(`the SSDP socket on ${localAddress} failed: ${e.code ?? e.message}`);
    });
    s.bind(0, localAddress, () => {
      if (closed) return;
      bound = true;
      try {
        s.setMulticastInterface(localAddress);
        s.setMulticastTTL(2); // UDA §1.1.2: TTL 2 by default
      } catch (e) {
        h.error(`the SSDP socket on ${localAddress}: ${(e as Error).message}`);
      }
      for (const [d, a, p] of queue.splice(0)) s.send(d, p, a);
    });
    return {
      send(d, a, p) {
        if (closed) return;
        if (!bound) queue.push([d, a, p]);
        else s.send(d, p, a);
      },
      close() {
        if (closed) return;
        closed = true;
        s.close();
      },
    };
  },

  http(req) {
    return new Promise((resolve) => {
      let settled = false;
      const done = (r: HttpResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      let r: http.ClientRequest;
      try {
        r = http.request(req.url, { method: req.method, headers: { ...req.headers, Connection: 'close' }, agent: false });
      } catch (e) {
        return resolve({ error: (e as Error).message });
      }
      const timer = setTimeout(() => {
        done({ error: `no answer within ${req.timeoutMs} ms` });
        r.destroy();
      }, req.timeoutMs);
      if (!req.hold) timer.unref();
      r.on('socket', (s) => {
        if (!req.hold) s.unref();
      });
      r.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
      r.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > req.maxBytes) {
            done({ error: `an answer larger than ${req.maxBytes} bytes` });
            r.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
      });
      r.end(req.body);
    });
  },
};
