/**
 * A mesh on the fake network (test/unit/support/pair.ts): a test CA, members whose only configured
 * peer is a lighthouse, packets by overlay address. Shared by membership.test.ts and names.test.ts.
 */
import { createCa, signNodeCert, type CaCert, type IpPrefix, type NodeCert } from '../../../src/core/cert.js';
import { signCrl } from '../../../src/core/crl.js';
import { CertAuthority } from '../../../src/core/mesh-authority.js';
import { FakeNat, ipBytes, ipPacket, Net, random, type Node } from './pair.js';

export const enc = new TextEncoder();
export const dec = new TextDecoder();
export const DAY = 86400;
/** The fake network's clock starts at 1,000,000 ms; the wall clock is then this. */
export const T0 = Date.UTC(2026, 11, 1) / 1000;
export const OFFSET = T0 * 1000 - 1_000_000;

export function prefix(s: string): IpPrefix {
  const [a, b] = s.split('/');
  const addr = ipBytes(a);
  return { family: addr.length === 4 ? 4 : 6, addr, bits: Number(b) };
}

export class TestCa {
  readonly seed = random(32);
  readonly ca: CaCert;
  revoked: string[] = [];
  serial = 0n;
  constructor(name = 'test mesh', networks = ['10.99.0.0/16', 'fd99::/48']) {
    this.ca = createCa({ name, networks: networks.map(prefix), notBefore: T0 - 365 * DAY, notAfter: T0 + 3650 * DAY }, this.seed);
  }
  sign(publicKey: Uint8Array, name: string, i: number, o: { lighthouse?: boolean; notBefore?: number; notAfter?: number; addresses?: string[]; subnets?: string[] } = {}): NodeCert {
    return signNodeCert(
      {
        name,
        publicKey,
        addresses: (o.addresses ?? [`10.99.0.${i}/16`, `fd99::${i.toString(16)}/48`]).map(prefix),
        lighthouse: o.lighthouse,
        subnets: o.subnets?.map(prefix),
        notBefore: o.notBefore ?? T0 - DAY,
        notAfter: o.notAfter ?? T0 + 365 * DAY,
      },
      this.seed,
      this.ca,
    );
  }
  crl(...fingerprints: string[]) {
    this.revoked.push(...fingerprints);
    return signCrl({ serial: ++this.serial, issuedAt: T0, revoked: this.revoked }, this.seed, this.ca);
  }
}

export interface Member {
  node: Node;
  i: number;
  cert: NodeCert;
  v4: string;
  v6: string;
}

export function member(net: Net, ca: TestCa, name: string, i: number, lighthouses: Member[], o: { isLighthouse?: boolean; notAfter?: number; cert?: NodeCert; idle?: number; nat?: 'cone' | 'symmetric' } = {}): Member {
  const node = net.add(`${name}${o.nat ? '-lan' : ''}`, { isLighthouse: o.isLighthouse, wallClockOffset: OFFSET, meshIdleForget: o.idle });
  if (o.nat) node.behind(new FakeNat(net, `NAT-${name}`, o.nat));
  const cert = o.cert ?? ca.sign(node.publicKey, name, i, { lighthouse: o.isLighthouse, notAfter: o.notAfter });
  node.engine.setMeshAuthority(new CertAuthority(ca.ca, cert), net.now);
  for (const l of lighthouses) {
    // only the lighthouse is configured, and without AllowedIPs: they come from its certificate
    node.engine.upsertPeer({ publicKey: l.node.publicKey, endpoint: l.node.path, lighthouse: true }, net.now);
    node.engine.setPersistentKeepalive(node.engine.getPeer(l.node.publicKey)!, 10, net.now);
  }
  net.deliver();
  return { node, i, cert, v4: `10.99.0.${i}`, v6: `fd99::${i.toString(16)}` };
}

export function send(net: Net, from: Member, to: Member, text: string, v6 = false): void {
  from.node.engine.handleTunPacket(ipPacket(v6 ? from.v6 : from.v4, v6 ? to.v6 : to.v4, enc.encode(text)), net.now);
}

export function got(m: Member, text: string): boolean {
  return m.node.tun.some((p) => dec.decode(p.subarray(p[0] >> 4 === 4 ? 20 : 40)) === text);
}

/** Send `text` from `a` to `b` and let the network settle (no timer fires: nothing may wait on one). */
export function reach(net: Net, a: Member, b: Member, text: string, v6 = false): boolean {
  send(net, a, b, text, v6);
  net.deliver();
  return got(b, text);
}

export function setup(n: number, o: { lighthouses?: number } = {}) {
  const net = new Net();
  const ca = new TestCa();
  const lhs: Member[] = [];
  for (let k = 0; k < (o.lighthouses ?? 1); k++) lhs.push(member(net, ca, `lh${k + 1}`, 250 - k, [], { isLighthouse: true }));
  const members: Member[] = [];
  for (let k = 0; k < n; k++) members.push(member(net, ca, `m${k + 1}`, k + 1, lhs));
  net.advance(20);
  return { net, ca, lhs, members };
}

