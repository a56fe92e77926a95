/**
 * Path MTU in the engine (src/core/pmtu.ts) on the fake network: two keymesh nodes find what a
 * link that carries less than full size carries (its router's ICMP filtered: the datagrams just
 * vanish), the tunnel's edge answers what does not fit as a router would, SYNs are clamped, a stock
 * WireGuard peer's paths use what the kernel says, and a relayed pair sizes its datagrams for the
 * RELAY wrapping so none is ever too big for the links.
 */
import { describe, expect, it } from 'vitest';
import { isRelay } from '../../src/core/endpoint.js';
import type { Engine, EngineOptions } from '../../src/core/engine.js';
import type { Peer } from '../../src/core/peer.js';
import { RELAY_HEADER } from '../../src/core/extension.js';
import { WG_OVERHEAD } from '../../src/core/pmtu.js';
import { connect, FakeNat, ipBytes, Net, type Node } from './support/pair.js';
import { buildV4, buildV6, concat, naiveChecksum, parseIcmp, parseV4, parseV6, pseudo4 } from './support/naive-inet.js';

const peerOf = (n: Node, o: Node): Peer => n.engine.getPeer(o.publicKey)!;
const PROBING = { pmtuDiscovery: true };

/** Two keymesh nodes whose link carries datagrams of at most `carries` bytes (UDP payload) each way. */
function pair(carries: number | null, opts: { bProbes?: boolean; v6?: boolean } = {}) {
  const net = new Net();
  const a = net.add('A', PROBING);
  const b = net.add('B', opts.bProbes === false ? {} : PROBING);
  net.ipv4('A', '192.0.2.1');
  net.ipv4('B', '198.51.100.2');
  connect(
    a,
    [
      ['10.0.0.1', 32],
      ['fd10::1', 128],
    ],
    b,
    [
      ['10.0.0.2', 32],
      ['fd10::2', 128],
    ],
  );
  if (carries !== null) net.mtus.set('B', carries);
  // first contact: a packet, the handshake, HELLO; then time for the searches
  a.engine.handleTunPacket(buildV4({ src: '10.0.0.1', dst: '10.0.0.2', payload: [1, 2, 3] }), net.now);
  net.deliver();
  net.advance(3000);
  return { net, a, b };
}

/** A 1400-byte IPv4 UDP packet from A's host to B's, with or without DF. */
function big4(df: boolean, len = 1400): Uint8Array {
  return buildV4({ src: '10.0.0.1', dst: '10.0.0.2', df, id: 0x4242, payload: Array.from({ length: len - 20 }, (_, i) => (i * 13 + 5) & 255) });
}

function tcpSyn(src: string, dst: string, mss: number): Uint8Array {
  const tcp = new Uint8Array(24);
  tcp[0] = 0x30;
  tcp[1] = 0x39; // source port 12345
  tcp[2] = 0x00;
  tcp[3] = 0x50; // 80
  tcp[12] = 6 << 4; // data offset: 24 bytes
  tcp[13] = 0x02; // SYN
  tcp[14] = 0xff;
  tcp[15] = 0xff;
  tcp.set([2, 4, mss >> 8, mss & 0xff], 20);
  const p = buildV4({ src, dst, protocol: 6, df: true, payload: tcp });
  const c = naiveChecksum(concat(pseudo4(ipBytes(src), ipBytes(dst), 6, tcp.length), tcp));
  p[20 + 16] = c >> 8;
  p[20 + 17] = c & 0xff;
  return p;
}

function largestDelivered(net: Net, from?: string): number {
  let m = 0;
  for (const r of net.log) if (r.fate === 'delivered' && (!from || r.from.startsWith(from)) && r.len > m) m = r.len;
  return m;
}

