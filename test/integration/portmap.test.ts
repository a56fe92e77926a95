/**
 * Port mapping with NAT-PMP and PCP through a real NAT router, in network namespaces (topology:
 * netns/portmap.ts): the responder runs in the router and turns mappings into nftables DNAT
 * rules; a driver in the LAN host binds a UDP port and maps it with the PortMapper from dist/;
 * the outside host sends unsolicited datagrams to the router's WAN address.
 *
 * One lab for the file; each scenario starts its own responder and driver. What was measured
 * (time to mapping, renewal intervals, time to deletion, time to give up) is printed.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { canRunNetns, Lab, REPO, sleep, waitFor, type Proc } from '../../netns/lib.js';
import { PORTMAP_ADDR, portmapTopology } from '../../netns/portmap.js';

const skip = canRunNetns();
const RESPONDER = path.join(REPO, 'dist', 'netns', 'portmap-responder.js');
const DRIVER = path.join(REPO, 'dist', 'netns', 'portmap-driver.js');
const PORT = 51820;

interface Event {
  event: string;
  t: number;
  [k: string]: unknown;
}

function events(p: Proc): Event[] {
  return p.output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Event);
}

const of = (p: Proc, name: string) => events(p).filter((e) => e.event === name);

/** Send three datagrams carrying `token`, 50 ms apart, from the outside host's `srcPort`. */
const SEND = `
const s=require('dgram').createSocket('udp4');
s.bind(Number(process.argv[4]),()=>{let n=0;const go=()=>{s.send(process.argv[3],Number(process.argv[2]),process.argv[1]);if(++n<3)setTimeout(go,50);else setTimeout(()=>s.close(),20)};go()});`;

const LISTEN = `
const s=require('dgram').createSocket('udp4');
s.on('message',(m,r)=>console.log(JSON.stringify({event:'datagram',t:0,from:r.address+':'+r.port,data:m.toString()})));
s.bind(Number(process.argv[1]),()=>console.log(JSON.stringify({event:'ready',t:0})));`;

