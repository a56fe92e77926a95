/**
 * `MetricsListen` in network namespaces: a Prometheus scrape of a running node, parsed strictly
 * and checked against `keymesh show --json` of the same node read between two scrapes; the
 * endpoint listens on loopback only; a non-loopback MetricsListen without MetricsPublic is refused.
 *
 *     ns km-<id>-a                          ns km-<id>-b
 *   ┌──────────────────────────────┐     ┌──────────────────┐
 *   │ keymesh A                    │     │ keymesh B        │
 *   │ MetricsListen 127.0.0.1:9586 │     │                  │
 *   │ eth0 192.0.2.1/24            ├─────┤ eth0 192.0.2.2/24│
 *   └──────────────────────────────┘     └──────────────────┘
 *
 * Needs root; skipped with the reason otherwise.
 */
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { ShowStatus } from '../../src/cli/show.js';
import { canRunNetns, KEYMESH_BIN, Lab, ping, startKeymesh, wgQuickConfig } from '../../netns/lib.js';
import { TUNNEL, twoHosts, UNDERLAY } from '../../netns/two-hosts.js';
import { parseExposition, sample } from '../unit/support/prom-text.js';

const skip = canRunNetns() ?? (spawnSync('which', ['curl']).status === 0 ? null : 'curl is not installed');
if (skip) console.warn(`integration tests skipped: ${skip}`);

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
});

function withLogs<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    (e as Error).message += `\n${lab?.logs() ?? ''}`;
    throw e;
  }
}

describe.skipIf(skip)('metrics', () => {
  it('a scrape agrees with `keymesh show --json` read between two scrapes; loopback only', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    a.extra = ['MetricsListen = 127.0.0.1:9586'];
    a.upArgs = ['--log-format', 'json'];
    await startKeymesh(l, b);
    const nodeA = await startKeymesh(l, a);
    withLogs(() => expect(ping(l, a.ns, TUNNEL.b), 'ping A→B').toBe(true));
    const pinger = l.spawn(a.ns, ['ping', '-i', '0.05', TUNNEL.b], 'ping');
    const scrape = () => {
      const t = l.exec(a.ns, ['curl', '-sS', '--fail', '--max-time', '5', 'http://127.0.0.1:9586/metrics']);
      return parseExposition(t);
    };
    const s1 = scrape();
    const show = JSON.parse(l.exec(a.ns, [process.execPath, KEYMESH_BIN, 'show', a.ifname, '--json'])) as ShowStatus;
    const s2 = scrape();
    await pinger.stop('SIGINT');

    const bKey = a.peers[0].publicKey;
    const peer = show.peers.find((p) => p.publicKey === bKey)!;
    const lb = { interface: a.ifname, peer: bKey };
    withLogs(() => {
      for (const [metric, shown] of [
        ['keymesh_peer_rx_bytes_total', peer.rxBytes],
        ['keymesh_peer_tx_bytes_total', peer.txBytes],
      ] as const) {
        // the traffic between the two scrapes brackets what show read in between
        expect(sample(s1, metric, lb), metric).toBeLessThanOrEqual(shown);
        expect(shown, metric).toBeLessThanOrEqual(sample(s2, metric, lb));
      }
      expect(sample(s2, 'keymesh_peer_rx_bytes_total', lb)).toBeGreaterThan(sample(s1, 'keymesh_peer_rx_bytes_total', lb));
      expect(sample(s1, 'keymesh_rx_packets_total', { interface: a.ifname })).toBeLessThanOrEqual(show.stats.rxPackets);
      expect(show.stats.rxPackets).toBeLessThanOrEqual(sample(s2, 'keymesh_rx_packets_total', { interface: a.ifname }));
      expect(peer.handshakes).toBeGreaterThanOrEqual(1);
      for (const s of [s1, s2]) {
        expect(sample(s, 'keymesh_peer_handshakes_total', lb)).toBe(peer.handshakes);
        expect(sample(s, 'keymesh_peer_last_handshake_timestamp_seconds', lb)).toBe(peer.latestHandshake);
        expect(sample(s, 'keymesh_peer_path_changes_total', lb)).toBe(peer.pathChanges);
        const kind = peer.paths!.find((p) => p.active)!.kind!;
        expect(sample(s, 'keymesh_peer_active_path', { ...lb, kind })).toBe(1);
        expect(sample(s, 'keymesh_peer_active_path', { ...lb, kind: kind === 'direct' ? 'relay' : 'direct' })).toBe(0);
        expect(sample(s, 'keymesh_peers', { interface: a.ifname })).toBe(show.peers.length);
        for (const [reason, n] of Object.entries(show.stats.drops)) {
          const scraped = sample(s, 'keymesh_drops_total', { interface: a.ifname, reason });
          if (s === s1) expect(scraped, reason).toBeLessThanOrEqual(n);
          else expect(scraped, reason).toBeGreaterThanOrEqual(n);
        }
        expect(sample(s, 'keymesh_info', { interface: a.ifname, public_key: show.publicKey! })).toBe(1);
      }
      // keymesh ↔ keymesh: the active path's RTT is measured (seconds, a LAN: under 100 ms)
      const rtt = sample(s2, 'keymesh_peer_path_rtt_seconds', lb);
      expect(rtt).toBeGreaterThan(0);
      expect(rtt).toBeLessThan(0.1);
      // the log said where
      const listening = nodeA.output
        .split('\n')
        .filter((x) => x.startsWith('{'))
        .map((x) => JSON.parse(x))
        .find((e) => e.event === 'metrics-listening');
      expect(listening?.fields.address).toBe('127.0.0.1:9586');
    });
    // not reachable from the other host: loopback only
    const fromB = spawnSync('ip', ['netns', 'exec', b.ns, 'curl', '-sS', '--max-time', '2', `http://${UNDERLAY.a}:9586/metrics`], { encoding: 'utf8' });
    expect(fromB.status).not.toBe(0);
    expect(fromB.stderr).toMatch(/refused|Failed to connect/i);
  }, 60_000);

  it('keymesh up refuses MetricsListen on a non-loopback address without MetricsPublic = true, naming file:line', () => {
    const l = (lab = new Lab());
    const { a } = twoHosts(l);
    a.extra = ['MetricsListen = 0.0.0.0:9586'];
    const conf = l.file(`${a.ifname}.conf`, wgQuickConfig(a));
    const r = spawnSync('ip', ['netns', 'exec', a.ns, process.execPath, KEYMESH_BIN, 'up', conf], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${conf}:5: MetricsListen: 0.0.0.0 is not a loopback address`);
    expect(r.stderr).toContain('MetricsPublic = true');
  }, 30_000);
});
