/**
 * The PortMapper's real sockets (node:dgram), behind the PortMapTransport seam that the unit
 * tests fill with a fake gateway:
 *
 *   request socket   an ephemeral port connected to GATEWAY:5351. Connecting lets the kernel drop
 *                    datagrams from anyone else, tells us our source address toward the gateway
 *                    (PCP's Client IP field), and turns an ICMP port unreachable into
 *                    ECONNREFUSED: no server there (RFC 6886 §3.1 lets the client stop at once).
 *   announce socket  224.0.0.1:5350 (IPv4 only), where a gateway announces a restart or a new
 *                    external address (RFC 6886 §3.2.1, RFC 6887 §14.1). Bound to the group, not
 *                    to 0.0.0.0, with SO_REUSEADDR, so several clients on one host can listen
 *                    (RFC 6886 §3.2.1's implementation notes). Failing to get it is not fatal:
 *                    renewals still notice a restart, later.
 *
 * Both sockets are unref'd: port mapping never keeps the process alive, except while stop()
 * waits for the gateway to confirm a delete (keepAlive).
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { NATPMP_ANNOUNCE_GROUP, NATPMP_CLIENT_PORT, NATPMP_SERVER_PORT } from './natpmp.js';

export interface DatagramSource {
  address: string;
  port: number;
  /** Which socket it came in on: an answer to a request, or an announcement to the group. */
  via: 'request' | 'announce';
}

export interface PortMapTransportHandlers {
  /** The request socket can send; `localAddress` is our source address toward the gateway (null if unknown). */
  ready(localAddress: string | null): void;
  datagram(bytes: Uint8Array, from: DatagramSource): void;
  /** Nothing listens on the gateway's port 5351 (ICMP port unreachable), or the socket failed. */
  unreachable(detail: string): void;
  log(line: string): void;
}

export interface PortMapTransport {
  send(datagram: Uint8Array): void;
  /** Hold the process open (true) while a delete is in flight; false again after. */
  keepAlive(on: boolean): void;
  close(): void;
}

export type OpenPortMapTransport = (gateway: string, handlers: PortMapTransportHandlers) => PortMapTransport;

export const openUdpTransport: OpenPortMapTransport = (gateway, h) => {
  const v6 = isIP(gateway.replace(/%.*$/, '')) === 6;
  let closed = false;
  let connected = false;
  const sock = dgram.createSocket(v6 ? 'udp6' : 'udp4');
  sock.unref();
  sock.on('message', (msg, r) => h.datagram(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), { address: r.address, port: r.port, via: 'request' }));
  sock.on('error', (e: NodeJS.ErrnoException) => {
    if (closed) return;
    if (e.code === 'ECONNREFUSED') h.unreachable(`${gateway}:${NATPMP_SERVER_PORT} answered ICMP port unreachable (no PCP or NAT-PMP server there)`);
    else h.unreachable(`the socket to ${gateway}:${NATPMP_SERVER_PORT} failed: ${e.code ?? e.message}`);
  });
  sock.connect(NATPMP_SERVER_PORT, gateway, () => {
    if (closed) return;
    connected = true;
    let local: string | null = null;
    try {
      local = sock.address().address;
    } catch {
      /* closed meanwhile */
    }
    h.ready(local);
  });

  let announce: dgram.Socket | null = null;
  if (!v6) {
    const a = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    announce = a;
    a.unref();
    a.on('message', (msg, r) => h.datagram(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), { address: r.address, port: r.port, via: 'announce' }));
    a.on('error', (e: NodeJS.ErrnoException) => {
      if (closed) return;
      h.log(`portmap: not listening for gateway announcements on ${NATPMP_ANNOUNCE_GROUP}:${NATPMP_CLIENT_PORT} (${e.code ?? e.message}); a gateway restart is noticed at the next renewal`);
      a.close();
      announce = null;
    });
    a.bind(NATPMP_CLIENT_PORT, NATPMP_ANNOUNCE_GROUP, () => {
      try {
        a.addMembership(NATPMP_ANNOUNCE_GROUP);
      } catch (e) {
        a.emit('error', e);
      }
    });
  }

  return {
    send(datagram) {
      if (closed || !connected) return;
      sock.send(datagram);
    },
    keepAlive(on) {
      if (closed) return;
      if (on) sock.ref();
      else sock.unref();
    },
    close() {
      if (closed) return;
      closed = true;
      sock.close();
      announce?.close();
      announce = null;
    },
  };
};
