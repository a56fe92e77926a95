/**
 * The mesh's resolver (src/dns/): answers from the zone (own certificate, admitted peers, static
 * `Name =` peers, a gateway's devices, PTR for overlay addresses), NXDOMAIN / REFUSED / forwarding,
 * names only the lighthouse knows looked up through it on the fake network (support/mesh.ts), UDP truncation and
 * TCP framing, a fuzz of mutated queries; and the real sockets (dns-server.ts) on loopback: UDP
 * and TCP, the per-source rate limit, the malformed counter, forwarding to an upstream.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet } from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/core/engine.js';
import { frame, TcpDeframer } from '../../src/dns/framing.js';
import { LOOKUP_WAIT_MS, Resolver, reverseAddress, reverseName, type Outcome } from '../../src/dns/resolver.js';
import { Upstream } from '../../src/dns/upstream.js';
import { Zone } from '../../src/dns/zone.js';
import { DnsServer, type DnsClient } from '../../src/io/dns-server.js';
import { ipBytes, Net } from './support/pair.js';
import { member, setup, TestCa, type Member } from './support/mesh.js';
import { CertAuthority } from '../../src/core/mesh-authority.js';

type NameAnswer = Extract<EngineEvent, { type: 'name-answer' }>;

let id = 1;
function query(name: string, type: string, o: { edns?: number; rd?: boolean } = {}): Buffer {
  const p: Packet = { type: 'query', id: id++ & 0xffff, flags: o.rd === false ? 0 : dnsPacket.RECURSION_DESIRED, questions: [{ type: type as 'A', name, class: 'IN' }] };
  if (o.edns) p.additionals = [{ type: 'OPT', name: '.', udpPayloadSize: o.edns, flags: 0, options: [] } as never];
  return dnsPacket.encode(p);
}

function reply(o: Outcome): DecodedPacket {
  expect(o.type).toBe('reply');
  return dnsPacket.decode((o as { bytes: Buffer }).bytes);
}

const datas = (r: DecodedPacket) => (r.answers ?? []).map((a) => (a as { data: unknown }).data);

/** A resolver over member `m`'s engine that asks the lighthouses; name answers are fed from its events. */
function resolverOf(m: Member, o: { forwarding?: boolean } = {}) {
  const asked: string[] = [];
  const r = new Resolver<string>(new Zone(m.node.engine), {
    forwarding: o.forwarding ?? false,
    ask: (name, now) => {
      asked.push(name);
      return m.node.engine.lookupName(name, now);
    },
  });
  let seen = 0;
  /** Name answers that arrived since the last call, handed to the resolver. */
  const feed = (now: number) => {
    const evs = m.node.events.filter((e): e is NameAnswer => e.type === 'name-answer');
    const out = evs.slice(seen).flatMap((e) => r.onNameAnswer(e.name, e.found, e.addresses, now));
    seen = evs.length;
    return out;
  };
  return { r, asked, feed };
}

