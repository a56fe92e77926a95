/**
 * Bulk TCP through the tunnel with the segmentation offloads on and off (netns/two-hosts.ts):
 *
 *   ns A: tcp client ─► TUN (TSO super-packets, split in the addon) ─► seal ─► UDP_SEGMENT ─┐
 *                                                                                          veth
 *   ns B: tcp server ◄─ TUN (GRO super-packets written) ◄─ open ◄─ UDP_GRO (coalesced) ◄────┘
 *
 * The bytes must arrive identical (sha256) in every combination: keymesh ↔ keymesh with offloads,
 * keymesh ↔ keymesh with KEYMESH_OFFLOAD=0, and keymesh (offloads on) ↔ wireguard-go in both
 * directions. `keymesh show --json` must say which offloads are on, and the offload counters must
 * show that they were really used (so the test cannot pass on the plain path by accident).
 */
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunNetns, KEYMESH_BIN, Lab, ping, startKeymesh, startWireguardGo, tcpTransfer, type NodeSpec } from '../../netns/lib.js';
import { TUNNEL, twoHosts } from '../../netns/two-hosts.js';

const skip = canRunNetns() ?? (spawnSync('which', ['wireguard-go']).status === 0 ? null : 'wireguard-go is not installed');
if (skip) console.warn(`offload integration tests skipped: ${skip}`);

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
});

interface Status {
  aead: string;
  offload: {
    tun: { vnetHdr: boolean; tso4: boolean; tso6: boolean; csum: boolean } | null;
    udp: { gso: boolean; gro: boolean };
    counters: Record<string, number> | null;
  };
}
const show = (l: Lab, n: NodeSpec): Status => JSON.parse(l.exec(n.ns, [process.execPath, KEYMESH_BIN, 'show', n.ifname, '--json']));

async function transfer(l: Lab, from: NodeSpec, to: NodeSpec, addr: string, bytes: number, port = 5201): Promise<void> {
  const t = await tcpTransfer(l, from.ns, to.ns, addr, bytes, port);
  expect(t.sent.bytes, l.logs()).toBe(bytes);
  expect(t.received.bytes, l.logs()).toBe(bytes);
  expect(t.received.sha256).toBe(t.sent.sha256);
}

describe.skipIf(skip)('offloads: bulk TCP arrives byte-identical', () => {
  it('keymesh ↔ keymesh with offloads on (IPv4 and IPv6 inside): TSO split, GRO, UDP GSO/GRO all used', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    await startKeymesh(l, b);
    await startKeymesh(l, a);
    // Before any traffic: the start-up warm-up's own packets (through the same addon) are not counted.
    const c0 = show(l, a).offload.counters!;
    expect(c0.udpGsoSends + c0.udpGroReceives + c0.tunSegmentsRead, JSON.stringify(c0)).toBe(0);
    expect(ping(l, a.ns, TUNNEL.b), l.logs()).toBe(true);
    const sa = show(l, a);
    expect(sa.offload.tun).toMatchObject({ vnetHdr: true, csum: true, tso4: true, tso6: true });
    expect(sa.offload.udp).toEqual({ gso: true, gro: true });
    expect(l.exec(a.ns, [process.execPath, KEYMESH_BIN, 'show', a.ifname])).toMatch(/^ {2}offloads: tun csum, tun tso4, tun tso6.*, udp gso, udp gro$/m);
    await transfer(l, a, b, TUNNEL.b, 32 << 20);
    await transfer(l, a, b, TUNNEL.b6, 8 << 20, 5202);
    await transfer(l, b, a, TUNNEL.a, 8 << 20, 5203);
    const ca = show(l, a).offload.counters!;
    const cb = show(l, b).offload.counters!;
    // A read TSO super-packets and sent UDP GSO; B received coalesced UDP and wrote GRO super-packets.
    expect(ca.tunSuperRead, JSON.stringify(ca)).toBeGreaterThan(0);
    expect(ca.udpGsoSends, JSON.stringify(ca)).toBeGreaterThan(0);
    expect(cb.udpGroReceives, JSON.stringify(cb)).toBeGreaterThan(0);
    expect(cb.tunSuperWritten, JSON.stringify(cb)).toBeGreaterThan(0);
    expect(ca.tunBad + cb.tunBad).toBe(0);
  }, 120_000);

  it('keymesh ↔ keymesh with KEYMESH_OFFLOAD=0: plain TUN and UDP, same bytes', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    a.env = { KEYMESH_OFFLOAD: '0' };
    b.env = { KEYMESH_OFFLOAD: '0' };
    await startKeymesh(l, b);
    await startKeymesh(l, a);
    // Before any traffic: the start-up warm-up's own packets (through the same addon) are not counted.
    const c0 = show(l, a).offload.counters!;
    expect(c0.udpGsoSends + c0.udpGroReceives + c0.tunSegmentsRead, JSON.stringify(c0)).toBe(0);
    expect(ping(l, a.ns, TUNNEL.b), l.logs()).toBe(true);
    const sa = show(l, a);
    expect(sa.offload.tun).toBeNull();
    expect(sa.offload.udp).toEqual({ gso: false, gro: false });
    expect(l.exec(a.ns, [process.execPath, KEYMESH_BIN, 'show', a.ifname])).toMatch(/^ {2}offloads: off$/m);
    await transfer(l, a, b, TUNNEL.b, 16 << 20);
    await transfer(l, a, b, TUNNEL.b6, 4 << 20, 5202);
    const c = show(l, a).offload.counters!;
    expect(c.tunSuperRead + c.udpGsoSends + c.udpGroReceives + c.tunSuperWritten).toBe(0);
  }, 120_000);

  it('mixed: offloads on with the pure-TS crypto (KEYMESH_CRYPTO=noble) ↔ offloads off with native crypto', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    a.env = { KEYMESH_CRYPTO: 'noble' };
    b.env = { KEYMESH_OFFLOAD: '0' };
    await startKeymesh(l, b);
    await startKeymesh(l, a);
    expect(ping(l, a.ns, TUNNEL.b), l.logs()).toBe(true);
    expect(show(l, a).aead).toBe('noble');
    expect(show(l, b).aead).toMatch(/native/);
    await transfer(l, a, b, TUNNEL.b, 6 << 20);
    await transfer(l, b, a, TUNNEL.a6, 6 << 20, 5202);
    const c = show(l, a).offload.counters!;
    expect(c.tunSuperRead, JSON.stringify(c)).toBeGreaterThan(0);
    expect(c.tunSuperWritten, JSON.stringify(c)).toBeGreaterThan(0);
  }, 120_000);

  it('keymesh (offloads on) ↔ wireguard-go, both directions', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    await startWireguardGo(l, b);
    await startKeymesh(l, a);
    expect(ping(l, a.ns, TUNNEL.b), l.logs()).toBe(true);
    await transfer(l, a, b, TUNNEL.b, 16 << 20);
    await transfer(l, b, a, TUNNEL.a, 16 << 20, 5202);
    await transfer(l, a, b, TUNNEL.b6, 4 << 20, 5203);
    const c = show(l, a).offload.counters!;
    expect(c.tunSuperRead, JSON.stringify(c)).toBeGreaterThan(0);
    expect(c.tunSuperWritten, JSON.stringify(c)).toBeGreaterThan(0);
  }, 120_000);
});
