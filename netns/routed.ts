/**
 * Two hosts in different networks joined by a router — the place for on-path attackers and NAT.
 *
 *    ns …-a                       ns …-r (router, forwarding)                  ns …-b
 *  ┌────────────────┐  veth   ┌────────────────────────────────┐   veth  ┌──────────────────┐
 *  │ eth0 192.0.2.1 ├─────────┤ ra 192.0.2.254   rb 198.51.100.254 ├─────┤ eth0 198.51.100.2│
 *  │ default via .254│        └────────────────────────────────┘        │ default via .254 │
 *  │ tunnel 10.0.0.1│                                                    │ tunnel 10.0.0.2  │
 *  └────────────────┘                                                    └──────────────────┘
 */
import { Lab, wgGenKeypair, type NodeSpec } from './lib.js';

export const ROUTED = { a: '192.0.2.1', b: '198.51.100.2', ra: '192.0.2.254', rb: '198.51.100.254' };

export function routed(lab: Lab): { a: NodeSpec; b: NodeSpec; r: string } {
  const nsA = lab.netns('a');
  const nsB = lab.netns('b');
  const { ns: r } = lab.router('r');
  lab.link(nsA, 'eth0', [`${ROUTED.a}/24`], r, 'ra', [`${ROUTED.ra}/24`]);
  lab.link(nsB, 'eth0', [`${ROUTED.b}/24`], r, 'rb', [`${ROUTED.rb}/24`]);
  lab.exec(nsA, ['ip', 'route', 'add', 'default', 'via', ROUTED.ra]);
  lab.exec(nsB, ['ip', 'route', 'add', 'default', 'via', ROUTED.rb]);
  const ka = wgGenKeypair();
  const kb = wgGenKeypair();
  const a: NodeSpec = {
    ns: nsA,
    ifname: lab.name('a'),
    privateKey: ka.privateKey,
    listenPort: 51820,
    addresses: ['10.0.0.1/24'],
    peers: [{ publicKey: kb.publicKey, allowedIps: ['10.0.0.2/32'], endpoint: `${ROUTED.b}:51820` }],
  };
  const b: NodeSpec = {
    ns: nsB,
    ifname: lab.name('b'),
    privateKey: kb.privateKey,
    listenPort: 51820,
    addresses: ['10.0.0.2/24'],
    peers: [{ publicKey: ka.publicKey, allowedIps: ['10.0.0.1/32'] }],
  };
  return { a, b, r };
}

/**
 * An on-path attacker in the router: it sniffs A's tunnel datagrams arriving on `iface` and
 * re-sends each payload to B from its own address and port, racing the original (which the
 * caller may drop with nftables so the copy wins). It never answers what B sends it. Prints
 * {"sent": bytes, "received": bytes} when done.
 */
export const ATTACKER_PY = `
import socket, struct, sys, time, json
iface, src, dst, port, me, meport, secs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), float(sys.argv[7])
rs = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0800)); rs.bind((iface, 0)); rs.settimeout(0.02)
us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); us.bind((me, meport)); us.setblocking(False)
s4, d4 = socket.inet_aton(src), socket.inet_aton(dst)
sent = recv = 0; end = time.time() + secs
print("ATTACKING", flush=True)
while time.time() < end:
    try:
        pkt = rs.recv(65535)
    except socket.timeout:
        pkt = None
    if pkt:
        ip = pkt[14:]
        if len(ip) > 28 and ip[9] == 17 and ip[12:16] == s4 and ip[16:20] == d4:
            ihl = (ip[0] & 15) * 4
            sport, dport, ulen = struct.unpack('!HHH', ip[ihl:ihl + 6])
            if dport == port:
                payload = ip[ihl + 8: ihl + ulen]
                us.sendto(payload, (dst, port)); sent += len(payload)
    try:
        while True:
            recv += len(us.recv(65535))
    except BlockingIOError:
        pass
print(json.dumps({"sent": sent, "received": recv}), flush=True)
`;

/**
 * A replaying attacker in the router: it captures A's genuine transport-data datagrams (message
 * type 4) to B arriving on `iface`, waits until the file `trigger` exists, then re-sends every
 * captured payload, byte for byte, to B twice: once from its own address and port (a UDP socket)
 * and once with the spoofed source `spoof`:`spoofport` (a raw IPv4 socket, UDP checksum 0). It never
 * answers anything. Prints "CAPTURED n", "REPLAYING", then
 * {"captured", "sentOwn", "sentSpoofed" (payload bytes), "packets" (per source), "received"} when done.
 *   args: iface src dst port me meport spoof spoofport count trigger
 */
export const REPLAYER_PY = `
import socket, struct, sys, time, json, os
iface, src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
me, meport, spoof, spoofport = sys.argv[5], int(sys.argv[6]), sys.argv[7], int(sys.argv[8])
count, trigger = int(sys.argv[9]), sys.argv[10]
rs = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0800)); rs.bind((iface, 0)); rs.settimeout(0.1)
us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); us.bind((me, meport)); us.setblocking(False)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s4, d4, sp4 = socket.inet_aton(src), socket.inet_aton(dst), socket.inet_aton(spoof)
print("CAPTURING", flush=True)
captured = []; end = time.time() + 20
while len(captured) < count and time.time() < end:
    try:
        pkt = rs.recv(65535)
    except socket.timeout:
        continue
    ip = pkt[14:]
    if len(ip) > 28 and ip[9] == 17 and ip[12:16] == s4 and ip[16:20] == d4:
        ihl = (ip[0] & 15) * 4
        sport, dport, ulen = struct.unpack('!HHH', ip[ihl:ihl + 6])
        payload = ip[ihl + 8: ihl + ulen]
        if dport == port and len(payload) >= 32 and payload[0] == 4:
            captured.append(payload)
rs.close()
print("CAPTURED %d" % len(captured), flush=True)
end = time.time() + 30
while not os.path.exists(trigger) and time.time() < end:
    time.sleep(0.02)
print("REPLAYING", flush=True)
sent_own = sent_spoofed = recv = 0
for payload in captured:
    us.sendto(payload, (dst, port)); sent_own += len(payload)
    udp = struct.pack('!HHHH', spoofport, port, 8 + len(payload), 0) + payload
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, sp4, d4)
    raw.sendto(hdr + udp, (dst, 0)); sent_spoofed += len(payload)
    time.sleep(0.005)
end = time.time() + 1.5
while time.time() < end:
    try:
        recv += len(us.recv(65535))
    except BlockingIOError:
        time.sleep(0.01)
print(json.dumps({"captured": len(captured), "sentOwn": sent_own, "sentSpoofed": sent_spoofed, "packets": len(captured), "received": recv}), flush=True)
`;