describe('pmtu: two keymesh nodes find what their link carries', () => {
  it('a link that carries 1280-byte packets (ICMP filtered): both ends settle on it and say so', () => {
    const carries = 1280 - 28;
    const { net, a, b } = pair(carries);
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      const p = peerOf(x, y);
      const act = p.endpoint.active!;
      expect(act.mtu!.state).toBe('complete');
      expect(act.mtu!.current).toBeLessThanOrEqual(carries);
      expect(act.mtu!.current).toBeGreaterThan(carries - 8);
      expect(act.mtu!.pmtu).toBe(act.mtu!.current + 28); // IPv4 + UDP
      expect(act.mtu!.pmtu).toBeLessThanOrEqual(1280);
      expect(p.tunnelMtu).toBe(act.mtu!.current - WG_OVERHEAD);
      expect(x.events.some((e) => e.type === 'pmtu-changed' && e.to === p.tunnelMtu)).toBe(true);
    }
    // the probes cost a few tens of kilobytes, once
    expect(a.engine.stats().pmtu.probeBytes).toBeLessThan(40_000);
    expect(net.log.filter((r) => r.fate === 'tooBig').length).toBeGreaterThan(0);
  });

  it('a full-size link: one probe each way and nothing changes', () => {
    const { a, b } = pair(null);
    expect(peerOf(a, b).tunnelMtu).toBe(a.engine.mtu);
    expect(peerOf(a, b).endpoint.active!.mtu!.state).toBe('complete');
    expect(a.engine.stats().pmtu.probes).toBe(1);
    expect(a.events.some((e) => e.type === 'pmtu-changed')).toBe(false);
  });

  it('a peer of an older keymesh (extension version 2) is not probed', () => {
    const net = new Net();
    const a = net.add('A', PROBING);
    const b = net.add('B', PROBING);
    connect(a, [['10.0.0.1', 32]], b, [['10.0.0.2', 32]]);
    a.engine.handleTunPacket(buildV4({ src: '10.0.0.1', dst: '10.0.0.2', payload: [1] }), net.now);
    net.deliver();
    // as if B's HELLO had said version 2 (before PMTU_PROBE)
    peerOf(a, b).extVersion = 2;
    const before = a.engine.stats().pmtu.probes;
    peerOf(a, b).endpoint.active!.mtu!.start(net.now, false);
    net.advance(2000);
    expect(a.engine.stats().pmtu.probes).toBe(before);
  });
});

