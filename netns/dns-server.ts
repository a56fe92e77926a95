/**
 * A tiny authoritative DNS server over UDP (RFC 1035 §4), for the tests of a node that comes up
 * before its resolver answers (test/integration/offline-up.test.ts).
 *
 *   node dist/netns/dns-server.js --addr ADDR [--port 53] --record NAME=IPV4 [--record …]
 *
 * An A question for a NAME it was given is answered with its address (TTL 60); an AAAA question
 * for it gets an empty answer (NODATA); any other name gets NXDOMAIN. Prints "DNS READY <unix ms>" once
 * bound, then one JSON line per question.
 */
import dgram from 'node:dgram';
import * as packet from 'dns-packet';

const args = process.argv.slice(2);
const opt = (name: string, dflt?: string): string => {
  const i = args.indexOf(name);
  const v = i < 0 ? dflt : args[i + 1];
  if (v === undefined) {
    process.stderr.write(`dns-server: ${name} is required (usage: --addr ADDR [--port P] --record NAME=IPV4)\n`);
    process.exit(2);
  }
  return v;
};
const addr = opt('--addr');
const port = Number(opt('--port', '53'));
const records = new Map<string, string>();
args.forEach((a, i) => {
  if (a !== '--record') return;
  const [name, ip] = (args[i + 1] ?? '').split('=');
  records.set(name.toLowerCase().replace(/\.$/, ''), ip);
});

const sock = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
sock.on('message', (msg, from) => {
  let q: packet.Packet;
  try {
    q = packet.decode(msg);
  } catch {
    return; // not DNS: dropped
  }
  const question = q.questions?.[0];
  if (!question) return;
  const name = question.name.toLowerCase().replace(/\.$/, '');
  const ip = records.get(name);
  const answers: packet.Answer[] = ip && question.type === 'A' ? [{ type: 'A', name: question.name, ttl: 60, class: 'IN', data: ip }] : [];
  const reply = packet.encode({
    id: q.id,
    type: 'response',
    // QR, AA, RD copied, RA; RCODE 3 (NXDOMAIN) for a name it does not know
    flags: packet.AUTHORITATIVE_ANSWER | packet.RECURSION_AVAILABLE | (q.flags! & packet.RECURSION_DESIRED) | (ip ? 0 : 3),
    questions: [question],
    answers,
  });
  sock.send(reply, from.port, from.address);
  process.stdout.write(JSON.stringify({ at: Date.now(), name, type: question.type, answered: answers.length > 0, nxdomain: !ip }) + '\n');
});
sock.on('error', (e) => {
  process.stderr.write(`dns-server: ${addr}:${port}: ${e.message}\n`);
  process.exit(1);
});
sock.bind(port, addr, () => process.stdout.write(`DNS READY ${Date.now()}\n`));