describe('dns resolver: the zone', () => {
  it('A and AAAA for our own name, an admitted peer and a static named peer; case and trailing dot do not matter', () => {
    const { net, members } = setup(2);
    const [a, b] = members;
    // b admitted at a (a session by certificate); a static peer named "nas"
    a.node.engine.lookupName('m2', net.now);
    net.deliver();
    expect(a.node.engine.peerByName('m2')?.membership).toBe('certified');
    const nas = new Net().add('nas');
    a.node.engine.upsertPeer({ publicKey: nas.publicKey, allowedIps: [{ addr: ipBytes('10.50.0.7'), cidr: 32 }, { addr: ipBytes('10.60.0.0'), cidr: 24 }], name: 'nas' }, net.now);
    const { r, asked } = resolverOf(a);
    const now = net.now;
    expect(datas(reply(r.handle(query('m1.mesh', 'A'), false, 'c', now)))).toEqual([a.v4]);
    expect(datas(reply(r.handle(query('M2.Mesh.', 'A'), false, 'c', now)))).toEqual([b.v4]);
    expect(datas(reply(r.handle(query('m2.mesh', 'AAAA'), false, 'c', now)))).toEqual([b.v6]);
    const nasA = reply(r.handle(query('nas.mesh', 'A'), false, 'c', now));
    expect(datas(nasA), 'only host routes are a name address').toEqual(['10.50.0.7']);
    expect(nasA.flag_aa).toBe(true);
    expect(nasA.answers![0].ttl).toBeLessThanOrEqual(30);
    // a name without the type asked: NOERROR, no records, the SOA for negative caching
    const noData = reply(r.handle(query('nas.mesh', 'AAAA'), false, 'c', now));
    expect(noData.rcode).toBe('NOERROR');
    expect(noData.answers).toEqual([]);
    expect(noData.authorities![0].type).toBe('SOA');
    expect(asked, 'nothing known here was asked of the lighthouse').toEqual([]);
    expect(r.counters).toMatchObject({ queries: 5, answered: 5, nxdomain: 0 });
  });

  it('PTR for overlay addresses (in-addr.arpa and ip6.arpa); an unknown overlay address is NXDOMAIN', () => {
    const { net, members } = setup(2);
    const [a, b] = members;
    a.node.engine.lookupName('m2', net.now);
    net.deliver();
    const { r } = resolverOf(a);
    expect(reverseName(ipBytes('10.99.0.2'))).toBe('2.0.99.10.in-addr.arpa');
    expect(Buffer.from(reverseAddress(reverseName(ipBytes(b.v6)))!)).toEqual(Buffer.from(ipBytes(b.v6)));
    expect(datas(reply(r.handle(query(reverseName(ipBytes(b.v4)), 'PTR'), false, 'c', net.now)))).toEqual(['m2.mesh']);
    expect(datas(reply(r.handle(query(reverseName(ipBytes(b.v6)), 'PTR'), false, 'c', net.now)))).toEqual(['m2.mesh']);
    expect(datas(reply(r.handle(query(reverseName(ipBytes(a.v4)), 'PTR'), false, 'c', net.now)))).toEqual(['m1.mesh']);
    expect(reply(r.handle(query(reverseName(ipBytes('10.99.7.7')), 'PTR'), false, 'c', net.now)).rcode).toBe('NXDOMAIN');
    // outside the mesh's networks: not ours
    expect(reply(r.handle(query(reverseName(ipBytes('192.0.2.1')), 'PTR'), false, 'c', net.now)).rcode).toBe('REFUSED');
    expect(reverseAddress('1.2.3.256.in-addr.arpa')).toBeNull();
    // the zones a domain-routing resolver sends here: 10.99.0.0/16 and fd99::/48
    expect(new Zone(a.node.engine).reverseZones()).toEqual(['99.10.in-addr.arpa', '0.0.0.0.0.0.0.0.9.9.d.f.ip6.arpa']);
    expect(reverseAddress('2.3.4.in-addr.arpa')).toBeNull();
  });

  it('names outside the domain: REFUSED, or forwarded when forwarding is on; the domain itself has an SOA', () => {
    const { net, members } = setup(1);
    const refusing = resolverOf(members[0]).r;
    const r = refusing.handle(query('example.com', 'A'), false, 'c', net.now);
    expect(reply(r).rcode).toBe('REFUSED');
    expect(reply(r).flag_aa).toBe(false);
    expect(refusing.counters.refused).toBe(1);
    const fwd = resolverOf(members[0], { forwarding: true }).r;
    expect(fwd.handle(query('example.com', 'A'), false, 'c', net.now)).toEqual({ type: 'forward' });
    expect(fwd.handle(query('meshy', 'A'), false, 'c', net.now)).toEqual({ type: 'forward' });
    expect(fwd.counters.forwarded).toBe(2);
    const soa = reply(refusing.handle(query('mesh', 'SOA'), false, 'c', net.now));
    expect(soa.answers![0]).toMatchObject({ type: 'SOA', name: 'mesh' });
  });
});