describe('pmtu: the tunnel edge', () => {
  it('an IPv4 packet with DF that does not fit: ICMP "fragmentation needed" with the tunnel MTU, from the destination', () => {
    const { net, a, b } = pair(1280 - 28);
    const mtu = peerOf(a, b).tunnelMtu;
    a.tun.length = 0;
    const pkt = big4(true);
    a.engine.handleTunPacket(pkt, net.now);
    net.deliver();
    expect(b.tun.filter((p) => p.length === 1400)).toHaveLength(0);
    expect(a.tun).toHaveLength(1);
    const ip = parseV4(a.tun[0]);
    expect(ip.protocol).toBe(1);
    expect([...ip.src]).toEqual([10, 0, 0, 2]);
    expect([...ip.dst]).toEqual([10, 0, 0, 1]);
    expect(naiveChecksum(a.tun[0].subarray(0, 20))).toBe(0);
    const icmp = parseIcmp(a.tun[0].subarray(20));
    expect(icmp.type).toBe(3);
    expect(icmp.code).toBe(4);
    expect(icmp.rest & 0xffff).toBe(mtu);
    expect(naiveChecksum(a.tun[0].subarray(20))).toBe(0);
    expect(Buffer.from(icmp.body.subarray(0, 28))).toEqual(Buffer.from(pkt.subarray(0, 28)));
    expect(a.engine.stats().drops.pmtuTooBig).toBe(1);
    expect(a.engine.stats().pmtu.icmpSent).toBe(1);
  });

  it('an IPv4 packet without DF is fragmented inside the tunnel: the pieces arrive and reassemble to it', () => {
    const { net, a, b } = pair(1280 - 28);
    const before = b.tun.length;
    const pkt = big4(false);
    a.engine.handleTunPacket(pkt, net.now);
    net.deliver();
    const frags = b.tun.slice(before);
    expect(frags.length).toBe(2);
    const payload = new Uint8Array(1380);
    let got = 0;
    for (const f of frags) {
      const h = parseV4(f);
      expect(h.id).toBe(0x4242);
      expect(f.length).toBeLessThanOrEqual(peerOf(a, b).tunnelMtu);
      expect(naiveChecksum(f.subarray(0, 20))).toBe(0);
      payload.set(f.subarray(20, h.totalLength), h.fragOffset * 8);
      got += h.totalLength - 20;
    }
    expect(got).toBe(1380);
    expect(Buffer.from(payload)).toEqual(Buffer.from(pkt.subarray(20)));
    expect(largestDelivered(net)).toBeLessThanOrEqual(1280 - 28);
  });

  it('an IPv6 packet that does not fit: ICMPv6 "packet too big" with the tunnel MTU', () => {
    const { net, a, b } = pair(1400 - 28);
    const mtu = peerOf(a, b).tunnelMtu;
    expect(mtu).toBeGreaterThanOrEqual(1280);
    a.tun.length = 0;
    const pkt = buildV6({ src: 'fd10::1', dst: 'fd10::2', payload: new Uint8Array(1360) });
    a.engine.handleTunPacket(pkt, net.now);
    net.deliver();
    expect(a.tun).toHaveLength(1);
    const ip = parseV6(a.tun[0]);
    expect(ip.nextHeader).toBe(58);
    expect(Buffer.from(ip.src)).toEqual(Buffer.from(ipBytes('fd10::2')));
    const icmp = parseIcmp(a.tun[0].subarray(40));
    expect([icmp.type, icmp.code, icmp.rest]).toEqual([2, 0, mtu]);
    expect(a.tun[0].length).toBeLessThanOrEqual(1280);
  });

  it('an IPv6 packet of up to 1280 bytes on a path whose tunnel MTU is below that is carried, fragmented inside the tunnel (RFC 8200 §5)', () => {
    const { net, a, b } = pair(1280 - 28);
    expect(peerOf(a, b).tunnelMtu).toBeLessThan(1280);
    a.tun.length = 0;
    const before = b.tun.length;
    const pkt = buildV6({ src: 'fd10::1', dst: 'fd10::2', payload: new Uint8Array(1240).fill(7) });
    a.engine.handleTunPacket(pkt, net.now);
    net.deliver();
    expect(a.tun).toHaveLength(0); // no packet too big: IPv6 hosts may not be told less than 1280
    const frags = b.tun.slice(before);
    expect(frags.length).toBe(2);
    for (const f of frags) {
      expect(f.length).toBeLessThanOrEqual(peerOf(a, b).tunnelMtu);
      expect(parseV6(f).nextHeader).toBe(44);
    }
    expect(frags.reduce((n, f) => n + f.length - 48, 0)).toBe(1240);
    expect(largestDelivered(net)).toBeLessThanOrEqual(1280 - 28);
    expect(a.engine.stats().pmtu.ipv6MinMtu).toBe(1);
    // a larger one is told 1280
    a.engine.handleTunPacket(buildV6({ src: 'fd10::1', dst: 'fd10::2', payload: new Uint8Array(1300) }), net.now);
    expect(a.tun).toHaveLength(1);
    expect(parseIcmp(a.tun[0].subarray(40)).rest).toBe(1280);
  });

  it('ICMP errors into the TUN device are rate-limited', () => {
    const { net, a } = pair(1280 - 28);
    a.tun.length = 0;
    for (let i = 0; i < 200; i++) a.engine.handleTunPacket(big4(true), net.now);
    expect(a.tun.length).toBeGreaterThan(5);
    expect(a.tun.length).toBeLessThanOrEqual(25);
    expect(a.engine.stats().pmtu.icmpRateLimited).toBe(200 - a.tun.length);
  });

  it('the MSS of SYNs is clamped to the tunnel MTU both ways (unless MssClamp is off)', () => {
    const { net, a, b } = pair(1280 - 28);
    const mtu = peerOf(a, b).tunnelMtu;
    const before = b.tun.length;
    a.engine.handleTunPacket(tcpSyn('10.0.0.1', '10.0.0.2', 1460), net.now);
    net.deliver();
    const syn = b.tun[before];
    // the tunnel MTU rounded down to WireGuard's padding multiple (a stock peer pads up to its own MTU), less the headers
    expect((syn[20 + 22] << 8) | syn[20 + 23]).toBe((mtu & ~15) - 40);
    // the checksum still holds
    expect(naiveChecksum(concat(pseudo4(ipBytes('10.0.0.1'), ipBytes('10.0.0.2'), 6, 24), syn.subarray(20)))).toBe(0);
    expect(a.engine.stats().pmtu.mssClamped).toBe(1);

    const net2 = new Net();
    const c = net2.add('C', { ...PROBING, mssClamp: false });
    const d = net2.add('D', { ...PROBING, mssClamp: false });
    connect(c, [['10.0.0.1', 32]], d, [['10.0.0.2', 32]]);
    net2.mtus.set('D', 1280 - 28);
    c.engine.handleTunPacket(buildV4({ src: '10.0.0.1', dst: '10.0.0.2', payload: [1] }), net2.now);
    net2.deliver();
    net2.advance(3000);
    c.engine.handleTunPacket(tcpSyn('10.0.0.1', '10.0.0.2', 1460), net2.now);
    net2.deliver();
    const s2 = d.tun[d.tun.length - 1];
    expect((s2[20 + 22] << 8) | s2[20 + 23]).toBe(1460);
  });
});

