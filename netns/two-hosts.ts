/**
 * Two hosts joined by one veth, dual-stack underlay.
 *
 *     ns km-<id>-a                          ns km-<id>-b
 *   ┌──────────────────┐   veth pair    ┌──────────────────┐
 *   │ eth0 192.0.2.1/24├────────────────┤ eth0 192.0.2.2/24│
 *   │      fd00:2::1/64│                │      fd00:2::2/64│
 *   │ tunnel 10.0.0.1  │                │ tunnel 10.0.0.2  │
 *   │        fd10::1   │                │        fd10::2   │
 *   └──────────────────┘                └──────────────────┘
 */
import { Lab, wgGenKeypair, type NodeSpec } from './lib.js';

export interface TwoHosts {
  a: NodeSpec;
  b: NodeSpec;
}

export const UNDERLAY = { a: '192.0.2.1', b: '192.0.2.2', a6: 'fd00:2::1', b6: 'fd00:2::2' };
export const TUNNEL = { a: '10.0.0.1', b: '10.0.0.2', a6: 'fd10::1', b6: 'fd10::2' };

/**
 * Build the topology and the two nodes' specs. `aKnowsB`/`bKnowsA` choose who has an Endpoint
 * (the one that has it initiates).
 */
export function twoHosts(lab: Lab, opts: { aKnowsB?: boolean; bKnowsA?: boolean; port?: number } = {}): TwoHosts {
  const nsA = lab.netns('a');
  const nsB = lab.netns('b');
  lab.link(nsA, 'eth0', [`${UNDERLAY.a}/24`, `${UNDERLAY.a6}/64`], nsB, 'eth0', [`${UNDERLAY.b}/24`, `${UNDERLAY.b6}/64`]);
  const ka = wgGenKeypair();
  const kb = wgGenKeypair();
  const port = opts.port ?? 51820;
  const a: NodeSpec = {
    ns: nsA,
    ifname: lab.name('a'),
    privateKey: ka.privateKey,
    listenPort: port,
    addresses: [`${TUNNEL.a}/24`, `${TUNNEL.a6}/64`],
    peers: [
      {
        publicKey: kb.publicKey,
        allowedIps: [`${TUNNEL.b}/32`, `${TUNNEL.b6}/128`],
        endpoint: opts.aKnowsB === false ? undefined : `${UNDERLAY.b}:${port}`,
      },
    ],
  };
  const b: NodeSpec = {
    ns: nsB,
    ifname: lab.name('b'),
    privateKey: kb.privateKey,
    listenPort: port,
    addresses: [`${TUNNEL.b}/24`, `${TUNNEL.b6}/64`],
    peers: [
      {
        publicKey: ka.publicKey,
        allowedIps: [`${TUNNEL.a}/32`, `${TUNNEL.a6}/128`],
        endpoint: opts.bKnowsA === true ? `${UNDERLAY.a}:${port}` : undefined,
      },
    ],
  };
  return { a, b };
}
