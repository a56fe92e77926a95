/**
 * Port mapping with UPnP IGD through a real NAT router running the real miniupnpd (Debian's
 * miniupnpd-nftables; netns/miniupnpd.ts tells how it is made to serve on the lab's reserved
 * addresses), in network namespaces (topology: netns/portmap.ts):
 *
 *     peer O (outside)                  router                              member M (lan)
 *   203.0.113.66 ─── WAN ─── 203.0.113.1 │ 10.77.0.1 ─── LAN ─── 10.77.0.2, keymesh on udp 51820
 *   keymesh, Endpoint = 203.0.113.1:51820  masquerade; drop new from WAN unless DNAT'd
 *                                          miniupnpd: UPnP only (no PCP/NAT-PMP: port 5351 closed)
 *
 * M knows O without an endpoint, so M never sends first: O's handshake gets in only through the
 * mapping M asked for. Then `keymesh down` (SIGTERM) deletes the mapping: the DNAT rule is gone.
 * A second case gives miniupnpd NAT-PMP/PCP as well: PCP is preferred and UPnP leaves nothing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { canRunNetns, KEYMESH_BIN, Lab, ping, sh, startKeymesh, waitFor, wgGenKeypair, type NodeSpec, type PeerSpec, type Proc } from '../../netns/lib.js';
import { PORTMAP_ADDR, portmapTopology } from '../../netns/portmap.js';
import { miniupnpdMissing, startMiniupnpd, type Miniupnpd } from '../../netns/miniupnpd.js';

const skip = canRunNetns() ?? miniupnpdMissing();
const PORT = 51820;
const TUNNEL = { o: '10.98.0.1', m: '10.98.0.2' };

interface MappingStatus {
  protocol: string;
  gateway: string;
  external: string;
  internalPort: number;
  secondsLeft: number | null;
}

function status(ifname: string): { portMapping: MappingStatus | null; peers: Array<{ publicKey: string; endpoint?: string | null }> } {
  return JSON.parse(sh(process.execPath, [KEYMESH_BIN, 'show', ifname, '--json']));
}

describe.skipIf(skip)('port mapping with UPnP IGD (real miniupnpd) through a NAT router', () => {
  let lab: Lab;
  let t: ReturnType<typeof portmapTopology>;
  const keys = { o: wgGenKeypair(), m: wgGenKeypair() };
  let m: NodeSpec;
  let o: NodeSpec;

  beforeAll(() => {
    lab = new Lab();
    t = portmapTopology(lab);
    const node = (ns: string, role: string, own: { privateKey: string }, address: string, peer: PeerSpec): NodeSpec => ({
      ns,
      ifname: lab.name(role),
      privateKey: own.privateKey,
      listenPort: PORT,
      addresses: [`${address}/24`],
      peers: [peer],
    });
    // M knows O without an endpoint; O knows M at the router's WAN address
    m = node(t.lan, 'km', keys.m, TUNNEL.m, { publicKey: keys.o.publicKey, allowedIps: [`${TUNNEL.o}/32`] });
    o = node(t.outside, 'ko', keys.o, TUNNEL.o, { publicKey: keys.m.publicKey, allowedIps: [`${TUNNEL.m}/32`], endpoint: `${PORTMAP_ADDR.wan}:${PORT}` });
  });

  afterAll(async () => {
    await lab?.cleanup();
  });

  /** Each case's processes, stopped after it, failed or not. */
  const running: Array<Proc | Miniupnpd> = [];
  afterEach(async () => {
    for (const p of running.splice(0).reverse()) await p.stop();
  });

  const igd = async (natPmp = false) => {
    const d = await startMiniupnpd(lab, {
      router: t.router,
      wanIf: t.wanIf,
      lanIf: t.lanIf,
      lanSubnet: '10.77.0.0/24',
      outside: t.outside,
      outsideAddr: PORTMAP_ADDR.outside,
      natPmp,
      label: natPmp ? 'miniupnpd all' : 'miniupnpd upnp',
    });
    running.push(d);
    return d;
  };
  const keymesh = async (n: NodeSpec) => {
    const p = await startKeymesh(lab, n);
    running.push(p);
    return p;
  };
  const dnatRules = (d: Miniupnpd) => d.table().split('\n').filter((l) => l.includes('dnat'));

  it('a router that speaks only UPnP: the member maps its port, the outside peer reaches it through the mapping, down deletes it', async () => {
    const d = await igd();
    const upAt = Date.now();
    const km = await keymesh(m);
    await waitFor('a UPnP mapping in keymesh show', () => status(m.ifname).portMapping !== null, 8000, 50).catch((e) => {
      throw new Error(`${e.message}\n${lab.logs()}`);
    });
    const mappedAfter = Date.now() - upAt;
    const mapping = status(m.ifname).portMapping!;
    expect(mapping).toMatchObject({ protocol: 'upnp', gateway: PORTMAP_ADDR.gateway, external: `${PORTMAP_ADDR.wan}:${PORT}`, internalPort: PORT });
    expect(mapping.secondsLeft).toBeGreaterThan(3500);
    expect(mapping.secondsLeft).toBeLessThanOrEqual(3600);
    expect(dnatRules(d)).toEqual([expect.stringContaining(`dport ${PORT} dnat ip to ${PORTMAP_ADDR.host}:${PORT}`)]);
    // PCP and NAT-PMP got port unreachable; since UPnP mapped, no failure line was logged
    const line = /port mapping: upnp: udp 51820 mapped to 203\.0\.113\.1:51820 for 3600 s by 10\.77\.0\.1 \(UPnP WANIPConnection:2\)/;
    await waitFor('the mapping in the log', () => line.test(km.output), 2000).catch(() => {
      throw new Error(`no mapping line in the log:\n${km.output}`);
    });
    expect(km.output).not.toMatch(/port mapping: none:/);
    const at = (re: RegExp) => Date.parse(km.output.split('\n').find((l) => re.test(l))!.slice(0, 24));
    const fromUp = at(line) - at(/: up, listening/);

    // The outside peer reaches M at the router's WAN address: only the mapping lets that in.
    await keymesh(o);
    expect(ping(lab, t.outside, TUNNEL.m, 3), lab.logs()).toBe(true);
    const seen = status(m.ifname).peers.find((p) => p.publicKey === keys.o.publicKey)!;
    expect(seen.endpoint).toMatch(new RegExp(`^${PORTMAP_ADDR.outside}:${PORT}\\b`)); // O came in through the mapping

    // keymesh down (SIGTERM): the mapping is deleted on the router
    const downAt = Date.now();
    expect(await km.stop('SIGTERM', 5000)).toBe(0);
    const downTook = Date.now() - downAt;
    expect(dnatRules(d)).toEqual([]);
    expect(d.proc.output).toMatch(/DeletePortMapping|removing redirect rule|delete_redirect_and_filter_rules/i);
    console.log(`portmap netns (UPnP, miniupnpd): mapped ${fromUp} ms after the node was up (${mappedAfter} ms after starting it); down (with the delete) took ${downTook} ms`);
  }, 40_000);

  it('a router that speaks PCP, NAT-PMP and UPnP: PCP is used, and UPnP leaves no mapping behind', async () => {
    const d = await igd(true);
    const km = await keymesh(m);
    await waitFor('a mapping in keymesh show', () => status(m.ifname).portMapping !== null, 8000, 50).catch((e) => {
      throw new Error(`${e.message}\n${lab.logs()}`);
    });
    expect(status(m.ifname).portMapping).toMatchObject({ protocol: 'pcp', external: `${PORTMAP_ADDR.wan}:${PORT}` });
    // past the UPnP head start: still the one PCP mapping, no UPnP one beside it
    await new Promise((r) => setTimeout(r, 2500));
    expect(status(m.ifname).portMapping?.protocol).toBe('pcp');
    expect(dnatRules(d)).toHaveLength(1);
    expect(km.output).not.toMatch(/port mapping: upnp:/);
    expect(await km.stop('SIGTERM', 5000)).toBe(0);
    expect(dnatRules(d)).toEqual([]);
  }, 40_000);
});
