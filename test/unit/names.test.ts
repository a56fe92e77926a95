/**
 * Names in the mesh on the fake network (src/core/names.ts): lookups by name through the
 * lighthouse (a member not met yet, an unknown name, a gateway's device), the lighthouse's check
 * of a gateway's device names against its certified subnets, static peers' `Name =`, and
 * PING/PONG reporting the path a pong came over.
 */
import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/core/engine.js';
import { EXT_NAMES } from '../../src/core/extension.js';
import { CertAuthority } from '../../src/core/mesh-authority.js';
import { ipBytes, ipPacket, Net } from './support/pair.js';
import { enc, got, member, reach, setup, TestCa, type Member } from './support/mesh.js';

type NameAnswer = Extract<EngineEvent, { type: 'name-answer' }>;
type Pong = Extract<EngineEvent, { type: 'pong' }>;

const answers = (m: Member) => m.node.events.filter((e): e is NameAnswer => e.type === 'name-answer');
const pongs = (m: Member) => m.node.events.filter((e): e is Pong => e.type === 'pong');
const hex = (b: Uint8Array | null) => (b ? Buffer.from(b).toString('hex') : null);
const text = (b: Uint8Array) => (b.length === 4 ? b.join('.') : Buffer.from(b).toString('hex'));

describe('names: lookups through the lighthouse', () => {
  it('a member not met yet is found by name: addresses and key, and the path to it is set up at once', () => {
    const { net, members } = setup(2);
    const [a, b] = members;
    expect(a.node.engine.getPeer(b.node.publicKey)).toBeUndefined();
    expect(a.node.engine.lookupName('m2', net.now)).toBe(true);
    net.deliver();
    const [ans] = answers(a);
    expect(ans).toMatchObject({ name: 'm2', found: true });
    expect(hex(ans.key)).toBe(hex(b.node.publicKey));
    expect(ans.addresses.map(text).sort()).toEqual([b.v4, Buffer.from(ipBytes(b.v6)).toString('hex')].sort());
    // the lighthouse introduced both: the first packet goes with no further lookup
    expect(a.node.engine.getPeer(b.node.publicKey)?.membership).toBe('certified');
    expect(a.node.engine.peerByName('m2')).toBe(a.node.engine.getPeer(b.node.publicKey));
    expect(reach(net, a, b, 'by name')).toBe(true);
  });

  it('an unknown name is answered as not found; a malformed one is not asked', () => {
    const { net, members } = setup(1);
    const [a] = members;
    expect(a.node.engine.lookupName('nobody', net.now)).toBe(true);
    net.deliver();
    expect(answers(a)).toEqual([expect.objectContaining({ name: 'nobody', found: false, key: null, addresses: [] })]);
    expect(a.node.engine.lookupName('Not_A_Label', net.now)).toBe(false);
    expect(a.node.engine.lookupName('a.b.c', net.now)).toBe(false);
    // asked again at once: held back (LOOKUP_MIN_INTERVAL)
    expect(a.node.engine.lookupName('nobody', net.now)).toBe(false);
  });

  it("a gateway's devices are found as NAME.GATEWAY, only inside the gateway's certified subnets, and reached through it", () => {
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
    gw.node.engine.setDeviceNames(
      [
        { name: 'phone', addresses: [ipBytes('10.99.200.2')] },
        { name: 'rogue', addresses: [ipBytes('10.99.0.1')] }, // someone else's address: refused
      ],
      net.now,
    );
    net.deliver();
    expect(l.node.engine.stats().lighthouse.namesRefused).toBe(1);
    a.node.engine.lookupName('phone.gw', net.now);
    a.node.engine.lookupName('rogue.gw', net.now);
    net.deliver();
    const phone = answers(a).find((x) => x.name === 'phone.gw')!;
    expect(phone.found).toBe(true);
    expect(hex(phone.key)).toBe(hex(gw.node.publicKey));
    expect(phone.addresses.map(text)).toEqual(['10.99.200.2']);
    expect(answers(a).find((x) => x.name === 'rogue.gw')!.found).toBe(false);
    // the device's address routes to the gateway (its certificate's subnet)
    a.node.engine.handleTunPacket(ipPacket(a.v4, '10.99.200.2', enc.encode('to the phone')), net.now);
    net.deliver();
    expect(gw.node.tun.some((p) => Buffer.from(p.subarray(20)).toString() === 'to the phone')).toBe(true);
  });

  it('a gateway whose certificate has no subnets cannot publish names', () => {
    const { net, lhs, members } = setup(2);
    members[0].node.engine.setDeviceNames([{ name: 'phone', addresses: [ipBytes('10.99.200.2')] }], net.now);
    net.deliver();
    expect(lhs[0].node.engine.stats().lighthouse.namesRefused).toBe(1);
    members[1].node.engine.lookupName('phone.m1', net.now);
    net.deliver();
    expect(answers(members[1])[0].found).toBe(false);
  });

  it('a forged NAMES from a member that is not a gateway is refused, whatever it claims', () => {
    const { net, lhs, members } = setup(1);
    const m = members[0];
    const lp = m.node.engine.getPeer(lhs[0].node.publicKey)!;
    m.node.engine.sendExtension(lp, lp.endpoint.path!, { type: EXT_NAMES, first: true, names: [{ name: 'lh', addresses: [ipBytes('10.99.0.250')] }] }, net.now);
    net.deliver();
    expect(lhs[0].node.engine.stats().lighthouse.namesRefused).toBe(1);
  });

  it('a static peer can be named (Name =) and is found by that name', () => {
    const net = new Net();
    const a = net.add('A');
    const b = net.add('B');
    a.engine.upsertPeer({ publicKey: b.publicKey, endpoint: b.path, allowedIps: [{ addr: ipBytes('10.0.0.2'), cidr: 32 }], name: 'nas' }, net.now);
    expect(a.engine.peerByName('nas')?.publicKey).toEqual(b.publicKey);
    a.engine.upsertPeer({ publicKey: b.publicKey, name: 'fileserver' }, net.now);
    expect(a.engine.peerByName('nas')).toBeUndefined();
    expect(a.engine.peerByName('fileserver')?.publicKey).toEqual(b.publicKey);
    a.engine.removePeer(b.publicKey);
    expect(a.engine.peerByName('fileserver')).toBeUndefined();
  });
});

