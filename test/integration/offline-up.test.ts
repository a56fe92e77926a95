/**
 * `keymesh up` before the network and DNS answer (reresolve.ts): the node comes up with its
 * Endpoint name unresolved, says so, and connects as soon as the resolver answers.
 *
 *     ns km-<id>-a                                ns km-<id>-b
 *   ┌──────────────────────────┐  veth pair  ┌──────────────────────────────┐
 *   │ keymesh A                │             │ keymesh B (no Endpoint for A)│
 *   │ Endpoint = peer.test:…   │             │ dns-server on 192.0.2.53:53  │
 *   │ resolv.conf → 192.0.2.53 │             │   peer.test → 192.0.2.2      │
 *   │ eth0 192.0.2.1/24        ├─────────────┤ eth0 192.0.2.2/24, .53/24    │
 *   └──────────────────────────┘             └──────────────────────────────┘
 *
 * (a) A's resolver is reachable but nothing listens yet; a ping runs from the start. The DNS
 *     server starts once A's backoff has grown past the 2 s: the waiting traffic makes A look
 *     again, and the first ping reply must come within 2 s of the server answering. A second
 *     peer's name does not exist (NXDOMAIN): the node stays up and says so. Logs are JSON.
 * (b) A has no address at all (offline); the DNS server already runs. `show --json` and the
 *     metrics name the unresolved Endpoint. The address appears (netlink): the handshake must
 *     complete within 2 s, with no traffic to prompt it.
 *
 * Needs root; skipped with the reason otherwise.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ShowStatus } from '../../src/cli/show.js';
import { canRunNetns, KEYMESH_BIN, Lab, REPO, sleep, startKeymesh, uapiGet, waitFor, wgGenKeypair, type Proc } from '../../netns/lib.js';
import { parseExposition, sample } from '../unit/support/prom-text.js';
import { TUNNEL, twoHosts, UNDERLAY } from '../../netns/two-hosts.js';

const skip = canRunNetns() ?? (spawnSync('which', ['curl']).status === 0 ? null : 'curl is not installed');
if (skip) console.warn(`integration tests skipped: ${skip}`);

const DNS_ADDR = '192.0.2.53';
const DNS_SERVER = path.join(REPO, 'dist', 'netns', 'dns-server.js');

let lab: Lab | null = null;
let netnsEtc: string | null = null;
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
  if (netnsEtc) rmSync(netnsEtc, { recursive: true, force: true });
  netnsEtc = null;
});

/** The namespace's own resolv.conf (ip netns exec bind-mounts /etc/netns/NS/resolv.conf). */
function resolvConf(ns: string, server: string): void {
  netnsEtc = `/etc/netns/${ns}`;
  mkdirSync(netnsEtc, { recursive: true });
  writeFileSync(path.join(netnsEtc, 'resolv.conf'), `nameserver ${server}\noptions timeout:1 attempts:1\n`);
}

function startDns(l: Lab, ns: string): Proc {
  return l.spawn(ns, [process.execPath, DNS_SERVER, '--addr', DNS_ADDR, '--record', `peer.test=${UNDERLAY.b}`], 'dns-server');
}

function withLogs<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    (e as Error).message += `\n${lab?.logs() ?? ''}`;
    throw e;
  }
}