describe('dns resolver: names only a lighthouse knows', () => {
  it('a member not met yet: the query waits for the lighthouse, then gets A; the next is answered from the cache', () => {
    const { net, members } = setup(3);
    const [a, , c] = members;
    expect(a.node.engine.peerByName('m3')).toBeUndefined();
    const { r, asked, feed } = resolverOf(a);
    expect(r.handle(query('m3.mesh', 'A'), false, 'q1', net.now)).toEqual({ type: 'wait' });
    // a second query for the same name (the AAAA a stub sends alongside) waits for the same answer
    expect(r.handle(query('m3.mesh', 'AAAA'), false, 'q2', net.now)).toEqual({ type: 'wait' });
    expect(asked).toEqual(['m3']);
    expect(r.pending).toBe(2);
    net.deliver();
    const out = feed(net.now);
    expect(out.map((o) => o.tag)).toEqual(['q1', 'q2']);
    expect(datas(dnsPacket.decode(out[0].bytes))).toEqual([c.v4]);
    expect(datas(dnsPacket.decode(out[1].bytes))).toEqual([c.v6]);
    expect(r.pending).toBe(0);
    expect(datas(reply(r.handle(query('m3.mesh', 'A'), false, 'q3', net.now)))).toEqual([c.v4]);
    expect(asked).toHaveLength(1);
  });

  it('an unknown name: NXDOMAIN once the lighthouse says so, and again from the negative cache', () => {
    const { net, members } = setup(1);
    const { r, asked, feed } = resolverOf(members[0]);
    expect(r.handle(query('nobody.mesh', 'A'), false, 'q', net.now).type).toBe('wait');
    net.deliver();
    const [o] = feed(net.now);
    const d = dnsPacket.decode(o.bytes);
    expect(d.rcode).toBe('NXDOMAIN');
    expect(d.authorities![0].type).toBe('SOA');
    expect(reply(r.handle(query('nobody.mesh', 'AAAA'), false, 'q', net.now + 100)).rcode).toBe('NXDOMAIN');
    expect(asked).toHaveLength(1);
    // three labels cannot be a name of the mesh: NXDOMAIN without asking
    expect(reply(r.handle(query('a.b.c.mesh', 'A'), false, 'q', net.now)).rcode).toBe('NXDOMAIN');
    expect(r.counters.nxdomain).toBe(3);
  });

  it('no answer from the lighthouse within the wait: SERVFAIL (not a cached NXDOMAIN)', () => {
    const { net, members, lhs } = setup(1);
    const { r, feed } = resolverOf(members[0]);
    expect(r.handle(query('m9.mesh', 'A'), false, 'q', net.now).type).toBe('wait');
    net.blackholes.add(lhs[0].node.path.id);
    net.deliver();
    expect(feed(net.now)).toEqual([]);
    expect(r.nextDeadline()).toBe(net.now + LOOKUP_WAIT_MS);
    expect(r.expire(net.now + LOOKUP_WAIT_MS - 1)).toEqual([]);
    const [o] = r.expire(net.now + LOOKUP_WAIT_MS);
    expect(dnsPacket.decode(o.bytes).rcode).toBe('SERVFAIL');
    expect(r.pending).toBe(0);
    expect(r.nextDeadline()).toBe(Infinity);
  });

  it("a gateway's device is DEVICE.GATEWAY.DOMAIN: answered by the gateway itself, and elsewhere through the lighthouse", () => {
    const net = new Net();
    const ca = new TestCa();
    const l = member(net, ca, 'lh', 250, [], { isLighthouse: true });
    const a = member(net, ca, 'm1', 1, [l]);
    const gwNode = net.add('gw', { wallClockOffset: a.node.engine.wallClockOffset });
    const gwCert = ca.sign(gwNode.publicKey, 'gw', 9, { subnets: ['10.99.200.0/24'] });
    gwNode.engine.setMeshAuthority(new CertAuthority(ca.ca, gwCert), net.now);
    gwNode.engine.upsertPeer({ publicKey: l.node.publicKey, endpoint: l.node.path, lighthouse: true }, net.now);
    gwNode.engine.setPersistentKeepalive(gwNode.engine.getPeer(l.node.publicKey)!, 10, net.now);
    net.deliver();
    const gw: Member = { node: gwNode, i: 9, cert: gwCert, v4: '10.99.0.9', v6: 'fd99::9' };
    gw.node.engine.setDeviceNames([{ name: 'phone', addresses: [ipBytes('10.99.200.2')] }], net.now);
    net.deliver();
    const atGw = resolverOf(gw);
    expect(datas(reply(atGw.r.handle(query('phone.gw.mesh', 'A'), false, 'q', net.now)))).toEqual(['10.99.200.2']);
    expect(datas(reply(atGw.r.handle(query(reverseName(ipBytes('10.99.200.2')), 'PTR'), false, 'q', net.now)))).toEqual(['phone.gw.mesh']);
    expect(atGw.asked).toEqual([]);
    const atA = resolverOf(a);
    expect(atA.r.handle(query('phone.gw.mesh', 'A'), false, 'q', net.now).type).toBe('wait');
    expect(atA.asked).toEqual(['phone.gw']);
    net.deliver();
    const [o] = atA.feed(net.now);
    expect(datas(dnsPacket.decode(o.bytes))).toEqual(['10.99.200.2']);
    // a device the gateway does not have: the lighthouse says no
    expect(atA.r.handle(query('tablet.gw.mesh', 'A'), false, 'q', net.now).type).toBe('wait');
    net.deliver();
    expect(dnsPacket.decode(atA.feed(net.now)[0].bytes).rcode).toBe('NXDOMAIN');
  });

  it('without a lighthouse to ask, an unknown name is NXDOMAIN at once', () => {
    const n = new Net();
    const a = n.add('solo');
    const r = new Resolver(new Zone(a.engine), { forwarding: false, ask: (name, now) => a.engine.lookupName(name, now) });
    expect(reply(r.handle(query('who.mesh', 'A'), false, 'q', n.now)).rcode).toBe('NXDOMAIN');
  });
});