describe('pmtu: black holes and path changes', () => {
  it('the link shrinks to 1280 under traffic: within a second the tunnel MTU drops, and the packets that fit get through', () => {
    const { net, a, b } = pair(null);
    expect(peerOf(a, b).tunnelMtu).toBe(1420);
    const t0 = net.now;
    net.mtus.set('B', 1280 - 28);
    let dropAt = Infinity;
    for (let t = 0; t < 3000; t += 10) {
      // big DF traffic both ways, as a TCP transfer with ACKs
      a.engine.handleTunPacket(big4(true, Math.min(1400, peerOf(a, b).tunnelMtu)), net.now);
      b.engine.handleTunPacket(buildV4({ src: '10.0.0.2', dst: '10.0.0.1', payload: [0] }), net.now);
      net.deliver();
      net.advance(10);
      if (dropAt === Infinity && peerOf(a, b).tunnelMtu < 1280 - 28 - WG_OVERHEAD + 1) dropAt = net.now - t0;
    }
    expect(dropAt).toBeLessThanOrEqual(1000);
    expect(peerOf(a, b).endpoint.active!.mtu!.blackHoles).toBe(1);
    expect(a.engine.stats().pmtu.blackHoles).toBe(1);
    const m = peerOf(a, b).endpoint.active!.mtu!;
    expect(m.state).toBe('complete');
    expect(m.current).toBeGreaterThan(1280 - 28 - 8);
    // and the packets of the new size arrive
    const before = b.tun.length;
    a.engine.handleTunPacket(big4(true, peerOf(a, b).tunnelMtu), net.now);
    net.deliver();
    expect(b.tun.length).toBe(before + 1);
  });
});

/** A keymesh node A (with `opts`) and a peer B that does not answer HELLO — a stock peer, as far as A can tell — in session. */
function withStockPeer(opts: Partial<EngineOptions>) {
  const net = new Net();
  const a = net.add('A', opts);
  const b = net.add('B', {});
  net.ipv4('A', '192.0.2.1');
  net.ipv4('B', '198.51.100.2');
  connect(a, [['10.0.0.1', 32]], b, [['10.0.0.2', 32]]);
  a.engine.handleTunPacket(buildV4({ src: '10.0.0.1', dst: '10.0.0.2', payload: [1] }), net.now);
  net.deliver();
  const p = peerOf(a, b);
  p.endpoint.speaksKeymesh = false;
  return { net, a, b, p };
}

/** The first 16 bytes of a transport datagram to receiver index `i`, as an ICMP error quotes it. */
const quoted = (i: number) => Uint8Array.of(4, 0, 0, 0, i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, i >>> 24, 0, 0, 0, 0, 0, 0, 0, 0);

describe('pmtu: stock WireGuard peers and the kernel', () => {
  it('without probing, a path takes the route MTU the runtime reports', () => {
    const net = new Net();
    const a = net.add('A', { ...PROBING, routeMtu: () => 1300 });
    const b = net.add('B', {});
    net.ipv4('A', '192.0.2.1');
    net.ipv4('B', '198.51.100.2');
    connect(a, [['10.0.0.1', 32]], b, [['10.0.0.2', 32]]);
    peerOf(a, b).endpoint.speaksKeymesh = false;
    a.engine.handleTunPacket(buildV4({ src: '10.0.0.1', dst: '10.0.0.2', payload: [1] }), net.now);
    net.deliver();
    expect(peerOf(a, b).tunnelMtu).toBe(Math.min(1420, 1300 - 28 - WG_OVERHEAD));
  });

  it('a too-big report quoting one of our datagrams lowers a stock peer’s path; one quoting a stranger’s does not', () => {
    const { net, a, b, p } = withStockPeer({});
    const idx = p.keypairs.current!.remoteIndex;
    const addr = a.engine.addressOf!(b.path)!;
    a.engine.handlePacketTooBig(addr.addr, addr.port, 1300, quoted((idx + 1) >>> 0), net.now);
    expect(p.tunnelMtu).toBe(1420);
    a.engine.handlePacketTooBig(addr.addr, addr.port, 1300, quoted(idx), net.now);
    expect(p.tunnelMtu).toBe(1300 - 28 - WG_OVERHEAD);
    expect(a.engine.stats().pmtu.tooBigApplied).toBe(1);
    expect(a.engine.stats().pmtu.tooBigReports).toBe(2);
  });

  it('a too-big report for a stock peer whose route first carried full size: the path takes the kernel’s new figure', () => {
    // the kernel learns the smaller path MTU from the same ICMP before keymesh reads the report
    let route = 1500;
    const { net, a, b, p } = withStockPeer({ routeMtu: () => route });
    expect(p.tunnelMtu).toBe(1420);
    expect(p.endpoint.active!.mtu).toBeNull(); // nothing kept for a stock peer whose route carries full size
    route = 1280;
    const idx = p.keypairs.current!.remoteIndex;
    const addr = a.engine.addressOf!(b.path)!;
    a.engine.handlePacketTooBig(addr.addr, addr.port, 1280, quoted(idx), net.now);
    expect(p.tunnelMtu).toBe(1280 - 28 - WG_OVERHEAD);
  });
});