describe.skipIf(skip)('keymesh up without a network', () => {
  it('(a) comes up with an unresolved Endpoint name; the first ping gets through within 2 s of the resolver answering; NXDOMAIN is said and survived', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    l.exec(b.ns, ['ip', 'addr', 'add', `${DNS_ADDR}/24`, 'dev', 'eth0']);
    resolvConf(a.ns, DNS_ADDR);
    a.peers[0].endpoint = 'peer.test:51820';
    a.peers.push({ publicKey: wgGenKeypair().publicKey, allowedIps: ['10.0.0.9/32'], endpoint: 'nosuch.test:51820' });
    a.upArgs = ['--log-format', 'json'];
    await startKeymesh(l, b);
    const upAt = Date.now();
    const nodeA = await startKeymesh(l, a);
    const upMs = Date.now() - upAt;
    const pinger = l.spawn(a.ns, ['ping', '-D', '-n', '-i', '0.5', TUNNEL.b], 'ping');
    // the backoff has grown past 2 s (lookups at 0, 1, 3 s; the next at 7 s)
    await sleep(4000);
    const events = () =>
      nodeA.output
        .split('\n')
        .filter((x) => x.startsWith('{'))
        .map((x) => JSON.parse(x) as { time: string; level: string; event: string; msg: string; fields: Record<string, unknown> });
    withLogs(() => {
      expect(nodeA.running).toBe(true);
      expect(pinger.output).not.toMatch(/bytes from/);
      const failed = events().filter((e) => e.event === 'resolve-failed' && e.fields.host === 'peer.test');
      expect(failed[0]?.level).toBe('warn');
      expect(failed[0]?.msg).toMatch(/does not resolve yet \(EAI_AGAIN\): up without it/);
      expect(events().some((e) => e.event === 'up')).toBe(true);
    });
    const dns = startDns(l, b.ns);
    await waitFor('dns server', () => dns.output.includes('DNS READY'), 5000);
    const readyAt = Number(/DNS READY (\d+)/.exec(dns.output)![1]);
    await waitFor('the first ping reply', () => /\] 64 bytes from/.test(pinger.output), 10_000).catch((e) => withLogs(() => { throw e; }));
    const firstReply = Math.round(Number(/^\[(\d+\.\d+)\] 64 bytes from/m.exec(pinger.output)![1]) * 1000);
    const ms = firstReply - readyAt;
    console.log(`offline up (a): up in ${upMs} ms with peer.test unresolved; first ping reply ${ms} ms after the resolver started answering`);
    await waitFor('the NXDOMAIN warning', () => events().some((e) => e.event === 'resolve-failed' && e.fields.host === 'nosuch.test' && e.fields.error === 'ENOTFOUND'), 5000).catch(
      (e) => withLogs(() => { throw e; }),
    );
    withLogs(() => {
      expect(ms).toBeLessThan(2000);
      const nx = events().find((e) => e.fields.host === 'nosuch.test' && e.fields.error === 'ENOTFOUND')!;
      expect(nx.level).toBe('warn');
      expect(nx.msg).toMatch(/"nosuch\.test" does not exist \(NXDOMAIN\)/);
      const resolved = events().find((e) => e.event === 'endpoint-resolved');
      expect(resolved?.fields).toMatchObject({ host: 'peer.test', address: `${UNDERLAY.b}:51820` });
      // every line of the log is one JSON object, and none carries a key whole
      const lines = nodeA.output.split('\n').filter((x) => x.trim() !== '');
      for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
      expect(nodeA.output).not.toContain(a.privateKey);
      expect(nodeA.output).not.toContain(a.peers[0].publicKey);
      expect(nodeA.running).toBe(true);
    });
    await pinger.stop('SIGINT');
  }, 60_000);

  it('(b) offline at start: the handshake completes within 2 s of the address appearing (netlink), with no traffic waiting', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    l.exec(b.ns, ['ip', 'addr', 'add', `${DNS_ADDR}/24`, 'dev', 'eth0']);
    l.exec(a.ns, ['ip', 'addr', 'flush', 'dev', 'eth0']);
    resolvConf(a.ns, DNS_ADDR);
    a.peers[0].endpoint = 'peer.test:51820';
    a.extra = ['MetricsListen = 127.0.0.1:9586'];
    await startKeymesh(l, b);
    const dns = startDns(l, b.ns);
    await waitFor('dns server', () => dns.output.includes('DNS READY'), 5000);
    const nodeA = await startKeymesh(l, a);
    await sleep(4000);
    withLogs(() => {
      expect(nodeA.running).toBe(true);
      expect(nodeA.output).toMatch(/peer\.test" does not resolve yet \(EAI_AGAIN\): up without it/);
    });
    const handshake = async () => (await uapiGet(a.ifname)).some((x) => /^last_handshake_time_sec=[1-9]/.test(x));
    expect(await handshake()).toBe(false);
    // show --json and the metrics say which name has not resolved, and why
    const shown = JSON.parse(l.exec(a.ns, [process.execPath, KEYMESH_BIN, 'show', a.ifname, '--json'])) as ShowStatus;
    expect(shown.peers[0]).toMatchObject({ endpoint: null, unresolvedEndpoint: { endpoint: 'peer.test:51820', error: 'EAI_AGAIN' } });
    expect(shown.peers[0].unresolvedEndpoint!.lookups).toBeGreaterThanOrEqual(3);
    const scraped = parseExposition(l.exec(a.ns, ['curl', '-sS', '--fail', 'http://127.0.0.1:9586/metrics']));
    expect(sample(scraped, 'keymesh_peer_endpoint_unresolved', { peer: a.peers[0].publicKey })).toBe(1);
    const t0 = Date.now();
    l.exec(a.ns, ['ip', 'addr', 'add', `${UNDERLAY.a}/24`, 'dev', 'eth0']);
    await waitFor('the handshake', handshake, 10_000, 20).catch((e) => withLogs(() => { throw e; }));
    const ms = Date.now() - t0;
    console.log(`offline up (b): handshake ${ms} ms after the address appeared`);
    withLogs(() => {
      expect(ms).toBeLessThan(2000);
      expect(nodeA.output).toMatch(/peer\.test resolves to 192\.0\.2\.2:51820 .*connecting/);
    });
    const after = JSON.parse(l.exec(a.ns, [process.execPath, KEYMESH_BIN, 'show', a.ifname, '--json'])) as ShowStatus;
    expect(after.peers[0].unresolvedEndpoint).toBeNull();
    // (B announces both its addresses, the resolver's too: keymesh may move the session onto either)
    expect(after.peers[0].endpoint ?? 'null').toMatch(/^192\.0\.2\.(2|53):51820\b/);
  }, 60_000);
});
