import { describe, expect, it } from 'vitest';
import type { ShowStatus } from '../../src/cli/show.js';
import { ConfigError, parseWgQuick, serializeWgQuick } from '../../src/config/wgquick.js';
import { MetricsServer, renderMetrics } from '../../src/io/metrics.js';
import { parseExposition, sample } from './support/prom-text.js';

const KEY_A = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const KEY_B = 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=';
const PRIV = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';

function status(): ShowStatus {
  return {
    interface: 'wg0',
    publicKey: KEY_A,
    listenPort: 51820,
    mtu: 1420,
    fwmark: 0,
    aead: 'native',
    stats: {
      drops: { replay: 3, noEndpoint: 0, badMac: 7 },
      rxPackets: 1000,
      txPackets: 900,
      underLoad: false,
      lighthouse: { lookupsAnswered: 4, relayedBytes: 123456 },
    },
    peers: [
      {
        publicKey: KEY_B,
        name: 'bob "the\\builder"\nsecond line',
        endpoint: '192.0.2.2:51820',
        allowedIps: ['10.0.0.2/32'],
        latestHandshake: 1_790_000_000,
        secondsSinceHandshake: 12,
        rxBytes: 2 ** 40 + 5,
        txBytes: 77,
        persistentKeepalive: 0,
        presharedKey: false,
        handshakes: 3,
        pathChanges: 2,
        session: { role: 'initiator', ageSeconds: 12 },
        stagedPackets: 0,
        relayed: { packets: 1, bytes: 99 },
        paths: [
          { path: '192.0.2.2:51820', kind: 'direct', state: 'failed', active: false, rttMs: null, lastReceiveSecondsAgo: null },
          { path: 'relay', kind: 'relay', via: KEY_A, state: 'validated', active: true, rttMs: 23.5, lastReceiveSecondsAgo: 0.1 },
        ],
      },
      {
        publicKey: KEY_A.replace('x', 'y'),
        name: null,
        endpoint: null,
        unresolvedEndpoint: { endpoint: 'peer.test:51820', error: 'EAI_AGAIN', lookups: 3, seconds: 7 },
        allowedIps: [],
        latestHandshake: null,
        secondsSinceHandshake: null,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 0,
        presharedKey: false,
        handshakes: 0,
        session: null,
        stagedPackets: 2,
      },
    ],
  };
}