describe('pmtu: relayed paths', () => {
  it('a relayed pair on 1500-byte links sizes for the RELAY wrapping: no datagram is ever too big, and full-size packets arrive (fragmented inside)', () => {
    const net = new Net();
    const l = net.add('L1', { ...PROBING, isLighthouse: true });
    const a = net.add('A-lan', PROBING);
    const b = net.add('B-lan', PROBING);
    a.behind(new FakeNat(net, 'NATA', 'symmetric'));
    b.behind(new FakeNat(net, 'NATB', 'symmetric'));
    for (const [h, ip] of [
      ['L1', '203.0.113.1'],
      ['A-lan', '192.168.1.2'],
      ['B-lan', '192.168.2.2'],
      ['NATA', '198.51.100.1'],
      ['NATB', '198.51.100.2'],
    ]) {
      net.ipv4(h, ip);
      net.mtus.set(h, 1500 - 28);
    }
    for (const [m, ip] of [
      [a, '10.0.0.1'],
      [b, '10.0.0.2'],
    ] as const)
      l.engine.upsertPeer({ publicKey: m.publicKey, allowedIps: [{ addr: ipBytes(ip), cidr: 32 }] }, net.now);
    for (const [m, o, ip] of [
      [a, b, '10.0.0.2'],
      [b, a, '10.0.0.1'],
    ] as const) {
      m.engine.upsertPeer({ publicKey: l.publicKey, endpoint: l.path, lighthouse: true, allowedIps: [{ addr: ipBytes('10.0.9.1'), cidr: 32 }] }, net.now);
      m.engine.upsertPeer({ publicKey: o.publicKey, allowedIps: [{ addr: ipBytes(ip), cidr: 32 }] }, net.now);
      m.engine.setPersistentKeepalive(peerOf(m, l), 10, net.now);
    }
    net.deliver();
    a.engine.handleTunPacket(buildV4({ src: '10.0.0.1', dst: '10.0.0.2', payload: [1] }), net.now);
    net.deliver();
    for (let t = 0; t < 4000; t += 50) {
      a.engine.handleTunPacket(buildV4({ src: '10.0.0.1', dst: '10.0.0.2', payload: [2] }), net.now);
      net.deliver();
      net.advance(50);
    }
    const p = peerOf(a, b);
    expect(isRelay(p.endpoint.path!)).toBe(true);
    // the naive twin: the largest datagram S whose RELAY wrapping (header, tag, RELAY header, S padded to 16) fits the link
    let fits = 0;
    for (let s = 0; s < 1500; s++) if (WG_OVERHEAD + Math.ceil((RELAY_HEADER + s) / 16) * 16 <= 1500 - 28) fits = s;
    expect(p.tunnelMtu).toBeLessThanOrEqual(fits - WG_OVERHEAD);
    expect(p.tunnelMtu).toBeGreaterThan(fits - WG_OVERHEAD - 8);
    const before = b.tun.length;
    const pkt = big4(false, 1420);
    a.engine.handleTunPacket(pkt, net.now);
    net.deliver();
    const got = b.tun.slice(before);
    expect(got.length).toBe(2);
    expect(got.reduce((n, f) => n + parseV4(f).totalLength - 20, 0)).toBe(1400);
    // nothing after the searches settled was too big for a link
    const settled = net.now - 100;
    expect(net.log.filter((r) => r.at >= settled && r.fate === 'tooBig')).toHaveLength(0);
    const e: Engine = a.engine;
    expect(e.stats().pmtu.fragmented).toBe(1);
  });
});
