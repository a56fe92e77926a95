/**
 * N hosts on one switch (a bridge in its own namespace), every pair configured as peers.
 *
 *   ns …-h0         ns …-h1         ns …-h2         ns …-h3
 *   198.51.100.1    198.51.100.2    198.51.100.3    198.51.100.4      underlay
 *   10.9.0.1        10.9.0.2        10.9.0.3        10.9.0.4          tunnel
 *        │               │               │               │
 *   ─────┴───────────────┴──── br0 (ns …-sw) ────────────┴─────
 */
import { Lab, wgGenKeypair, type NodeSpec } from './lib.js';

export function mesh(lab: Lab, n: number, port = 51820): NodeSpec[] {
  const plug = lab.bridge('sw');
  const keys = Array.from({ length: n }, () => wgGenKeypair());
  const nodes: NodeSpec[] = [];
  for (let i = 0; i < n; i++) {
    const ns = lab.netns(`h${i}`);
    plug(ns, 'eth0', [`198.51.100.${i + 1}/24`]);
    nodes.push({
      ns,
      ifname: lab.name(`h${i}`),
      privateKey: keys[i].privateKey,
      listenPort: port,
      addresses: [`10.9.0.${i + 1}/24`],
      peers: keys
        .map((k, j) => ({ k, j }))
        .filter(({ j }) => j !== i)
        .map(({ k, j }) => ({ publicKey: k.publicKey, allowedIps: [`10.9.0.${j + 1}/32`], endpoint: `198.51.100.${j + 1}:${port}` })),
    });
  }
  return nodes;
}
