/**
 * NAT traversal: two lighthouses on a public network, two members each behind its own NAT
 * router, spare NAT routers to move the members to, and a stranger on the public network.
 *
 *                         public network 203.0.113.0/24 (one bridge)
 *   ──┬──────────┬──────────┬───────┬───────┬───────┬───────┬───────┬───────┬───────┬───────┬──────────┬──
 *     L1 .1      L2 .2      c1 .11  c2 .12  c3 .13  c4 .14  s1 .15  s2 .16  s3 .17  s4 .18  S .66
 *     lighthouse lighthouse  cone    cone    cone    cone    sym     sym     sym     sym    stranger
 *                            NAT     NAT     NAT     NAT     NAT     NAT     NAT     NAT
 *                           10.1/24 10.2/24 10.3/24 10.4/24 10.5/24 10.6/24 10.7/24 10.8/24
 *                             │       │       │       │       │       │       │       │
 *                             A ──────┼───────A───────┼───────A───────┼───────A       │   A = 10.k.0.2 (links c1 c3 s1 s3)
 *                                     B ──────────────B───────────────B───────────────B   B = 10.k.0.3 (links c2 c4 s2 s4)
 *
 * Tunnel addresses 10.99.0.0/24: L1 .1, L2 .2, A .11, B .12, S .66. A member has one link to
 * each NAT router it may sit behind; only the current one has an address and the default route,
 * and move() switches it (both members at once if asked). Every NAT router masquerades what
 * leaves through "pub" — port-preserving for "cone" (c*), a random port per destination for
 * "symmetric" (s*, `masquerade random`) — and drops anything new that arrives on "pub"
 * (unsolicited inbound, before conntrack confirms an entry for it, as a real NAT does).
 *
 * Members know both lighthouses (Lighthouse = true, with Endpoint) and each other without an
 * Endpoint; the lighthouses (IsLighthouse = true) know both members. The stranger knows L1 (as a
 * lighthouse) and A, but is in nobody's config except that A lists it — not in the lighthouses'.
 */
import { Lab, wgGenKeypair, type NodeSpec } from './lib.js';

export interface NatRouter {
  name: string;
  kind: 'cone' | 'symmetric';
  ns: string;
  /** Its address on the public network, and the /24 behind it is 10.lan.0.0. */
  public: string;
  lan: number;
}

export interface Member {
  spec: NodeSpec;
  /** Host part of its LAN address behind whichever router (10.lan.0.host). */
  host: number;
  /** Name of the NAT router it is behind now. */
  at: string;
}

export const NAT_TUNNEL = { l1: '10.99.0.1', l2: '10.99.0.2', a: '10.99.0.11', b: '10.99.0.12', s: '10.99.0.66' };

const ROUTERS: Array<Omit<NatRouter, 'ns' | 'public'>> = [
  { name: 'c1', kind: 'cone', lan: 1 },
  { name: 'c2', kind: 'cone', lan: 2 },
  { name: 'c3', kind: 'cone', lan: 3 },
  { name: 'c4', kind: 'cone', lan: 4 },
  { name: 's1', kind: 'symmetric', lan: 5 },
  { name: 's2', kind: 'symmetric', lan: 6 },
  { name: 's3', kind: 'symmetric', lan: 7 },
  { name: 's4', kind: 'symmetric', lan: 8 },
];

