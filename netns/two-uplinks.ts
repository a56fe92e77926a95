/**
 * A client with two uplinks (two routers, two default routes of different metrics) and a server
 * behind both — the multihoming topology.
 *
 *                 ┌── u1 10.1.0.2 ── c1 10.1.0.1 [R1] 203.0.113.1 ──┐
 *   C (client)  ──┤   default via 10.1.0.1 metric 100               ├── br0 ── S 203.0.113.10
 *   tunnel 10.0.0.1└── u2 10.2.0.2 ── c2 10.2.0.1 [R2] 203.0.113.2 ──┘           tunnel 10.0.0.2
 *                     default via 10.2.0.1 metric 200
 *
 * S routes 10.1.0.0/24 via R1 and 10.2.0.0/24 via R2. Routing alone sends everything from C
 * through R1; only a path with a real local end (source 10.2.0.2 out of u2) uses R2.
 */
import { Lab, wgGenKeypair, type NodeSpec } from './lib.js';

export function twoUplinks(lab: Lab): { c: NodeSpec; s: NodeSpec; r1: string; r2: string } {
  const nsC = lab.netns('c');
  const nsS = lab.netns('s');
  const { ns: r1 } = lab.router('r1');
  const { ns: r2 } = lab.router('r2');
  lab.link(nsC, 'u1', ['10.1.0.2/24'], r1, 'c1', ['10.1.0.1/24']);
  lab.link(nsC, 'u2', ['10.2.0.2/24'], r2, 'c2', ['10.2.0.1/24']);
  const plug = lab.bridge('wan');
  plug(r1, 'wan', ['203.0.113.1/24']);
  plug(r2, 'wan', ['203.0.113.2/24']);
  plug(nsS, 'wan', ['203.0.113.10/24']);
  lab.exec(nsC, ['ip', 'route', 'add', 'default', 'via', '10.1.0.1', 'metric', '100']);
  lab.exec(nsC, ['ip', 'route', 'add', 'default', 'via', '10.2.0.1', 'metric', '200']);
  lab.exec(nsS, ['ip', 'route', 'add', '10.1.0.0/24', 'via', '203.0.113.1']);
  lab.exec(nsS, ['ip', 'route', 'add', '10.2.0.0/24', 'via', '203.0.113.2']);
  const kc = wgGenKeypair();
  const ks = wgGenKeypair();
  const c: NodeSpec = {
    ns: nsC,
    ifname: lab.name('c'),
    privateKey: kc.privateKey,
    listenPort: 51820,
    addresses: ['10.0.0.1/24'],
    peers: [{ publicKey: ks.publicKey, allowedIps: ['10.0.0.2/32'], endpoint: '203.0.113.10:51820' }],
  };
  const s: NodeSpec = {
    ns: nsS,
    ifname: lab.name('s'),
    privateKey: ks.privateKey,
    listenPort: 51820,
    addresses: ['10.0.0.2/24'],
    peers: [{ publicKey: kc.publicKey, allowedIps: ['10.0.0.1/32'] }],
  };
  return { c, s, r1, r2 };
}
