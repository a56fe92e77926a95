/**
 * `sudo npm run bench:roam`: outage when a host changes address, in the same run for three pairs
 * of client ↔ server: keymesh ↔ keymesh, wireguard-go ↔ wireguard-go, and a keymesh client against
 * a stock wireguard-go server (which speaks none of keymesh's extension messages: all keymesh can
 * use there is WireGuard's own handshake). WG_GO_MODERN=/path/to/wireguard-go adds a column with
 * that build as the stock server. Topology netns/two-hosts.ts; an echo probe every 10 ms from A
 * (the client) through the tunnel to B (the server) measures the longest silence around the move.
 *   (a) the client (A) moves to a new address
 *   (b) the server (B) moves while A keeps the old address in its config
 *   (c) NAT rebinding: A behind a masquerading router whose conntrack table is flushed
 *   (d) two uplinks (netns/two-uplinks.ts): the router of the preferred one starts dropping
 *       everything (nftables drop, links stay up); keymesh has a warm spare via the second uplink,
 *       wireguard-go has one endpoint and follows the routing table into the dead uplink; against
 *       a stock server keymesh must find the second uplink by sending handshakes from it
 *   (e) the IPv4 underlay silently drops everything while IPv6 keeps working; keymesh ↔ keymesh
 *       learn each other's IPv6 address over the extension channel; against a stock server the
 *       client's Endpoint is a host name with both an A and an AAAA record (the only way a client
 *       can know a stock server's second address)
 * A silence that lasts to the end of the observation window is printed as "> window".
 * ROAM_SCENARIOS=ad runs only the scenarios listed; ROAM_PAIRS=km,wg,stock,modern only the columns
 * listed. Writes bench-results/roam.json.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { KEYMESH_BIN, Lab, sh, sleep, startKeymesh, startProbe, startWireguardGo, waitFor, type NodeSpec } from '../netns/lib.js';
import { TUNNEL, twoHosts, UNDERLAY } from '../netns/two-hosts.js';
import { routed } from '../netns/routed.js';
import { twoUplinks } from '../netns/two-uplinks.js';

const WINDOW = Number(process.env.ROAM_WINDOW_SECONDS ?? 20) * 1000;
const ONLY = process.env.ROAM_SCENARIOS ?? null;

type Which = 'a' | 'b' | 'c' | 'd' | 'e';
/** A node implementation: keymesh, or a wireguard-go binary (name on the PATH or path). */
type Impl = 'keymesh' | { wireguardGo: string };

const WG_GO: Impl = { wireguardGo: 'wireguard-go' };

function start(impl: Impl, lab: Lab, n: NodeSpec) {
  return impl === 'keymesh' ? startKeymesh(lab, n) : startWireguardGo(lab, n, impl.wireguardGo);
}

async function scenario(client: Impl, server: Impl, which: Which): Promise<number> {
  const lab = new Lab();
  let hostsDir: string | null = null;
  try {
    // a/b/e: two hosts on one link; c: A behind a NAT router; d: a client with two uplinks
    let a: NodeSpec, b: NodeSpec, target: string;
    let r = '';
    if (which === 'd') {
      const t = twoUplinks(lab);
      [a, b, r, target] = [t.c, t.s, t.r1, '10.0.0.2'];
    } else if (which === 'c') {
      ({ a, b, r } = routed(lab));
      target = '10.0.0.2';
      lab.exec(r, ['nft', '-f', '-'], 'table ip kmnat { chain kmpost { type nat hook postrouting priority 100; oifname "rb" masquerade random; }; chain kmfw { type filter hook forward priority 0; iifname "rb" oifname "ra" ct state new drop; }; }');
    } else {
      ({ a, b } = twoHosts(lab));
      target = TUNNEL.b;
    }
    if (which === 'e' && client === 'keymesh' && server !== 'keymesh') {
      // `ip netns exec` shows /etc/netns/NS/hosts as /etc/hosts inside the namespace
      hostsDir = `/etc/netns/${a.ns}`;
      mkdirSync(hostsDir, { recursive: true });
      writeFileSync(`${hostsDir}/hosts`, `127.0.0.1 localhost\n${UNDERLAY.b} kmserver.test\n${UNDERLAY.b6} kmserver.test\n`);
      a.peers[0].endpoint = 'kmserver.test:51820';
    }
    await start(server, lab, b);
    await start(client, lab, a);
    lab.exec(a.ns, ['ping', '-c', '2', '-i', '0.2', target]);
    await sleep(1000); // let keymesh peers exchange and validate their addresses
    if (which === 'd' && client === 'keymesh' && server === 'keymesh') {
      // the path via the second uplink must be a warm spare before the first one dies
      await waitFor('a spare via the second uplink', () => /validated, from 10\.2\.0\.2%/.test(sh(process.execPath, [KEYMESH_BIN, 'show', a.ifname])), 8000).catch((e: Error) =>
        console.error(`(d) keymesh: ${e.message}; measuring anyway`),
      );
    }
    const probe = await startProbe(lab, a.ns, b.ns, target);
    await sleep(1000);
    if (which === 'a' || which === 'b') {
      const [ns, from, to] = which === 'a' ? [a.ns, UNDERLAY.a, '192.0.2.11'] : [b.ns, UNDERLAY.b, '192.0.2.12'];
      lab.exec(ns, ['ip', 'addr', 'del', `${from}/24`, 'dev', 'eth0']);
      lab.exec(ns, ['ip', 'addr', 'add', `${to}/24`, 'dev', 'eth0']);
    } else if (which === 'c') {
      lab.exec(r, ['conntrack', '-F']);
    } else if (which === 'd') {
      // R1 silently drops everything; its links stay up and A's routes still prefer it
      lab.exec(r, ['nft', '-f', '-'], 'table inet kmr1 { chain kmfwd { type filter hook forward priority 0; drop; }; }');
    } else {
      lab.exec(b.ns, ['nft', '-f', '-'], 'table ip kmdrop { chain kmin { type filter hook input priority 0; udp dport 51820 drop; }; chain kmout { type filter hook output priority 0; udp sport 51820 drop; }; }');
    }
    // observe for the whole window: a path that never recovers shows as a silence up to its end
    await sleep(WINDOW);
    const res = await probe.stop();
    if (res.received === 0 || res.gapAtMs + res.maxGapMs >= WINDOW + 900) return Infinity;
    return res.maxGapMs;
  } finally {
    await lab.cleanup();
    if (hostsDir) rmSync(hostsDir, { recursive: true, force: true });
  }
}

