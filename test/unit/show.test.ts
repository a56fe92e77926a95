import { describe, expect, it } from 'vitest';
import { formatShow, shownPaths } from '../../src/cli/show.js';

const path = (p: string, local: string | null, state: string, active = false, kind: 'direct' | 'relay' = 'direct') => ({
  path: p,
  local,
  state,
  active,
  kind,
  rttMs: null,
  lastReceiveSecondsAgo: null,
});

describe('keymesh show: which paths are listed', () => {
  it('leaves out the unbound configured path once the same remote is reached from a real local end', () => {
    const configured = path('192.0.2.2:51820', null, 'failed');
    const bound = path('192.0.2.2:51820', '192.0.2.1%2', 'validated', true);
    const v6 = path('[fd00:2::2]:51820', 'fd00:2::1%2', 'validated');
    expect(shownPaths([configured, bound, v6])).toEqual([bound, v6]);
  });
  it('keeps it while it is the only way there, while it is active, or while it works', () => {
    const alone = path('198.51.100.7:51820', null, 'new');
    expect(shownPaths([alone])).toEqual([alone]);
    const active = path('192.0.2.2:51820', null, 'failed', true);
    const other = path('192.0.2.2:51820', '192.0.2.1%2', 'validating');
    expect(shownPaths([active, other])).toEqual([active, other]);
    const working = path('192.0.2.2:51820', null, 'validated');
    expect(shownPaths([working, other])).toEqual([working, other]);
  });
  it('never hides relays or paths with a local end', () => {
    const relay = path('relay', null, 'failed', false, 'relay');
    const failedBound = path('192.0.2.9:51820', '192.0.2.1%2', 'failed');
    const otherBound = path('192.0.2.9:51820', '192.0.2.5%3', 'validated');
    expect(shownPaths([relay, failedBound, otherBound])).toEqual([relay, failedBound, otherBound]);
  });
});

describe('keymesh show: path MTU', () => {
  const status = (tunnelMtu: number) => ({
    interface: 'wg0',
    publicKey: null,
    listenPort: 51820,
    mtu: 1420,
    fwmark: 0,
    stats: {
      drops: {},
      rxPackets: 1,
      txPackets: 1,
      underLoad: false,
      pmtu: { probes: 12, probeBytes: 16_000, blackHoles: 1, icmpSent: 3, fragmented: 2, mssClamped: 4 },
    },
    peers: [
      {
        publicKey: 'k',
        endpoint: '192.0.2.2:51820',
        allowedIps: [],
        latestHandshake: null,
        secondsSinceHandshake: null,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 0,
        presharedKey: false,
        handshakes: 1,
        session: null,
        stagedPackets: 0,
        tunnelMtu,
        paths: [
          { ...path('192.0.2.2:51820', '192.0.2.1%2', 'validated', true), pmtu: { mtu: 1280, state: 'complete', source: 'probe', probes: 9, probeBytes: 12_000, blackHoles: 1 } },
          { ...path('198.51.100.2:51820', '192.0.2.1%2', 'validated'), pmtu: { mtu: 1480, state: 'complete', source: 'kernel', probes: 0, probeBytes: 0, blackHoles: 0 } },
        ],
      },
    ],
  });
  it('prints each path’s PMTU and how it was found, the tunnel MTU when it is less, and the counters', () => {
    const out = formatShow(status(1220) as never);
    expect(out).toContain('path * 192.0.2.2:51820 validated, from 192.0.2.1%2, pmtu 1280 (probed, 1 black hole(s))');
    expect(out).toContain('pmtu 1480 (route)');
    expect(out).toContain('tunnel mtu: 1220 (the active path carries less than the interface’s 1420)'.replace('’', "'"));
    expect(out).toMatch(/path mtu: 12 probes \(15\.63 KiB\), 1 black hole\(s\); at the tunnel edge 3 ICMP too-big sent, 2 packets fragmented, 4 SYNs' MSS clamped/);
    expect(formatShow(status(1420) as never)).not.toContain('tunnel mtu:');
  });
});

describe('keymesh show: the mesh resolver', () => {
  const base = { interface: 'wg0', publicKey: null, listenPort: 51820, mtu: 1420, fwmark: 0, stats: { drops: {}, rxPackets: 0, txPackets: 0, underLoad: false }, peers: [] };
  const counters = { queries: 9, answered: 4, nxdomain: 1, refused: 1, servfail: 0, malformed: 2, rateLimited: 1, forwarded: 0, truncated: 0 };
  it('prints where it listens, how the host uses it, and its counters; nothing without a resolver', () => {
    const out = formatShow({ ...base, dns: { mode: 'direct', listening: ['10.99.0.1', 'fd99::1'], host: 'direct', upstreams: ['192.0.2.53'], ...counters } } as never);
    expect(out).toContain("dns: on 10.99.0.1, fd99::1 port 53, the host's resolver (resolv.conf); others forwarded to 192.0.2.53");
    expect(out).toContain('dns queries: 9; 4 answered, 1 nxdomain, 1 refused, 0 servfail, 2 malformed, 1 rate-limited, 0 forwarded, 0 truncated');
    expect(formatShow({ ...base, dns: null } as never)).not.toContain('dns');
  });
});

describe('keymesh show: an Endpoint name not resolved yet', () => {
  const peer = (unresolvedEndpoint: object | null) => ({
    publicKey: 'k',
    endpoint: null,
    unresolvedEndpoint,
    allowedIps: [],
    latestHandshake: null,
    secondsSinceHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 0,
    presharedKey: false,
    handshakes: 0,
    session: null,
    stagedPackets: 0,
  });
  const status = (u: object | null) => ({ interface: 'wg0', publicKey: null, listenPort: 1, mtu: 1420, fwmark: 0, stats: { drops: {}, rxPackets: 0, txPackets: 0, underLoad: false }, peers: [peer(u)] });
  it('says which name, the last error, and that it keeps trying', () => {
    expect(formatShow(status({ endpoint: 'vpn.example.net:51820', error: 'EAI_AGAIN', lookups: 7, seconds: 41 }) as never)).toContain(
      '  endpoint: vpn.example.net:51820 (not resolved yet: EAI_AGAIN; 7 lookup(s) in 41 s, still trying)',
    );
    expect(formatShow(status({ endpoint: 'nosuch.test:51820', error: 'ENOTFOUND', lookups: 2, seconds: 3 }) as never)).toContain('(not resolved yet: no such name;');
    expect(formatShow(status(null) as never)).not.toContain('endpoint:');
  });
});
