/**
 * `sudo npm run bench:handshakes`: what keymesh's fast failover against a stock WireGuard server
 * (stock-paths.ts) costs when nothing is wrong — handshake initiations per hour on a healthy path,
 * idle and under bulk traffic, beside a wireguard-go client measured in the same run.
 *
 * Topology netns/two-uplinks.ts (a client with two uplinks, so keymesh has a spare path it could
 * probe; the server is Debian's wireguard-go). The client has PersistentKeepalive = 25, as a
 * laptop behind a NAT does. Two spells per client:
 *   idle  nothing but keepalives (the server answers none of them: a conversation that always
 *         ends with the client's packet, the case a careless silence check gets wrong);
 *   bulk  one iperf3 TCP stream client → server for the whole spell.
 * Initiations are counted at the server by an nftables counter on UDP datagrams of an initiation's
 * size (148 bytes of payload), so every implementation is counted the same way; keymesh's own
 * count of path-probe handshakes (`stockPathHandshakes`) is printed beside. WireGuard itself
 * rekeys every REKEY_AFTER_TIME (120 s) while packets are sent: about 30 an hour.
 * HS_SECONDS (default 150) sets each spell's length; WG_GO_MODERN=/path adds that build as the server;
 * HS_PAIRS=km,wg,modern runs only those rows.
 */
import { KEYMESH_BIN, Lab, sh, sleep, startKeymesh, startWireguardGo, type NodeSpec } from '../netns/lib.js';
import { twoUplinks } from '../netns/two-uplinks.js';

const SECONDS = Number(process.env.HS_SECONDS ?? 150);

type Impl = 'keymesh' | { wireguardGo: string };
const start = (impl: Impl, lab: Lab, n: NodeSpec) => (impl === 'keymesh' ? startKeymesh(lab, n) : startWireguardGo(lab, n, impl.wireguardGo));

interface Spell {
  initiations: number;
  probes: number | null;
}

async function spell(client: Impl, server: Impl, bulk: boolean): Promise<Spell> {
  const lab = new Lab();
  try {
    const { c, s } = twoUplinks(lab);
    c.peers[0].persistentKeepalive = 25;
    await start(server, lab, s);
    // initiations arriving at the server: UDP length = 8 + 148
    lab.exec(s.ns, ['nft', '-f', '-'], 'table inet kmhs { chain kmin { type filter hook input priority 0; udp dport 51820 udp length 156 counter; }; }');
    await start(client, lab, c);
    lab.exec(c.ns, ['ping', '-c', '2', '-i', '0.2', '10.0.0.2']);
    const counter = () => Number(/packets (\d+)/.exec(lab.exec(s.ns, ['nft', 'list', 'table', 'inet', 'kmhs']))?.[1] ?? NaN);
    const probes = () => (client === 'keymesh' ? Number(JSON.parse(sh(process.execPath, [KEYMESH_BIN, 'show', c.ifname, '--json'])).stats.stockPathHandshakes) : 0);
    const before = counter();
    const probesBefore = probes();
    if (bulk) {
      lab.spawn(s.ns, ['iperf3', '-s', '-1', '-B', '10.0.0.2'], 'iperf3 server');
      await sleep(300);
      lab.exec(c.ns, ['iperf3', '-c', '10.0.0.2', '-t', String(SECONDS)]);
    } else {
      await sleep(SECONDS * 1000);
    }
    return { initiations: counter() - before, probes: client === 'keymesh' ? probes() - probesBefore : null };
  } finally {
    await lab.cleanup();
  }
}

if (process.getuid?.() !== 0) {
  console.error('bench:handshakes: needs root (network namespaces): sudo npm run bench:handshakes');
  process.exit(1);
}

const WG_GO: Impl = { wireguardGo: 'wireguard-go' };
const modern = process.env.WG_GO_MODERN;
const ALL: Array<{ key: string; header: string; client: Impl; server: Impl }> = [
  { key: 'km', header: 'keymesh ↔ wireguard-go', client: 'keymesh', server: WG_GO },
  { key: 'wg', header: 'wireguard-go ↔ wireguard-go', client: WG_GO, server: WG_GO },
  ...(modern ? [{ key: 'modern', header: `keymesh ↔ wireguard-go ${/v[\d.]+/.exec(sh(modern, ['--version']))?.[0] ?? modern}`, client: 'keymesh' as Impl, server: { wireguardGo: modern } }] : []),
];
/** HS_PAIRS=km,wg,modern: only these columns. */
const pairs = process.env.HS_PAIRS ? ALL.filter((p) => process.env.HS_PAIRS!.split(',').includes(p.key)) : ALL;
const perHour = (n: number) => Math.round((n * 3600) / SECONDS);
console.log(`handshake initiations per hour on a healthy path (client ↔ server; counted at the server over ${SECONDS} s spells, extrapolated)`);
console.log(`the client has two uplinks and PersistentKeepalive = 25; wireguard-go is Debian's (${sh('wireguard-go', ['--version']).split('\n')[0].trim()})\n`);
console.log(['client ↔ server'.padEnd(36), 'idle'.padStart(16), 'bulk TCP'.padStart(16)].join('  '));
const results: Record<string, Record<string, Spell>> = {};
for (const p of pairs) {
  const idle = await spell(p.client, p.server, false);
  const bulk = await spell(p.client, p.server, true);
  results[p.header] = { idle, bulk };
  const cell = (x: Spell) => `${perHour(x.initiations)}${x.probes === null ? '' : ` (${perHour(x.probes)} probes)`}`;
  console.log([p.header.padEnd(36), cell(idle).padStart(16), cell(bulk).padStart(16)].join('  '));
}
console.log('\n(probes: initiations keymesh sent as path probes, stock-paths.ts; included in the count before them)');
