/**
 * A minimal STUN Binding responder (RFC 5389 §6–7, MAPPED-ADDRESS §15.1), for one purpose: to
 * let the real miniupnpd serve in the netns tests.
 *
 *   node dist/netns/stun-responder.js --addr ADDR [--port 3478]
 *
 * miniupnpd refuses to map ports when its WAN address is in a reserved range ("Reserved /
 * private IP address … Port forwarding is impossible"), and every range these tests may use is
 * reserved. With `ext_perform_stun=yes` it asks a STUN server instead, sending four Binding
 * requests (with and without CHANGE-REQUEST) from four ports, and enables port forwarding when
 * all four come back with the address and ports it sent from (no NAT, no filtering in front of
 * it) — which is the truth for a router whose WAN is the lab's "internet". This responder
 * answers each request from the address it was sent to with the source it saw, so miniupnpd
 * learns its real WAN address (it announces that one in GetExternalIPAddress).
 *
 * One JSON line per request answered, for the tests.
 */
import dgram from 'node:dgram';

const args = process.argv.slice(2);
const opt = (name: string, dflt?: string) => {
  const i = args.indexOf(name);
  const v = i < 0 ? dflt : args[i + 1];
  if (v === undefined) {
    process.stderr.write(`stun-responder: ${name} is required (usage: --addr ADDR [--port P])\n`);
    process.exit(2);
  }
  return v;
};
const addr = opt('--addr');
const port = Number(opt('--port', '3478'));

const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const MAPPED_ADDRESS = 0x0001;
const HEADER = 20;

const sock = dgram.createSocket('udp4');
sock.on('message', (msg, r) => {
  // header: type (16), length (16), magic cookie + transaction id (128)
  if (msg.length < HEADER || msg.readUInt16BE(0) !== BINDING_REQUEST) return;
  const out = Buffer.alloc(HEADER + 12);
  out.writeUInt16BE(BINDING_SUCCESS, 0);
  out.writeUInt16BE(12, 2);
  msg.copy(out, 4, 4, HEADER); // the same cookie and transaction id
  out.writeUInt16BE(MAPPED_ADDRESS, HEADER);
  out.writeUInt16BE(8, HEADER + 2);
  out[HEADER + 5] = 0x01; // family IPv4 (byte 4 is reserved)
  out.writeUInt16BE(r.port, HEADER + 6);
  r.address.split('.').forEach((b, i) => (out[HEADER + 8 + i] = Number(b)));
  sock.send(out, r.port, r.address);
  process.stdout.write(JSON.stringify({ event: 'binding', from: `${r.address}:${r.port}` }) + '\n');
});
sock.on('error', (e) => {
  process.stderr.write(`stun-responder: ${addr}:${port}: ${e.message}\n`);
  process.exit(2);
});
sock.bind(port, addr, () => process.stdout.write(JSON.stringify({ event: 'listening', addr, port }) + '\n'));
for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => process.exit(0));
