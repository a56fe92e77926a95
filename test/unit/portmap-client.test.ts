/**
 * The PortMapper against an in-memory gateway (the netns responder's own server logic, see
 * support/portmap-fakes.ts) on a virtual clock: PCP success, fallback to NAT-PMP, refusal,
 * silence, renewal, a gateway restart, stop, and hostile datagrams.
 */
import { describe, expect, it } from 'vitest';
import { PortMapper, type PortMapperOptions, type PortMapping } from '../../src/io/portmap/client.js';
import { decodeNatPmpRequest, encodeNatPmpMapResponse } from '../../src/io/portmap/natpmp.js';
import { decodePcpRequest, encodePcpResponse } from '../../src/io/portmap/pcp.js';
import { CLIENT, FakeClock, FakeGateway, GATEWAY, WAN } from './support/portmap-fakes.js';
import type { PortMapServerOptions } from '../../netns/portmap-server.js';

const NONCE = Uint8Array.from({ length: 12 }, (_, i) => 0xa0 + i);

function setup(server: Partial<PortMapServerOptions> = {}, opts: Partial<PortMapperOptions> = {}) {
  const clock = new FakeClock();
  const gw = new FakeGateway(clock, server);
  const mapped: PortMapping[] = [];
  const lost: Array<{ at: number; reason: string }> = [];
  const logs: string[] = [];
  const pm = new PortMapper({
    gateway: GATEWAY,
    internalPort: 51820,
    transport: gw.transport,
    clock,
    random: () => 0,
    randomBytes: () => NONCE.slice(),
    onMapped: (m) => mapped.push(m),
    onLost: (reason) => lost.push({ at: clock.now(), reason }),
    log: (line) => logs.push(line),
    ...opts,
  });
  return { clock, gw, pm, mapped, lost, logs };
}