describe('names: ping', () => {
  it('a PONG says the path it came over: first over the relay, then direct once a direct path is validated', () => {
    const net = new Net();
    const ca = new TestCa();
    const l = member(net, ca, 'lh', 250, [], { isLighthouse: true });
    // behind NATs: the session starts over the relay while the punch opens a direct path
    const a = member(net, ca, 'm1', 1, [l], { nat: 'cone' });
    const b = member(net, ca, 'm2', 2, [l], { nat: 'cone' });
    net.advance(20);
    a.node.engine.handleTunPacket(ipPacket(a.v4, b.v4, enc.encode('hello')), net.now);
    // the direct path is blocked at first (only what goes through the lighthouse moves), so the
    // session starts over the relay
    const viaLighthouse = (w: { from: string; to: string }) => w.from.startsWith('lh:') || w.to.startsWith('lh:');
    net.deliver(viaLighthouse);
    const pb = () => a.node.engine.getPeer(b.node.publicKey)!;
    expect(got(b, 'hello')).toBe(true);
    const first = a.node.engine.ping(pb(), net.now);
    expect(first).not.toBeNull();
    net.deliver(viaLighthouse);
    const p1 = pongs(a).at(-1)!;
    expect(p1.peer).toBe(pb());
    expect(p1.rttMs).toBeGreaterThanOrEqual(0);
    expect(p1.path.via, 'the first pong comes over the relay').toBeDefined();
    net.advance(2000);
    a.node.engine.ping(pb(), net.now);
    net.deliver();
    const p2 = pongs(a).at(-1)!;
    expect(p2.path.via).toBeUndefined(); // direct
    expect(p2.path.id).toBe(pb().endpoint.path!.id);
  });

  it('a ping without a session starts the handshake and returns null; a PONG nobody asked for is ignored', () => {
    const net = new Net();
    const a = net.add('A');
    const b = net.add('B');
    a.engine.upsertPeer({ publicKey: b.publicKey, endpoint: b.path, allowedIps: [{ addr: ipBytes('10.0.0.2'), cidr: 32 }] }, net.now);
    b.engine.upsertPeer({ publicKey: a.publicKey, allowedIps: [{ addr: ipBytes('10.0.0.1'), cidr: 32 }] }, net.now);
    const pb = a.engine.getPeer(b.publicKey)!;
    expect(a.engine.ping(pb, net.now)).toBeNull();
    expect(a.engine.stats().handshakesSent).toBe(1);
    net.deliver();
    expect(a.engine.ping(pb, net.now)).not.toBeNull();
    net.deliver();
    expect(a.events.filter((e) => e.type === 'pong').length).toBe(1);
    // B pongs a token A never sent: nothing
    const pa = b.engine.getPeer(a.publicKey)!;
    b.engine.sendExtension(pa, pa.endpoint.path!, { type: 18, token: new Uint8Array(8).fill(7) }, net.now);
    net.deliver();
    expect(a.events.filter((e) => e.type === 'pong').length).toBe(1);
  });
});

function send4(net: Net, a: Member, b: Member, t: string): void {
  a.node.engine.handleTunPacket(ipPacket(a.v4, b.v4, enc.encode(t)), net.now);
  net.deliver();
}