describe('dns resolver: UDP truncation and TCP framing', () => {
  /** A static peer with `count` host addresses: a reply too big for 512 bytes. */
  function bigName(count: number) {
    const { net, members } = setup(1);
    const far = new Net().add('far');
    const allowedIps = Array.from({ length: count }, (_, i) => ({ addr: ipBytes(`10.70.${i >> 8}.${i & 255}`), cidr: 32 }));
    members[0].node.engine.upsertPeer({ publicKey: far.publicKey, allowedIps, name: 'big' }, net.now);
    return { net, r: resolverOf(members[0]).r };
  }

  it('over UDP a reply past 512 bytes (or the EDNS size) goes out empty with TC; over TCP it is whole', () => {
    const { net, r } = bigName(40);
    const udp = reply(r.handle(query('big.mesh', 'A'), false, 'c', net.now));
    expect(udp.flag_tc).toBe(true);
    expect(udp.answers).toEqual([]);
    expect((r.handle(query('big.mesh', 'A'), false, 'c', net.now) as { bytes: Buffer }).bytes.length).toBeLessThanOrEqual(512);
    const tcp = reply(r.handle(query('big.mesh', 'A'), true, 'c', net.now));
    expect(tcp.flag_tc).toBe(false);
    expect(tcp.answers).toHaveLength(40);
    // EDNS: the client says it takes 1232 bytes; 40 records (~1 KB) fit then
    const edns = (r.handle(query('big.mesh', 'A', { edns: 1232 }), false, 'c', net.now) as { bytes: Buffer }).bytes;
    expect(edns.length).toBeGreaterThan(512);
    expect(dnsPacket.decode(edns).flag_tc).toBe(false);
    expect(dnsPacket.decode(edns).answers).toHaveLength(40);
    expect(r.counters.truncated).toBe(2);
    // small answers are not truncated
    expect(reply(r.handle(query('m1.mesh', 'A'), false, 'c', net.now)).flag_tc).toBe(false);
  });

  it('TCP frames: split across chunks, several in one chunk; an empty or oversized frame ends the stream', () => {
    const a = query('m1.mesh', 'A');
    const b = query('m2.mesh', 'AAAA');
    const stream = Buffer.concat([frame(a), frame(b)]);
    const d = new TcpDeframer();
    const got: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 3) got.push(...d.push(stream.subarray(i, i + 3))!);
    expect(got.map((x) => x.toString('hex'))).toEqual([a.toString('hex'), b.toString('hex')]);
    expect(d.held).toBe(0);
    const whole = new TcpDeframer().push(stream)!;
    expect(whole).toHaveLength(2);
    expect(new TcpDeframer().push(Buffer.from([0, 0]))).toBeNull();
    expect(new TcpDeframer().push(Buffer.from([0xff, 0xff, 1]))).toBeNull();
  });
});