describe('PortMapper', () => {
  it('maps with PCP: one MAP request from our address, answered in milliseconds', () => {
    const { clock, gw, pm, mapped, lost, logs } = setup();
    pm.start();
    clock.advance(10);
    expect(gw.summary).toEqual(['pcp map 7200']);
    const req = decodePcpRequest(gw.sent[0].bytes);
    expect(req).toMatchObject({ kind: 'map', clientAddress: CLIENT, protocol: 17, internalPort: 51820, externalPort: 51820, externalAddress: '0.0.0.0', nonce: NONCE });
    expect(mapped).toEqual([{ protocol: 'pcp', gateway: GATEWAY, internalPort: 51820, externalAddress: WAN, externalPort: 51820, lifetime: 7200, expiresAt: 2 + 7_200_000 }]);
    expect(pm.state).toBe('mapped');
    expect(pm.mapping).toEqual(mapped[0]);
    expect(lost).toEqual([]);
    expect(logs).toEqual([`portmap: udp 51820 mapped to ${WAN}:51820 for 7200 s by ${GATEWAY} (PCP)`]);
    expect([...gw.server.mappings.values()]).toMatchObject([{ protocol: 'udp', internalAddress: CLIENT, internalPort: 51820, externalPort: 51820 }]);
  });

  it('falls back to NAT-PMP at once when the gateway answers PCP with Unsupported Version', () => {
    const { clock, gw, pm, mapped, logs } = setup({ natPmpOnly: true });
    pm.start();
    clock.advance(20);
    // PCP first, then NAT-PMP's external address request and its map request, no waiting on timeouts
    expect(gw.summary).toEqual(['pcp map 7200', 'nat-pmp address', 'nat-pmp map 7200']);
    expect(gw.sent.map((s) => s.at)).toEqual([0, 2, 4]);
    expect(decodeNatPmpRequest(gw.sent[2].bytes)).toEqual({ kind: 'map', protocol: 'udp', internalPort: 51820, suggestedExternalPort: 51820, lifetime: 7200 });
    expect(mapped).toMatchObject([{ protocol: 'nat-pmp', externalAddress: WAN, externalPort: 51820, lifetime: 7200 }]);
    expect(logs[0]).toBe(`portmap: ${GATEWAY} does not speak PCP (it answered in NAT-PMP (Unsupported Version (1))); asking in NAT-PMP`);
  });

  it('a PCP refusal: one clear onLost and log line, then quiet until the error lifetime has passed', () => {
    const { clock, gw, pm, mapped, lost, logs } = setup({ refuse: true });
    pm.start();
    clock.advance(10);
    expect(mapped).toEqual([]);
    expect(lost).toEqual([{ at: 2, reason: `${GATEWAY} refused the mapping: NOT_AUTHORIZED (2) (PCP)` }]);
    expect(logs).toEqual([`portmap: ${GATEWAY} refused the mapping: NOT_AUTHORIZED (2) (PCP); trying again in 30 min`]);
    expect(pm.state).toBe('failed');
    // No NAT-PMP after a PCP refusal (only UNSUPP_VERSION means that), and no retry storm.
    clock.advance(29 * 60_000);
    expect(gw.summary).toEqual(['pcp map 7200']);
    clock.advance(60_000 + 10); // the refusal's 1800 s lifetime has run out: one new request, refused again
    expect(gw.summary).toEqual(['pcp map 7200', 'pcp map 7200']);
    expect(lost).toHaveLength(2);
    expect(logs).toHaveLength(1); // the same reason is not logged again
  });

  it('a NAT-PMP refusal (result 2) is reported the same way', () => {
    const { clock, gw, pm, lost } = setup({ natPmpOnly: true, refuse: true });
    pm.start();
    clock.advance(10);
    expect(gw.summary).toEqual(['pcp map 7200', 'nat-pmp address', 'nat-pmp map 7200']);
    expect(lost.map((l) => l.reason)).toEqual([`${GATEWAY} refused the mapping: Not Authorized/Refused (2) (NAT-PMP)`]);
    clock.advance(20 * 60_000);
    expect(gw.sent).toHaveLength(3);
  });

  it('a silent gateway: 250 ms doubling, given up after 4 s with one log line, nothing else held up', () => {
    const { clock, gw, pm, lost, logs } = setup();
    gw.silent = true;
    pm.start();
    clock.advance(10_000);
    expect(gw.sent.map((s) => s.at)).toEqual([0, 250, 750, 1750, 3750]);
    expect(gw.summary.every((s) => s === 'pcp map 7200')).toBe(true);
    expect(lost).toEqual([{ at: 4000, reason: `no PCP or NAT-PMP answer from ${GATEWAY}:5351 within 4 s` }]);
    expect(logs).toEqual([`portmap: no PCP or NAT-PMP answer from ${GATEWAY}:5351 within 4 s; trying again in 30 min`]);
    // the next round comes 30 min later, and fails as quietly
    clock.advance(30 * 60_000);
    expect(gw.sent).toHaveLength(10);
    expect(logs).toHaveLength(1);
    expect(lost).toHaveLength(2);
  });

  it('ICMP port unreachable from the gateway ends the round at once', () => {
    const { clock, gw, pm, lost } = setup();
    gw.unreachable = true;
    pm.start();
    clock.advance(10);
    expect(gw.sent).toHaveLength(1);
    expect(lost).toEqual([{ at: 1, reason: `${GATEWAY}:5351 answered ICMP port unreachable` }]);
  });

  it('renews between 1/2 and 5/8 of the lifetime (PCP), halfway (NAT-PMP), with the same nonce and port', () => {
    for (const [random, at] of [
      [0, 2002],
      [0.8, 2402],
    ] as const) {
      const { clock, gw, pm, mapped } = setup({}, { lifetime: 4, random: () => random });
      pm.start();
      clock.advance(at - 1);
      expect(gw.sent).toHaveLength(1);
      clock.advance(10);
      expect(gw.sent.map((s) => s.at)).toEqual([0, at]);
      expect(decodePcpRequest(gw.sent[1].bytes)).toMatchObject({ kind: 'map', nonce: NONCE, externalPort: 51820, externalAddress: WAN, lifetime: 4 });
      expect(mapped).toHaveLength(2);
      expect(mapped[1].expiresAt).toBe(at + 2 + 4000);
      expect([...gw.server.mappings.values()][0].expiresAt).toBe(at + 1 + 4000);
    }
    const { clock, gw, pm, mapped } = setup({ natPmpOnly: true }, { lifetime: 4 });
    pm.start();
    clock.advance(10);
    const first = gw.sent.length;
    clock.advance(6 + 2000 - 10 - 1); // mapped at 6 ms; the renewal is due at 2006
    expect(gw.sent).toHaveLength(first);
    clock.advance(20);
    expect(gw.summary.slice(first)).toEqual(['pcp map 4', 'nat-pmp address', 'nat-pmp map 4']);
    expect(gw.sent[first].at).toBe(2006);
    expect(mapped).toHaveLength(2);
    pm.stop();
  });

  it('a renewal that goes unanswered keeps the mapping until it expires, then reports the loss', () => {
    const { clock, gw, pm, mapped, lost } = setup({}, { lifetime: 20 });
    pm.start();
    clock.advance(10);
    gw.silent = true;
    clock.advance(10_000 + 4000); // renewal round at 10 s, given up at 14 s
    expect(pm.mapping).not.toBeNull();
    expect(lost).toEqual([]);
    clock.advance(6000 + 100); // a second renewal at half of what was left, then expiry at 20 s
    expect(lost.map((l) => [l.at, l.reason])).toEqual([[20_002, `the mapping expired: no PCP or NAT-PMP answer from ${GATEWAY} to renewals`]]);
    expect(pm.mapping).toBeNull();
    expect(mapped).toHaveLength(1);
    // the gateway answers again: the next try (after retryAfterMs) maps again, same port suggested
    gw.silent = false;
    clock.advance(30 * 60_000);
    expect(mapped).toHaveLength(2);
  });

  it('a gateway restart announced (ANNOUNCE, epoch back to 0) is answered by mapping again', () => {
    const { clock, gw, pm, mapped, logs } = setup();
    pm.start();
    clock.advance(100_000);
    expect(mapped).toHaveLength(1);
    gw.restart(true);
    expect(gw.server.mappings.size).toBe(0);
    clock.advance(10);
    expect(gw.summary).toEqual(['pcp map 7200', 'pcp map 7200']);
    expect(decodePcpRequest(gw.sent[1].bytes)).toMatchObject({ externalPort: 51820, externalAddress: WAN }); // what it had
    expect(gw.server.mappings.size).toBe(1);
    expect(mapped).toHaveLength(2);
    expect(logs).toContain(`portmap: ${GATEWAY} lost its mappings (its PCP epoch went back); mapping again`);
  });

  it('a restart nobody announced is caught by the epoch in the renewal answer', () => {
    const { clock, gw, pm, mapped, logs } = setup({}, { lifetime: 60 });
    pm.start();
    clock.advance(20_000);
    gw.restart(false);
    clock.advance(15_000); // renewal at 30 s: the mapping is made again by that very request
    expect(mapped).toHaveLength(2);
    expect(gw.server.mappings.size).toBe(1);
    expect(logs).toContain(`portmap: ${GATEWAY} restarted (its PCP epoch went back); the mapping is made again`);
    expect(gw.sent).toHaveLength(2);
  });

  it('a NAT-PMP gateway announcing a restart is mapped again through NAT-PMP', () => {
    const { clock, gw, pm, mapped } = setup({ natPmpOnly: true });
    pm.start();
    clock.advance(50_000);
    gw.restart(true);
    clock.advance(20);
    expect(mapped.map((m) => m.protocol)).toEqual(['nat-pmp', 'nat-pmp']);
    expect(gw.server.mappings.size).toBe(1);
  });

  it('stop deletes the mapping (PCP: lifetime 0, same nonce) and closes the socket', async () => {
    const { clock, gw, pm } = setup();
    pm.start();
    clock.advance(10);
    const done = pm.stop();
    clock.advance(5);
    await done;
    expect(gw.summary).toEqual(['pcp map 7200', 'pcp map 0']);
    expect(decodePcpRequest(gw.sent[1].bytes)).toMatchObject({ kind: 'map', lifetime: 0, nonce: NONCE, internalPort: 51820 });
    expect(gw.server.mappings.size).toBe(0);
    expect(gw.closed).toBe(true);
    expect(pm.state).toBe('stopped');
    clock.advance(60 * 60_000);
    expect(gw.sent).toHaveLength(2); // nothing after stop
  });

  it('stop deletes a NAT-PMP mapping with lifetime 0 and suggested port 0 (RFC 6886 §3.4); a lost delete is sent twice', async () => {
    const { clock, gw, pm } = setup({ natPmpOnly: true });
    pm.start();
    clock.advance(10);
    gw.silent = true;
    const done = pm.stop();
    clock.advance(1000);
    await done;
    expect(gw.summary.slice(3)).toEqual(['nat-pmp map 0', 'nat-pmp map 0']);
    expect(decodeNatPmpRequest(gw.sent[3].bytes)).toEqual({ kind: 'map', protocol: 'udp', internalPort: 51820, suggestedExternalPort: 0, lifetime: 0 });
    expect(gw.closed).toBe(true);
  });

  it('refresh() maps again at once: after a change of address, and after giving up', () => {
    const { clock, gw, pm, mapped } = setup();
    pm.start();
    clock.advance(10);
    pm.refresh();
    clock.advance(10);
    expect(gw.sent.map((x) => x.at)).toEqual([0, 10]);
    expect(mapped).toHaveLength(2);
    const quiet = setup();
    quiet.gw.silent = true;
    quiet.pm.start();
    quiet.clock.advance(5000);
    expect(quiet.pm.state).toBe('failed');
    quiet.gw.silent = false;
    quiet.pm.refresh(); // e.g. the network came back: no need to wait out the 30 min
    quiet.clock.advance(10);
    expect(quiet.pm.state).toBe('mapped');
  });

  it('stop before anything was sent, or twice, is quiet', async () => {
    const { clock, gw, pm } = setup();
    await pm.stop();
    await pm.stop();
    pm.start();
    clock.advance(10);
    expect(gw.sent).toEqual([]);
  });

  it('hostile datagrams are counted and never throw; at worst a spoofed epoch makes it map again, to the same place', () => {
    const { clock, gw, pm, mapped, lost } = setup();
    pm.start();
    clock.advance(10);
    let s = 9;
    const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    for (let i = 0; i < 2000; i++) {
      const b = new Uint8Array((r() * 70) | 0).map(() => (r() * 256) | 0);
      if (b.length > 0 && i % 3 === 0) b[0] = i % 2 ? 0 : 2; // a good share that look like either protocol
      gw.deliver(b, i % 2 ? 'request' : 'announce');
    }
    const wrongNonce = encodePcpResponse({ opcode: 1, resultCode: 0, lifetime: 60, epoch: 1, map: { nonce: new Uint8Array(12), protocol: 17, internalPort: 51820, externalPort: 1, externalAddress: '192.0.2.66' } });
    gw.deliver(wrongNonce);
    gw.deliver(encodeNatPmpMapResponse({ protocol: 'udp', resultCode: 0, epoch: 100, internalPort: 51820, externalPort: 2, lifetime: 60 }), 'request', 0, '10.1.0.99');
    clock.advance(10);
    expect(pm.stats.malformed).toBeGreaterThan(1000);
    expect(pm.stats.foreign).toBe(1);
    expect(pm.stats.unexpected).toBeGreaterThanOrEqual(1);
    // A datagram from the gateway's address whose epoch jumps is a restart as far as anyone can
    // tell (RFC 6886 §3.6): the answer is a new MAP request, which the real gateway answers alike.
    expect(mapped.length).toBeGreaterThanOrEqual(1);
    expect(mapped.every((m) => m.externalAddress === WAN && m.externalPort === 51820)).toBe(true);
    expect(gw.summary.every((x) => x === 'pcp map 7200')).toBe(true);
    expect(lost).toEqual([]);
    expect(pm.mapping).toMatchObject({ externalAddress: WAN, externalPort: 51820 });
  });

  it('datagrams of neither version change nothing at all', () => {
    const { clock, gw, pm, mapped } = setup();
    pm.start();
    clock.advance(10);
    for (let v = 0; v < 256; v++) {
      if (v === 0 || v === 2) continue;
      gw.deliver(new Uint8Array(60).fill(v), 'request');
      gw.deliver(new Uint8Array(8).fill(v), 'announce');
    }
    clock.advance(10);
    expect(pm.stats.malformed).toBe(2 * 254);
    expect(mapped).toHaveLength(1);
    expect(gw.sent).toHaveLength(1);
  });

  it('says what is wrong with its arguments', () => {
    expect(() => new PortMapper({ gateway: 'router.lan', internalPort: 1 })).toThrow('PortMapper: gateway "router.lan" is not an IPv4 or IPv6 address');
    expect(() => new PortMapper({ gateway: GATEWAY, internalPort: 0 })).toThrow('PortMapper: internalPort 0 is not a port number (1–65535)');
    expect(() => new PortMapper({ gateway: GATEWAY, internalPort: 1, lifetime: 0 })).toThrow('PortMapper: lifetime 0 is not a number of seconds');
    expect(() => new PortMapper({ gateway: GATEWAY, internalPort: 1, localAddress: 'fd00::2' })).toThrow('PortMapper: localAddress "fd00::2" is not an IPv4 address like the gateway 10.1.0.1');
  });
});
