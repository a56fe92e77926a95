// Writes the checked-in seed corpus, fuzz/corpus/<target>/<name>: a few valid inputs and edge
// cases per target, in each harness's input layout (see the comment at the top of fuzz/<target>.c).
// The fuzzer starts from these instead of from nothing. Usage: node fuzz/seeds.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), 'corpus');
const seed = (target, name, ...parts) => {
  mkdirSync(join(root, target), { recursive: true });
  writeFileSync(join(root, target, name), Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p)))));
};
const u8 = (v) => Buffer.from([v & 0xff]);
const be16 = (v) => Buffer.from([(v >> 8) & 0xff, v & 0xff]);
const be32 = (v) => Buffer.from([(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
const le16 = (v) => Buffer.from([v & 0xff, (v >> 8) & 0xff]);
const le32 = (v) => Buffer.from([v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff]);
const fill = (n, f = (i) => i * 7 + 3) => Buffer.from(Array.from({ length: n }, (_, i) => f(i) & 0xff));

// ── packets (RFC 791/8200 headers, RFC 9293 TCP, RFC 768 UDP, RFC 1071 checksums) ──
function sum(b, s = 0) {
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i] << 8) | b[i + 1];
  if (b.length & 1) s += b[b.length - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
function packet({ v6 = false, proto = 6, payload = 100, seq = 1000, id = 7, flags = 0x10, sport = 40000, csum = true } = {}) {
  const l4h = proto === 6 ? 20 : 8, iph = v6 ? 40 : 20;
  const p = Buffer.alloc(iph + l4h + payload);
  if (v6) {
    p[0] = 0x60, p.writeUInt16BE(l4h + payload, 4), (p[6] = proto), (p[7] = 64);
    p[23] = 1, p[39] = 2, (p[8] = 0xfd), (p[24] = 0xfd); // fd00::1 → fd00::2
  } else {
    p[0] = 0x45, p.writeUInt16BE(p.length, 2), p.writeUInt16BE(id, 4), (p[6] = 0x40), (p[8] = 64), (p[9] = proto);
    p.set([10, 0, 0, 1, 10, 0, 0, 2], 12);
  }
  const l4 = p.subarray(iph);
  l4.writeUInt16BE(sport, 0), l4.writeUInt16BE(5201, 2);
  if (proto === 6) l4.writeUInt32BE(seq, 4), l4.writeUInt32BE(555, 8), (l4[12] = 0x50), (l4[13] = flags), l4.writeUInt16BE(65000, 14);
  else l4.writeUInt16BE(l4h + payload, 4);
  fill(payload).copy(p, iph + l4h);
  if (!csum) return p;
  if (!v6) p.writeUInt16BE(~sum(p.subarray(0, 20)) & 0xffff, 10);
  const ph = v6 ? sum(p.subarray(8, 40)) : sum(p.subarray(12, 20));
  const c = ~sum(l4, ph + proto + l4.length) & 0xffff;
  l4.writeUInt16BE(proto === 17 && c === 0 ? 0xffff : c, proto === 6 ? 16 : 6);
  return p;
}
// virtio_net_hdr in host (little-endian) order: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
const vnet = ({ flags = 0, type = 0, hdrLen = 0, gso = 0, start = 0, offset = 0 } = {}) =>
  Buffer.concat([u8(flags), u8(type), le16(hdrLen), le16(gso), le16(start), le16(offset)]);
const TCPV4 = 1, UDP_L4 = 5, TCPV6 = 4, ECN = 0x80, NEEDS_CSUM = 1;

// tun_read: slot (2), slots per call (1), virtio header, packet
const tunRead = (name, slot, room, h, p) => seed('tun_read', name, be16(slot - 1), u8(room - 1), h, p);
tunRead('tso4', 2048, 7, vnet({ flags: NEEDS_CSUM, type: TCPV4, hdrLen: 40, gso: 1000, start: 20, offset: 16 }), packet({ payload: 3500 }));
tunRead('tso6-ecn', 2048, 2, vnet({ flags: NEEDS_CSUM, type: TCPV6 | ECN, hdrLen: 60, gso: 1200, start: 40, offset: 16 }),
  packet({ v6: true, payload: 5000, flags: 0x18 | 0x80 | 0x01 }));
tunRead('uso4', 1500, 16, vnet({ flags: NEEDS_CSUM, type: UDP_L4, hdrLen: 28, gso: 1400, start: 20, offset: 6 }), packet({ proto: 17, payload: 4000 }));
tunRead('uso6-one-slot', 1500, 1, vnet({ flags: NEEDS_CSUM, type: UDP_L4, hdrLen: 48, gso: 1400, start: 40, offset: 6 }),
  packet({ v6: true, proto: 17, payload: 2801 }));
tunRead('gso-fills-slot', 1040, 3, vnet({ type: TCPV4, gso: 1000 }), packet({ payload: 2000 }));
tunRead('single-needs-csum', 2048, 1, vnet({ flags: NEEDS_CSUM, start: 20, offset: 16 }), packet({ payload: 200, csum: false }));
tunRead('single-plain', 2048, 1, vnet(), packet({ proto: 17, payload: 64 }));
tunRead('csum-at-end', 2048, 1, vnet({ flags: NEEDS_CSUM, start: 60, offset: 0 }), packet({ payload: 22 }));

// tun_write: per packet a control byte (bit 0: fix checksums, bit 1: next segment of the previous
// flow, bit 2: PSH, bit 3: CWR, bit 4: its write fails with EAGAIN), then a length and bytes, or
// (bit 1) a payload length and bytes
const raw = (p) => Buffer.concat([u8(1), be16(p.length), p]);
const next = (len, bits = 0) => Buffer.concat([u8(3 | bits), be16(len), fill(len, (i) => i * 13)]);
seed('tun_write', 'flow4', raw(packet({ payload: 1000 })), next(1000), next(1000), next(600, 4));
seed('tun_write', 'flow6-cwr', raw(packet({ v6: true, payload: 1200, flags: 0x90 })), next(1200), next(1200));
seed('tun_write', 'two-flows', raw(packet({ payload: 500 })), raw(packet({ v6: true, payload: 500 })), next(500), raw(packet({ payload: 500, seq: 1500, id: 8 })));
seed('tun_write', 'udp-between', raw(packet({ payload: 800 })), raw(packet({ proto: 17, payload: 60 })), raw(packet({ payload: 800, seq: 1800, id: 8 })));
seed('tun_write', 'bad-checksum', Buffer.concat([u8(0), be16(1040), packet({ payload: 1000 })]), next(1000));
seed('tun_write', 'psh-then-more', raw(packet({ payload: 700, flags: 0x18 })), next(700));
seed('tun_write', 'nine-flows', ...Array.from({ length: 9 }, (_, i) => Buffer.concat([raw(packet({ payload: 300, sport: 40000 + i })), next(300)])));
seed('tun_write', 'eagain', raw(packet({ payload: 400 })), next(400), Buffer.concat([u8(0x13), be16(400), fill(400)]), raw(packet({ proto: 17, payload: 30 })));

// udp_recv: slot (2), slots per call (1), GRO socket (1), control messages, the receive.
// Control messages built by the harness: mode (bit 0; count − 1 in bits 1–2), then per message a
// kind (0 IPV6_PKTINFO, 1 IP_PKTINFO, 2 UDP_GRO), a data length and the data.
const pktinfo6 = Buffer.concat([Buffer.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), le32(3)]);
const pktinfo4 = Buffer.concat([le32(3), Buffer.from([10, 0, 0, 1]), Buffer.from([10, 0, 0, 1])]);
const cmsgs = (...m) => Buffer.concat([u8(1 | ((m.length - 1) << 1)), ...m.map(([kind, d]) => Buffer.concat([u8(kind), u8(d.length), d]))]);
const udpRecv = (name, slot, max, gro, ctrl, n) => seed('udp_recv', name, be16(slot - 1), u8(max - 1), u8(gro), ctrl, fill(n));
udpRecv('gro-v4', 2048, 64, 1, cmsgs([0, pktinfo6], [1, pktinfo4], [2, le32(1200)]), 3 * 1200 + 500);
udpRecv('gro-few-slots', 1500, 2, 1, cmsgs([2, le32(1000)], [0, pktinfo6]), 5000);
udpRecv('gro-larger-than-slot', 1024, 8, 1, cmsgs([2, le32(1400)]), 2800);
udpRecv('plain-v6', 2048, 1, 0, cmsgs([0, pktinfo6]), 148);
udpRecv('truncated-pktinfo', 2048, 4, 1, cmsgs([1, pktinfo4.subarray(0, 6)], [2, le32(100)]), 300);
udpRecv('raw-control', 2048, 4, 1, Buffer.concat([u8(0), u8(20), le32(20), le32(0), le32(17), le32(104), le32(500)]), 1000);

// errqueue: destination sockaddr_in6 (28), the datagram's first bytes (a length, then those),
// control messages (0 IP_RECVERR, 1 IPV6_RECVERR): sock_extended_err, then the offender's address
const sin6 = (port) => Buffer.concat([le16(10), be16(port), le32(0), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7]), le32(0)]);
const ee = (origin, type, code, info) => Buffer.concat([le32(113), u8(origin), u8(type), u8(code), u8(0), le32(info), le32(0)]);
const sin = Buffer.concat([le16(2), be16(0), Buffer.from([198, 51, 100, 1]), Buffer.alloc(8)]);
const offender6 = Buffer.concat([le16(10), be16(0), le32(0), Buffer.from([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), le32(0)]);
const data = fill(32);
const errq = (name, ...m) => seed('errqueue', name, sin6(51820), u8(data.length), data, cmsgs(...m));
errq('ttl-exceeded-v4', [0, Buffer.concat([ee(2, 11, 0, 0), sin])]);
errq('frag-needed-v4', [0, Buffer.concat([ee(2, 3, 4, 1280), sin])]);
errq('unreachable-v6', [1, Buffer.concat([ee(3, 1, 4, 0), offender6])]);
errq('no-offender', [0, ee(1, 0, 0, 0)]);
errq('short-offender', [1, Buffer.concat([ee(3, 3, 0, 0), offender6.subarray(0, 20)])]);

// aead: buffer length (2), packet count (1), key (32), per packet form (bit 0: 2-byte offset and
// length, else 4-byte) and offset and length, counter hi and lo (4 each), then which packet to
// tamper with (1; 0 none) and where (2)
const key = fill(32, (i) => i + 1);
const aead = (name, blen, packets, hi, lo, tail = Buffer.alloc(0)) =>
  seed('aead', name, be16(blen), u8(packets.length), key, ...packets.map(([off, len]) => Buffer.concat([u8(1), be16(off), be16(len)])), be32(hi), be32(lo), tail);
aead('one', 1500, [[16, 1420]], 0, 0);
aead('batch-tampered', 4096, [[0, 100], [200, 0], [300, 1000], [1400, 2680]], 0, 7, Buffer.concat([u8(3), be16(40)]));
aead('counter-wraps', 512, [[0, 32], [64, 32], [128, 32]], 0, 0xffffffff);
aead('tag-at-end', 64, [[0, 48]], 1, 2);
aead('tag-one-past', 64, [[1, 48]], 0, 0);
seed('aead', 'huge-offset', be16(4096), u8(1), key, u8(0), be32(0xfffffff0), be32(0x20), be32(0), be32(0));