describe('dns resolver: malformed queries', () => {
  it('responses, queries without exactly one question and garbage are counted and not answered', () => {
    const { net, members } = setup(1);
    const { r } = resolverOf(members[0]);
    const resp = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'm1.mesh' }] });
    expect(r.handle(resp, false, 'c', net.now)).toEqual({ type: 'drop' });
    expect(r.handle(dnsPacket.encode({ type: 'query', id: 2, questions: [] }), false, 'c', net.now)).toEqual({ type: 'drop' });
    const two = dnsPacket.encode({ type: 'query', id: 3, questions: [{ type: 'A', name: 'a.mesh' }, { type: 'A', name: 'b.mesh' }] });
    expect(r.handle(two, false, 'c', net.now)).toEqual({ type: 'drop' });
    expect(r.handle(Buffer.from([1, 2, 3]), false, 'c', net.now)).toEqual({ type: 'drop' });
    expect(r.handle(Buffer.alloc(0), false, 'c', net.now)).toEqual({ type: 'drop' });
    expect(r.counters).toMatchObject({ queries: 5, malformed: 5, answered: 0 });
  });

  it('fuzz: 30,000 mutated queries never throw; every reply is a response to the same ID with one question', () => {
    const { net, members } = setup(2);
    let seed = 12345;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const seeds = [query('m1.mesh', 'A'), query('m2.mesh', 'AAAA', { edns: 4096 }), query(reverseName(ipBytes('10.99.0.1')), 'PTR'), query('example.org', 'MX'), query('mesh', 'SOA')];
    // the lighthouse is not really asked (that is tested above): half the names "were asked"
    const r = new Resolver<string>(new Zone(members[0].node.engine), { forwarding: false, ask: () => rnd() < 0.5 });
    let replies = 0;
    let waits = 0;
    let drops = 0;
    let expired = 0;
    for (let i = 0; i < 30_000; i++) {
      const base = seeds[i % seeds.length];
      let m = Buffer.from(base);
      const kind = rnd();
      if (kind < 0.5) {
        for (let k = 0, n = 1 + Math.floor(rnd() * 4); k < n; k++) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
      } else if (kind < 0.7) m = m.subarray(0, Math.floor(rnd() * m.length));
      else if (kind < 0.85) m = Buffer.concat([m, Buffer.from(Array.from({ length: Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256)))]);
      else m = Buffer.from(Array.from({ length: Math.floor(rnd() * 64) }, () => Math.floor(rnd() * 256)));
      // the clock moves on, so waits expire and the lighthouse's answers come in between
      const now = net.now + i;
      const o = r.handle(m, rnd() < 0.5, 'f', now);
      if (o.type === 'reply') {
        const d = dnsPacket.decode(o.bytes);
        expect(d.type).toBe('response');
        expect(d.id).toBe(m.readUInt16BE(0));
        expect(d.questions).toHaveLength(1);
        replies++;
      } else if (o.type === 'wait') waits++;
      else if (o.type === 'drop') drops++;
      for (const e of r.expire(now)) {
        expect(dnsPacket.decode(e.bytes).rcode).toBe('SERVFAIL');
        expired++;
      }
    }
    expect(r.counters.queries).toBe(30_000);
    expect(r.counters.malformed).toBeGreaterThan(1000);
    expect(replies).toBeGreaterThan(1000);
    expect(waits).toBeGreaterThan(100);
    expect(replies + waits + drops).toBe(30_000);
    expect(drops).toBe(r.counters.malformed);
    expect(expired + r.pending).toBe(waits);
  });
});

// ───────────────────────────── the sockets (dns-server.ts), on loopback ─────────────────────────────

const servers: DnsServer[] = [];
const closers: Array<() => void> = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
  for (const c of closers.splice(0)) c();
});

function udpAsk(port: number, msg: Buffer, timeoutMs = 1000, from?: string): Promise<DecodedPacket | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const t = setTimeout(() => {
      s.close();
      resolve(null);
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      resolve(dnsPacket.decode(m));
    });
    s.bind({ address: from ?? '127.0.0.1', port: 0 }, () => s.send(msg, port, '127.0.0.1'));
  });
}

function tcpAsk(port: number, msgs: Buffer[]): Promise<DecodedPacket[]> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port });
    const d = new TcpDeframer(65535);
    const got: DecodedPacket[] = [];
    c.on('connect', () => c.write(Buffer.concat(msgs.map(frame))));
    c.on('data', (chunk) => {
      for (const m of d.push(chunk) ?? []) got.push(dnsPacket.decode(m));
      if (got.length === msgs.length) {
        c.destroy();
        resolve(got);
      }
    });
    c.on('error', reject);
  });
}