if (process.getuid?.() !== 0) {
  console.error('bench:roam: needs root (network namespaces): sudo npm run bench:roam');
  process.exit(1);
}
const fmt = (ms: number) => (ms === Infinity || ms >= WINDOW ? `> ${WINDOW}` : String(Math.round(ms)));

/** A column of the table: who is the client, who the server. */
interface Pair {
  key: 'km' | 'wg' | 'stock' | 'modern';
  /** Its name in bench-results/roam.json. */
  json: string;
  header: string;
  client: Impl;
  server: Impl;
}
const modern = process.env.WG_GO_MODERN;
const modernVersion = modern ? (/v[\d.]+/.exec(sh(modern, ['--version']))?.[0] ?? modern) : '';
const PAIRS: Pair[] = [
  { key: 'km', json: 'keymesh', header: 'keymesh ↔ keymesh', client: 'keymesh', server: 'keymesh' },
  { key: 'wg', json: 'wireguardGo', header: 'wireguard-go ↔ wireguard-go', client: WG_GO, server: WG_GO },
  { key: 'stock', json: 'keymeshWireguardGo', header: 'keymesh ↔ wireguard-go', client: 'keymesh', server: WG_GO },
  ...(modern ? [{ key: 'modern', json: 'keymeshWireguardGoModern', header: `keymesh ↔ wireguard-go ${modernVersion}`, client: 'keymesh', server: { wireguardGo: modern } } as Pair] : []),
];
const pairs = process.env.ROAM_PAIRS ? PAIRS.filter((p) => process.env.ROAM_PAIRS!.split(',').includes(p.key)) : PAIRS;

console.log(`longest silence of a 10 ms echo probe through the tunnel around an address change (ms; window ${WINDOW} ms)`);
console.log(`columns are client ↔ server; the wireguard-go server is Debian's (${sh('wireguard-go', ['--version']).split('\n')[0].trim()})${modern ? `, and ${modern}` : ''}\n`);
const LABEL = 46;
console.log(['scenario'.padEnd(LABEL), ...pairs.map((p) => p.header)].join('  '));
const results: Record<string, Record<string, number>> = {};
for (const [which, label] of [
  ['a', '(a) client moves to a new address'],
  ['b', '(b) server moves, client keeps old address'],
  ['c', '(c) NAT rebinding (conntrack flushed)'],
  ['d', '(d) two uplinks, the preferred one drops all'],
  ['e', '(e) IPv4 underlay lost, IPv6 remains'],
] as const) {
  if (ONLY && !ONLY.includes(which)) continue;
  results[label] = {};
  const cells: string[] = [];
  for (const p of pairs) {
    const ms = await scenario(p.client, p.server, which);
    results[label][p.json] = ms;
    cells.push(fmt(ms).padStart(p.header.length));
  }
  console.log([label.padEnd(LABEL), ...cells].join('  '));
}
mkdirSync('bench-results', { recursive: true });
writeFileSync(
  'bench-results/roam.json',
  JSON.stringify({ date: new Date().toISOString(), windowMs: WINDOW, columns: Object.fromEntries(pairs.map((p) => [p.json, p.header])), results }, (_k, v) => (v === Infinity ? null : v), 2),
);
console.log('\nwritten to bench-results/roam.json');