export function natTopology(lab: Lab, opts: { aAt?: string; bAt?: string } = {}) {
  const plug = lab.bridge('pub');
  const routers = new Map<string, NatRouter>();
  for (const r of ROUTERS) {
    const { ns } = lab.router(r.name);
    const pub = `203.0.113.${10 + r.lan}`;
    plug(ns, 'pub', [`${pub}/24`]);
    const masq = r.kind === 'cone' ? 'masquerade' : 'masquerade random';
    lab.exec(
      ns,
      ['nft', '-f', '-'],
      `table ip kmnat {
  chain post { type nat hook postrouting priority 100; oifname "pub" ${masq}; };
  chain in { type filter hook input priority 0; iifname "pub" ct state new drop; };
  chain fwd4 { type filter hook forward priority 0; iifname "pub" ct state new drop; };
}`,
    );
    routers.set(r.name, { ...r, ns, public: pub });
  }

  const kl1 = wgGenKeypair();
  const kl2 = wgGenKeypair();
  const ka = wgGenKeypair();
  const kb = wgGenKeypair();
  const ks = wgGenKeypair();
  const nsL1 = lab.netns('l1');
  const nsL2 = lab.netns('l2');
  const nsS = lab.netns('s');
  plug(nsL1, 'pub', ['203.0.113.1/24']);
  plug(nsL2, 'pub', ['203.0.113.2/24']);
  plug(nsS, 'pub', ['203.0.113.66/24']);

  const lighthousePeers = (keepalive?: number) => [
    { publicKey: kl1.publicKey, allowedIps: [`${NAT_TUNNEL.l1}/32`], endpoint: '203.0.113.1:51820', lighthouse: true, persistentKeepalive: keepalive },
    { publicKey: kl2.publicKey, allowedIps: [`${NAT_TUNNEL.l2}/32`], endpoint: '203.0.113.2:51820', lighthouse: true, persistentKeepalive: keepalive },
  ];
  const l1: NodeSpec = {
    ns: nsL1,
    ifname: lab.name('l1'),
    privateKey: kl1.privateKey,
    listenPort: 51820,
    addresses: [`${NAT_TUNNEL.l1}/24`],
    extra: ['IsLighthouse = true'],
    peers: [
      { publicKey: ka.publicKey, allowedIps: [`${NAT_TUNNEL.a}/32`] },
      { publicKey: kb.publicKey, allowedIps: [`${NAT_TUNNEL.b}/32`] },
    ],
  };
  const l2: NodeSpec = { ...l1, ns: nsL2, ifname: lab.name('l2'), privateKey: kl2.privateKey, addresses: [`${NAT_TUNNEL.l2}/24`] };

  const member = (role: 'a' | 'b', key: { privateKey: string }, host: number, links: string[], at: string, tunnel: string, other: NodeSpec['peers']): Member => {
    const ns = lab.netns(role);
    for (const name of links) {
      const r = routers.get(name)!;
      lab.link(ns, name, [], r.ns, 'lan', [`10.${r.lan}.0.1/24`]);
    }
    const r = routers.get(at)!;
    lab.exec(ns, ['ip', 'addr', 'add', `10.${r.lan}.0.${host}/24`, 'dev', at]);
    lab.exec(ns, ['ip', 'route', 'add', 'default', 'via', `10.${r.lan}.0.1`]);
    return {
      host,
      at,
      spec: { ns, ifname: lab.name(role), privateKey: key.privateKey, listenPort: 51820, addresses: [`${tunnel}/24`], peers: [...lighthousePeers(), ...other] },
    };
  };
  const a = member('a', ka, 2, ['c1', 'c3', 's1', 's3'], opts.aAt ?? 'c1', NAT_TUNNEL.a, [
    { publicKey: kb.publicKey, allowedIps: [`${NAT_TUNNEL.b}/32`] },
    { publicKey: ks.publicKey, allowedIps: [`${NAT_TUNNEL.s}/32`] },
  ]);
  const b = member('b', kb, 3, ['c2', 'c4', 's2', 's4'], opts.bAt ?? 'c2', NAT_TUNNEL.b, [{ publicKey: ka.publicKey, allowedIps: [`${NAT_TUNNEL.a}/32`] }]);
  const stranger: NodeSpec = {
    ns: nsS,
    ifname: lab.name('s'),
    privateKey: ks.privateKey,
    listenPort: 51820,
    addresses: [`${NAT_TUNNEL.s}/24`],
    peers: [lighthousePeers()[0], { publicKey: ka.publicKey, allowedIps: [`${NAT_TUNNEL.a}/32`] }],
  };

  /** The shell commands that move a member behind another of its NAT routers. */
  const moveScript = (m: Member, to: string): string => {
    const r = routers.get(to)!;
    return `ip addr flush dev ${m.at} && ip addr add 10.${r.lan}.0.${m.host}/24 dev ${to} && ip route replace default via 10.${r.lan}.0.1`;
  };

  /** Move members (all at the same moment) behind other NAT routers; resolves when every move is done. */
  const move = async (moves: Array<[Member, string]>): Promise<void> => {
    const procs = moves.map(([m, to]) => lab.spawn(m.spec.ns, ['sh', '-c', moveScript(m, to)], `move ${m.spec.ifname} to ${to}`));
    const codes = await Promise.all(procs.map((p) => p.exited));
    if (codes.some((c) => c !== 0)) throw new Error(`move failed:\n${procs.map((p) => p.output).join('\n')}`);
    for (const [m, to] of moves) m.at = to;
  };

  return { routers, l1, l2, a, b, stranger, keys: { l1: kl1.publicKey, l2: kl2.publicKey, a: ka.publicKey, b: kb.publicKey }, move };
}