const randomPort = () => 20000 + Math.floor(Math.random() * 30000);

async function serve(m: Member, o: { rate?: number; burst?: number; upstream?: Upstream } = {}) {
  const zone = new Zone(m.node.engine);
  const resolver = new Resolver<DnsClient>(zone, { forwarding: !!o.upstream, ask: () => false });
  const port = randomPort();
  const s = await DnsServer.start({ addresses: ['127.0.0.1'], port, resolver, upstream: o.upstream ?? null, now: () => performance.now(), log: () => undefined, ratePerSecond: o.rate, burst: o.burst });
  servers.push(s);
  expect(s.listening).toEqual(['127.0.0.1']);
  return { s, port, resolver };
}

describe('dns server: UDP and TCP on the given addresses', () => {
  it('answers over UDP and over TCP (two queries in one stream); garbage is counted, not answered', async () => {
    const { members } = setup(1);
    const { port, resolver } = await serve(members[0]);
    expect(datas((await udpAsk(port, query('m1.mesh', 'A')))!)).toEqual(['10.99.0.1']);
    const both = await tcpAsk(port, [query('m1.mesh', 'A'), query('m1.mesh', 'AAAA')]);
    expect(both.map(datas)).toEqual([['10.99.0.1'], ['fd99::1']]);
    expect(await udpAsk(port, Buffer.from('not dns at all'), 300)).toBeNull();
    expect(resolver.counters).toMatchObject({ queries: 4, answered: 3, malformed: 1 });
  });

  it('a source past its rate is dropped and counted; another source is still answered, and the host itself is never limited', async () => {
    const { members } = setup(1);
    const { port, resolver } = await serve(members[0], { rate: 5, burst: 5 });
    const answers = await Promise.all(Array.from({ length: 8 }, () => udpAsk(port, query('m1.mesh', 'A'), 400, '127.0.0.2')));
    expect(answers.filter(Boolean)).toHaveLength(5);
    expect(resolver.counters.rateLimited).toBe(3);
    expect(await udpAsk(port, query('m1.mesh', 'A'), 400, '127.0.0.3')).not.toBeNull();
    // from the address the server listens on: the host's own programs
    const own = await Promise.all(Array.from({ length: 8 }, () => udpAsk(port, query('m1.mesh', 'A'), 400, '127.0.0.1')));
    expect(own.filter(Boolean)).toHaveLength(8);
    expect(resolver.counters.rateLimited).toBe(3);
  });

  it('forwards names outside the domain to the upstream and gives the answer back with the client ID', async () => {
    // a fake upstream nameserver answering every query with 192.0.2.53
    const up = dgram.createSocket('udp4');
    const upPort = randomPort();
    await new Promise<void>((r) => up.bind(upPort, '127.0.0.1', () => r()));
    closers.push(() => up.close());
    const seenIds: number[] = [];
    up.on('message', (m, rinfo) => {
      const q = dnsPacket.decode(m);
      seenIds.push(q.id!);
      up.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: [{ type: 'A', name: q.questions![0].name, ttl: 60, data: '192.0.2.53' }] }), rinfo.port, rinfo.address);
    });
    const { members } = setup(1);
    const { port, resolver } = await serve(members[0], { upstream: new Upstream(['127.0.0.1'], 1000, upPort) });
    const q = query('example.org', 'A');
    const got = (await udpAsk(port, q))!;
    expect(got.id).toBe(q.readUInt16BE(0));
    expect(datas(got)).toEqual(['192.0.2.53']);
    expect(resolver.counters.forwarded).toBe(1);
    // mesh names are still answered here, not forwarded
    expect(datas((await udpAsk(port, query('m1.mesh', 'A')))!)).toEqual(['10.99.0.1']);
    expect(seenIds).toHaveLength(1);
  });

  it('an upstream that does not answer: SERVFAIL', async () => {
    const { members } = setup(1);
    const { port } = await serve(members[0], { upstream: new Upstream(['127.0.0.1'], 200, randomPort()) });
    expect((await udpAsk(port, query('example.org', 'A'), 2000))!.rcode).toBe('SERVFAIL');
  });
});