describe('metrics: the text exposition of `keymesh show --json`', () => {
  const e = parseExposition(renderMetrics(status()));
  const bob = { interface: 'wg0', peer: KEY_B };

  it('every line is HELP, TYPE or a sample; every family is typed before its samples, counters end in _total', () => {
    const names = new Set(e.samples.map((s) => s.name));
    for (const n of names) {
      expect(e.types.has(n), n).toBe(true);
      expect(e.help.has(n), n).toBe(true);
      expect(n.startsWith('keymesh_')).toBe(true);
      if (e.types.get(n) === 'counter') expect(n.endsWith('_total'), n).toBe(true);
      else expect(n.endsWith('_total'), n).toBe(false);
    }
    for (const s of e.samples) expect(s.labels.interface).toBe('wg0');
  });

  it('per peer: bytes, handshakes, handshake age and time, path changes, the active path kind and its RTT', () => {
    expect(sample(e, 'keymesh_peer_rx_bytes_total', bob)).toBe(2 ** 40 + 5);
    expect(sample(e, 'keymesh_peer_tx_bytes_total', bob)).toBe(77);
    expect(sample(e, 'keymesh_peer_handshakes_total', bob)).toBe(3);
    expect(sample(e, 'keymesh_peer_last_handshake_age_seconds', bob)).toBe(12);
    expect(sample(e, 'keymesh_peer_last_handshake_timestamp_seconds', bob)).toBe(1_790_000_000);
    expect(sample(e, 'keymesh_peer_path_changes_total', bob)).toBe(2);
    expect(sample(e, 'keymesh_peer_active_path', { ...bob, kind: 'relay' })).toBe(1);
    expect(sample(e, 'keymesh_peer_active_path', { ...bob, kind: 'direct' })).toBe(0);
    expect(sample(e, 'keymesh_peer_path_rtt_seconds', bob)).toBeCloseTo(0.0235, 6);
    expect(sample(e, 'keymesh_peer_endpoint_unresolved', bob)).toBe(0);
  });

  it('label values are escaped (a name with quotes, a backslash and a newline comes back as it was)', () => {
    const s = e.samples.find((x) => x.name === 'keymesh_peer_rx_bytes_total' && x.labels.peer === KEY_B)!;
    expect(s.labels.name).toBe('bob "the\\builder"\nsecond line');
  });

  it('a peer never handshaken: no age, time 0, no active path; an unresolved Endpoint name is 1', () => {
    const other = { peer: KEY_A.replace('x', 'y') };
    expect(e.samples.some((s) => s.name === 'keymesh_peer_last_handshake_age_seconds' && s.labels.peer === other.peer)).toBe(false);
    expect(e.samples.some((s) => s.name === 'keymesh_peer_path_rtt_seconds' && s.labels.peer === other.peer)).toBe(false);
    expect(sample(e, 'keymesh_peer_last_handshake_timestamp_seconds', other)).toBe(0);
    expect(sample(e, 'keymesh_peer_active_path', { ...other, kind: 'direct' })).toBe(0);
    expect(sample(e, 'keymesh_peer_active_path', { ...other, kind: 'relay' })).toBe(0);
    expect(sample(e, 'keymesh_peer_endpoint_unresolved', other)).toBe(1);
    expect(sample(e, 'keymesh_peer_rx_bytes_total', other)).toBe(0);
  });

  it('node-wide: drops by reason, packets, lighthouse counters, peers', () => {
    expect(sample(e, 'keymesh_drops_total', { reason: 'replay' })).toBe(3);
    expect(sample(e, 'keymesh_drops_total', { reason: 'badMac' })).toBe(7);
    expect(sample(e, 'keymesh_drops_total', { reason: 'noEndpoint' })).toBe(0);
    expect(sample(e, 'keymesh_rx_packets_total')).toBe(1000);
    expect(sample(e, 'keymesh_tx_packets_total')).toBe(900);
    expect(sample(e, 'keymesh_lighthouse_lookups_answered_total')).toBe(4);
    expect(sample(e, 'keymesh_lighthouse_relayed_bytes_total')).toBe(123456);
    expect(sample(e, 'keymesh_peers')).toBe(2);
    expect(sample(e, 'keymesh_info', { public_key: KEY_A })).toBe(1);
  });

  it('the reader used here refuses what is not the format', () => {
    expect(() => parseExposition('keymesh_x{a="b"} 1')).toThrow(/newline/);
    expect(() => parseExposition('keymesh_x{a="b} 1\n')).toThrow(/bad label/);
    expect(() => parseExposition('keymesh_x 1 2 3\n')).toThrow(/bad value/);
    expect(() => parseExposition('keymesh_x one\n')).toThrow(/not a number/);
  });
});