describe.skipIf(skip)('port mapping (NAT-PMP, PCP) through a NAT router', () => {
  let lab: Lab;
  let t: ReturnType<typeof portmapTopology>;
  let nextSrcPort = 40001;

  beforeAll(() => {
    lab = new Lab();
    t = portmapTopology(lab);
  });

  afterAll(async () => {
    await lab?.cleanup();
  });

  /** Each scenario's responders and drivers, stopped after it, failed or not. */
  const running: Proc[] = [];
  afterEach(async () => {
    for (const p of running.splice(0)) await p.stop();
  });

  async function responder(...flags: string[]): Promise<Proc> {
    const p = lab.spawn(t.router, [process.execPath, RESPONDER, '--wan', t.wanIf, '--lan-addr', PORTMAP_ADDR.gateway, ...flags], `responder ${flags.join(' ')}`);
    running.push(p);
    await waitFor('the responder to listen', () => {
      if (!p.running) throw new Error(`responder exited:\n${p.output}`);
      return of(p, 'listening').length > 0;
    });
    return p;
  }

  async function driver(...flags: string[]): Promise<Proc> {
    const p = lab.spawn(t.lan, [process.execPath, DRIVER, '--port', String(PORT), ...flags], `driver ${flags.join(' ')}`);
    running.push(p);
    await waitFor('the driver to start mapping', () => {
      if (!p.running) throw new Error(`driver exited:\n${p.output}`);
      return of(p, 'start').length > 0;
    });
    return p;
  }

  /** Datagrams from outside to WAN:port; true if `listener` printed them within `ms`. */
  async function reaches(listener: Proc, externalPort: number, ms = 1000, srcPort = nextSrcPort++): Promise<boolean> {
    const token = `probe-${srcPort}-${Date.now()}`;
    lab.exec(t.outside, [process.execPath, '-e', SEND, PORTMAP_ADDR.wan, String(externalPort), token, String(srcPort)]);
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (of(listener, 'datagram').some((e) => e.data === token)) return true;
      await sleep(25);
    }
    return false;
  }

  const rules = () => lab.exec(t.router, ['nft', 'list', 'ruleset']);
  const dnatRule = `udp dport ${PORT} dnat ip to ${PORTMAP_ADDR.host}:${PORT}`;

  it('without a mapping, an unsolicited datagram to the WAN address is dropped', async () => {
    const listener = lab.spawn(t.lan, [process.execPath, '-e', LISTEN, String(PORT)], 'listener');
    await waitFor('listener', () => of(listener, 'ready').length > 0);
    expect(await reaches(listener, PORT, 800)).toBe(false);
    await listener.stop();
  });

  it('PCP: maps, lets unsolicited datagrams in, renews at about half the lifetime, deletes on stop', async () => {
    const r = await responder();
    const d = await driver('--lifetime', '4');
    await waitFor('a mapping', () => of(d, 'mapped').length > 0, 5000);
    const start = of(d, 'start')[0];
    const first = of(d, 'mapped')[0];
    expect(first).toMatchObject({ protocol: 'pcp', gateway: PORTMAP_ADDR.gateway, externalAddress: PORTMAP_ADDR.wan, externalPort: PORT, lifetime: 4 });
    const timeToMapping = first.t - start.t;
    expect(timeToMapping).toBeLessThan(1000);
    expect(rules()).toContain(dnatRule);
    const keptSrc = nextSrcPort++;
    expect(await reaches(d, PORT, 1000, keptSrc), lab.logs()).toBe(true);

    // Renewals: two, each at 1/2–5/8 of the 4 s lifetime; the mapping outlives its first lifetime.
    await waitFor('two renewals', () => of(d, 'mapped').length >= 3, 8000);
    const at = of(d, 'mapped').map((e) => e.t);
    const intervals = at.slice(1).map((x, i) => x - at[i]);
    for (const i of intervals) {
      expect(i).toBeGreaterThanOrEqual(1900);
      expect(i).toBeLessThanOrEqual(2700);
    }
    expect(of(r, 'refresh').length).toBeGreaterThanOrEqual(2);
    expect(of(r, 'add')).toHaveLength(1);
    expect(at[at.length - 1] - first.t).toBeGreaterThan(3500);
    expect(rules()).toContain(dnatRule);
    expect(await reaches(d, PORT)).toBe(true);

    // stop(): the delete goes out, the rule and its flows go, and the same sender no longer gets through.
    const signalled = Date.now();
    process.kill(d.child.pid!, 'SIGUSR1');
    await waitFor('the driver to stop', () => of(d, 'stopped').length > 0, 3000);
    await waitFor('the responder to delete', () => of(r, 'delete').length > 0, 3000);
    const deletedAfter = Date.now() - signalled;
    expect(of(r, 'delete')[0]).toMatchObject({ via: 'pcp', external: `${PORTMAP_ADDR.wan}:${PORT}` });
    expect(rules()).not.toContain('dnat ip to');
    expect(await reaches(d, PORT, 800, keptSrc)).toBe(false);
    expect(await reaches(d, PORT, 500)).toBe(false);
    console.log(
      `portmap netns (PCP): mapped ${timeToMapping} ms after start; renewals every ${intervals.join(', ')} ms (lifetime 4 s); ` +
        `deleted ${deletedAfter} ms after stop(); ${of(r, 'request').length} requests in all`,
    );
    await d.stop();
    await r.stop();
  });

  it('NAT-PMP-only router: falls back at once, maps, and maps again when the router restarts', async () => {
    let r = await responder('--nat-pmp-only');
    const d = await driver();
    await waitFor('a mapping', () => of(d, 'mapped').length > 0, 5000);
    const first = of(d, 'mapped')[0];
    expect(first).toMatchObject({ protocol: 'nat-pmp', externalAddress: PORTMAP_ADDR.wan, externalPort: PORT });
    const timeToMapping = first.t - of(d, 'start')[0].t;
    expect(of(r, 'request').map((e) => e.note)).toEqual([
      'PCP request → NAT-PMP Unsupported Version (1)',
      `NAT-PMP external address → ${PORTMAP_ADDR.wan}`,
      `NAT-PMP map udp ${PORTMAP_ADDR.host}:${PORT} → Success (0)`,
    ]);
    expect(await reaches(d, PORT)).toBe(true);

    // The router restarts: its mappings (and flows) are gone until the client, told by the
    // announcement, maps again. Not at once: the client sees a restart only when the epoch is
    // more than 2 s below its estimate (RFC 6886 §3.6), so the router must have been up a while.
    await sleep(3000);
    await r.stop();
    expect(rules()).not.toContain('kmportmap');
    const restarted = Date.now();
    r = await responder('--nat-pmp-only');
    await waitFor('a mapping again', () => of(d, 'mapped').length >= 2, 8000).catch((e) => {
      throw new Error(`${e.message}\n${lab.logs()}`);
    });
    const remapAfter = Date.now() - restarted;
    expect(of(d, 'log').some((e) => String(e.line).includes('lost its mappings'))).toBe(true);
    expect(rules()).toContain(dnatRule);
    expect(await reaches(d, PORT)).toBe(true);
    console.log(`portmap netns (NAT-PMP): mapped ${timeToMapping} ms after start (PCP tried first); mapped again ${remapAfter} ms after the router restarted`);
    await d.stop();
    await r.stop();
  });

  it('a refusing router: the refusal is reported at once, and not asked again', async () => {
    const r = await responder('--refuse');
    const d = await driver();
    await waitFor('a refusal', () => of(d, 'lost').length > 0, 3000);
    const lost = of(d, 'lost')[0];
    expect(String(lost.reason)).toBe(`${PORTMAP_ADDR.gateway} refused the mapping: NOT_AUTHORIZED (2) (PCP)`);
    const refusedAfter = lost.t - of(d, 'start')[0].t;
    expect(refusedAfter).toBeLessThan(1000);
    await sleep(3000);
    expect(of(r, 'request')).toHaveLength(1);
    expect(of(d, 'lost')).toHaveLength(1);
    expect(of(d, 'mapped')).toHaveLength(0);
    console.log(`portmap netns (refused): NOT_AUTHORIZED reported ${refusedAfter} ms after start; 1 request in 3 s`);
    await d.stop();
    await r.stop();
  });

  it('no responder: ends at the ICMP port unreachable; a router that drops the requests: gives up within the bound', async () => {
    const d = await driver();
    await waitFor('the give-up', () => of(d, 'lost').length > 0, 6000);
    const icmp = of(d, 'lost')[0];
    expect(String(icmp.reason)).toContain('ICMP port unreachable');
    const icmpAfter = icmp.t - of(d, 'start')[0].t;
    await d.stop();

    lab.exec(t.router, ['nft', '-f', '-'], 'table inet kmsilent { chain in { type filter hook input priority -10; udp dport 5351 drop; }; }');
    const s = await driver('--give-up-ms', '4000');
    await waitFor('the give-up', () => of(s, 'lost').length > 0, 8000);
    const silent = of(s, 'lost')[0];
    expect(String(silent.reason)).toBe(`no PCP or NAT-PMP answer from ${PORTMAP_ADDR.gateway}:5351 within 4 s`);
    const silentAfter = silent.t - of(s, 'start')[0].t;
    expect(silentAfter).toBeGreaterThanOrEqual(3900);
    expect(silentAfter).toBeLessThan(4600);
    expect(of(s, 'log')).toHaveLength(1);
    lab.exec(t.router, ['nft', 'delete', 'table', 'inet', 'kmsilent']);
    console.log(`portmap netns (no answer): port unreachable ended it after ${icmpAfter} ms; a silent router was given up after ${silentAfter} ms (bound 4000)`);
    await s.stop();
  });
});