describe('metrics: the HTTP endpoint', () => {
  it('GET /metrics answers the exposition with its content type; other paths 404, other methods 405', async () => {
    const m = await MetricsServer.listen('127.0.0.1', 0, status);
    try {
      const r = await fetch(`http://${m.address}/metrics`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const e = parseExposition(await r.text());
      expect(sample(e, 'keymesh_peer_handshakes_total', { peer: KEY_B })).toBe(3);
      expect((await fetch(`http://${m.address}/nope`)).status).toBe(404);
      expect((await fetch(`http://${m.address}/metrics`, { method: 'POST' })).status).toBe(405);
    } finally {
      await m.close();
    }
  });

  it('an address in use is an error naming it', async () => {
    const m = await MetricsServer.listen('127.0.0.1', 0, status);
    try {
      const port = Number(m.address.split(':')[1]);
      await expect(MetricsServer.listen('127.0.0.1', port, status)).rejects.toThrow(`MetricsListen 127.0.0.1:${port}: EADDRINUSE`);
    } finally {
      await m.close();
    }
  });
});

describe('metrics: MetricsListen and MetricsPublic in [Interface]', () => {
  const conf = (...lines: string[]) => `[Interface]\nPrivateKey = ${PRIV}\n${lines.join('\n')}\n`;
  const parse = (text: string) => parseWgQuick(text, 'wg0.conf');
  const problem = (text: string) => {
    try {
      parse(text);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as Error).message;
    }
    throw new Error('no error');
  };

  it('is off by default; a loopback address (IPv4 or IPv6) is taken as it is', () => {
    expect(parse(conf()).interface.metricsListen).toBeUndefined();
    expect(parse(conf('MetricsListen = 127.0.0.1:9586')).interface.metricsListen).toEqual({ host: '127.0.0.1', port: 9586 });
    expect(parse(conf('MetricsListen = [::1]:9586')).interface.metricsListen).toEqual({ host: '::1', port: 9586 });
    expect(parse(conf('MetricsListen = 127.0.0.53:9100')).interface.metricsListen).toEqual({ host: '127.0.0.53', port: 9100 });
  });

  it('refuses an address other hosts can reach unless MetricsPublic = true, at the MetricsListen line', () => {
    expect(problem(conf('ListenPort = 51820', 'MetricsListen = 0.0.0.0:9586'))).toMatch(/^wg0\.conf:4: MetricsListen: 0\.0\.0\.0 is not a loopback address.*MetricsPublic = true/);
    expect(problem(conf('MetricsListen = 192.0.2.1:9586'))).toMatch(/^wg0\.conf:3: /);
    expect(problem(conf('MetricsListen = [::]:9586', 'MetricsPublic = false'))).toMatch(/^wg0\.conf:3: MetricsListen: :: is not a loopback/);
    expect(problem(conf('MetricsListen = [::ffff:192.0.2.1]:9586'))).toMatch(/not a loopback/);
    const pub = parse(conf('MetricsListen = 0.0.0.0:9586', 'MetricsPublic = true')).interface;
    expect(pub.metricsListen).toEqual({ host: '0.0.0.0', port: 9586 });
    expect(pub.metricsPublic).toBe(true);
  });

  it('refuses what is not IP:PORT, and a MetricsPublic that is not a boolean, with file:line', () => {
    expect(problem(conf('MetricsListen = localhost:9586'))).toMatch(/^wg0\.conf:3: MetricsListen: "localhost:9586" is not IP:PORT/);
    expect(problem(conf('MetricsListen = 127.0.0.1'))).toMatch(/^wg0\.conf:3: MetricsListen: .* is not IP:PORT/);
    expect(problem(conf('MetricsListen = 127.0.0.1:0'))).toMatch(/^wg0\.conf:3: MetricsListen/);
    expect(problem(conf('MetricsPublic = yes'))).toMatch(/^wg0\.conf:3: MetricsPublic: "yes" is neither true nor false/);
    expect(problem(`[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = ${KEY_B}\nMetricsListen = 127.0.0.1:9586\n`)).toMatch(/^wg0\.conf:5: MetricsListen belongs in the \[Interface\]/);
  });

  it('survives SaveConfig (serialize, parse again)', () => {
    for (const lines of [['MetricsListen = 127.0.0.1:9586'], ['MetricsListen = [::]:9586', 'MetricsPublic = true']]) {
      const a = parse(conf(...lines));
      const b = parse(serializeWgQuick(a));
      expect(b.interface.metricsListen).toEqual(a.interface.metricsListen);
      expect(b.interface.metricsPublic).toBe(a.interface.metricsPublic);
    }
  });
});
