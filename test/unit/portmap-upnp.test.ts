/**
 * The UpnpMapper against an in-memory IGD (support/upnp-fakes.ts) on a virtual clock: discovery
 * and mapping, renewal at half the lease, the lease-0 fallback (725), conflicts (718), refusal,
 * silence, a device that hangs, stop with and without a mapping, hostile answers, and a fuzz
 * loop over malformed answers that must end in a mapping or a failure, never a hang or a throw.
 */
import { describe, expect, it } from 'vitest';
import { UpnpMapper, type UpnpMapperOptions } from '../../src/io/portmap/upnp.js';
import type { PortMapping } from '../../src/io/portmap/client.js';
import { CLIENT, FakeClock, GATEWAY, WAN } from './support/portmap-fakes.js';
import { FakeIgd, LOCATION } from './support/upnp-fakes.js';

const IGD1 = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1';
const WANIP1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';

function setup(opts: Partial<UpnpMapperOptions> = {}, igdSetup: (igd: FakeIgd) => void = () => {}) {
  const clock = new FakeClock();
  const igd = new FakeIgd(clock);
  igdSetup(igd);
  const mapped: PortMapping[] = [];
  const lost: Array<{ at: number; reason: string }> = [];
  const logs: string[] = [];
  const um = new UpnpMapper({
    gateway: GATEWAY,
    internalPort: 51820,
    transport: igd.transport,
    clock,
    random: () => 0.5,
    onMapped: (m) => mapped.push(m),
    onLost: (reason) => lost.push({ at: clock.now(), reason }),
    log: (line) => logs.push(line),
    ...opts,
  });
  return { clock, igd, um, mapped, lost, logs };
}

describe('UpnpMapper', () => {
  it('searches (multicast and unicast, IGD and WANIPConnection), reads the description, and maps our port for 3600 s', async () => {
    const { clock, igd, um, mapped, lost, logs } = setup();
    um.start();
    await clock.run(50);
    expect(igd.seen).toEqual([
      `search multicast ${IGD1}`,
      `search unicast ${IGD1}`,
      `search multicast ${WANIP1}`,
      `search unicast ${WANIP1}`,
      'GET /rootDesc.xml',
      'GetExternalIPAddress',
      'AddPortMapping 51820 3600',
    ]);
    expect(mapped).toHaveLength(1);
    expect(mapped[0]).toMatchObject({ protocol: 'upnp', gateway: GATEWAY, internalPort: 51820, externalAddress: WAN, externalPort: 51820, lifetime: 3600 });
    expect(mapped[0].expiresAt - mapped[0].expiresAt % 1000).toBeGreaterThanOrEqual(3_600_000);
    expect(igd.mappings.get(51820)).toEqual({ client: CLIENT, internalPort: 51820, lease: 3600 });
    expect(um.state).toBe('mapped');
    expect(lost).toEqual([]);
    expect(logs).toEqual([`upnp: udp 51820 mapped to ${WAN}:51820 for 3600 s by ${GATEWAY} (UPnP WANIPConnection:2)`]);
    // the second search (500 ms) does not go out: discovery ended with the first answer
    await clock.run(1000);
    expect(igd.seen.filter((s) => s.startsWith('search'))).toHaveLength(4);
  });

  it('renews at half the lease with the same port, quietly; the device is not searched for again', async () => {
    const { clock, igd, um, mapped, logs } = setup();
    um.start();
    await clock.run(50);
    igd.seen.length = 0;
    await clock.run(1_800_000);
    expect(igd.seen).toEqual(['GetExternalIPAddress', 'AddPortMapping 51820 3600']);
    await clock.run(1_800_000);
    expect(igd.seen).toEqual(['GetExternalIPAddress', 'AddPortMapping 51820 3600', 'GetExternalIPAddress', 'AddPortMapping 51820 3600']);
    expect(mapped).toHaveLength(3);
    expect(mapped[2].expiresAt).toBeGreaterThan(3_600_000 + 3_600_000);
    expect(logs).toHaveLength(1);
    expect(um.state).toBe('mapped');
  });

  it('an IGD:1 router that takes only permanent leases (725): maps with lease 0, rechecks every 30 min, deletes on stop', async () => {
    const { clock, igd, um, mapped, logs } = setup({}, (g) => {
      g.serviceType = WANIP1;
      g.permanentOnly = true;
    });
    um.start();
    await clock.run(50);
    expect(igd.seen.slice(-3)).toEqual(['GetExternalIPAddress', 'AddPortMapping 51820 3600', 'AddPortMapping 51820 0']);
    expect(mapped).toMatchObject([{ protocol: 'upnp', externalPort: 51820, lifetime: 0, expiresAt: Number.POSITIVE_INFINITY }]);
    expect(logs).toEqual([
      `upnp: ${GATEWAY} takes only permanent mappings (OnlyPermanentLeasesSupported, 725); asking with lease 0, deleted on stop`,
      `upnp: udp 51820 mapped to ${WAN}:51820 permanently (lease 0) by ${GATEWAY} (UPnP WANIPConnection:1)`,
    ]);
    await clock.run(30 * 60_000);
    expect(igd.seen.slice(-2)).toEqual(['GetExternalIPAddress', 'AddPortMapping 51820 0']); // no second 725
    const stopped = um.stop();
    await clock.run(50);
    await stopped;
    expect(igd.seen.at(-1)).toBe('DeletePortMapping 51820');
    expect(igd.mappings.size).toBe(0);
    expect(igd.holds).toBe(1); // the delete holds the process open until answered
  });

  it('a port held by another client (718): another port, then that one is kept on renewal; all taken: a refusal', async () => {
    const { clock, igd, um, mapped } = setup({}, (g) => g.taken.add(51820));
    um.start();
    await clock.run(50);
    expect(igd.seen.filter((s) => s.startsWith('Add'))).toEqual(['AddPortMapping 51820 3600', 'AddPortMapping 33280 3600']);
    expect(mapped).toMatchObject([{ externalPort: 33280 }]);
    expect(um.stats.conflicts).toBe(1);
    await clock.run(1_800_000);
    expect(igd.seen.at(-1)).toBe('AddPortMapping 33280 3600');

    const s = setup({}, (g) => [51820, 33280, 33281, 33282].forEach((p) => g.taken.add(p)));
    s.um.start();
    await s.clock.run(50);
    expect(s.igd.seen.filter((x) => x.startsWith('Add'))).toEqual(['AddPortMapping 51820 3600', 'AddPortMapping 33280 3600', 'AddPortMapping 33281 3600', 'AddPortMapping 33282 3600']);
    expect(s.lost.map((l) => l.reason)).toEqual([`${GATEWAY} refused the mapping: every external port tried (51820, 33280, 33281, 33282) is taken, ConflictInMappingEntry (718)`]);
  });

  it('a refusal (606): one onLost and one log line, asked again in 30 min, the same reason not logged again', async () => {
    const { clock, igd, um, lost, logs } = setup({}, (g) => (g.refuse = 606));
    um.start();
    await clock.run(50);
    const reason = `${GATEWAY} refused the mapping: Action not authorized (606) (UPnP WANIPConnection:2)`;
    expect(lost).toEqual([{ at: 4, reason }]); // answers take 1 ms: search, GET, GetExternalIPAddress, AddPortMapping
    expect(logs).toEqual([`upnp: ${reason}; trying again in 30 min`]);
    expect(um.state).toBe('failed');
    await clock.run(29 * 60_000);
    expect(igd.seen.filter((s) => s.startsWith('Add'))).toHaveLength(1);
    await clock.run(60_000);
    expect(igd.seen.filter((s) => s.startsWith('Add'))).toHaveLength(2);
    expect(lost).toHaveLength(2);
    expect(logs).toHaveLength(1);
  });

  it('no IGD answers: given up after 2 s (one repeat of the search at 500 ms), one line; quietLoss leaves the line to the caller', async () => {
    const { clock, igd, um, lost, logs } = setup({}, (g) => (g.silent = true));
    um.start();
    await clock.run(5000);
    expect(igd.seen).toHaveLength(8);
    expect(lost).toEqual([{ at: 2000, reason: `no UPnP IGD answered an SSDP search from ${CLIENT} within 2 s` }]);
    expect(logs).toEqual([`upnp: no UPnP IGD answered an SSDP search from ${CLIENT} within 2 s; trying again in 30 min`]);

    const q = setup({ quietLoss: true }, (g) => (g.silent = true));
    q.um.start();
    await q.clock.run(5000);
    expect(q.lost).toHaveLength(1);
    expect(q.logs).toEqual([]);
  });

  it('a device that accepts HTTP and never answers: the round ends within its bound, and stop() within 1 s', async () => {
    const { clock, igd, um, lost } = setup({}, (g) => (g.hang = true));
    um.start();
    await clock.run(10_000);
    expect(lost).toEqual([{ at: 2501, reason: `its description ${LOCATION}: no answer within 2000 ms` }]);
    expect(igd.seen).toContain('GET /rootDesc.xml (hangs)');

    // mapped, then the device hangs: renewals fail but the mapping holds until its lease ends
    const s = setup();
    s.um.start();
    await s.clock.run(50);
    s.igd.hang = true;
    await s.clock.run(1_800_000 + 3000);
    expect(s.um.state).toBe('mapped');
    expect(s.logs.at(-1)).toBe('upnp: renewing the mapping failed (GetExternalIPAddress at http://10.1.0.1:5000/ctl/IPConn: no answer within 2000 ms); it holds until its lease ends');
    await s.clock.run(1_800_000);
    expect(s.lost).toHaveLength(1);
    expect(s.lost[0].reason).toMatch(/^the mapping expired: /);
    expect(s.um.mapping).toBeNull();
    // a hanging delete does not hold stop() past its bound
    const t0 = s.clock.now();
    let done = false;
    void s.um.stop().then(() => (done = true));
    await s.clock.run(1100);
    expect(done).toBe(true);
    expect(s.clock.now() - t0).toBeLessThanOrEqual(1100);
  });

  it('stop(): deletes the mapping; before any mapping sends nothing; during an AddPortMapping deletes after it', async () => {
    const { clock, igd, um } = setup();
    um.start();
    await clock.run(50);
    await Promise.all([um.stop(), clock.run(10)]);
    expect(igd.seen.at(-1)).toBe('DeletePortMapping 51820');
    expect(um.state).toBe('stopped');

    const s = setup({}, (g) => (g.silent = true));
    s.um.start();
    await s.clock.run(100);
    await Promise.all([s.um.stop(), s.clock.run(10)]);
    expect(s.igd.seen.every((x) => x.startsWith('search'))).toBe(true);
    await s.clock.run(5000);
    expect(s.lost).toEqual([]); // a stopped mapper reports nothing more

    const f = setup();
    f.um.start();
    await f.clock.run(3.5); // the AddPortMapping is on its way (the IGD takes 1 ms to act on each request)
    expect(f.igd.seen.at(-1)).toBe('GetExternalIPAddress');
    await Promise.all([f.um.stop(), f.clock.run(20)]);
    expect(f.igd.seen.slice(-2)).toEqual(['AddPortMapping 51820 3600', 'DeletePortMapping 51820']);
    expect(f.igd.mappings.size).toBe(0);
    expect(f.mapped).toEqual([]);
  });

  it('hostile answers: other hosts, LOCATIONs elsewhere and garbage are counted and dropped; the real answer still wins', async () => {
    const { clock, um, mapped } = setup({}, (g) => {
      g.ssdpAnswer = () => [
        { bytes: new TextEncoder().encode(`HTTP/1.1 200 OK\r\nLOCATION: ${LOCATION}\r\n\r\n`), from: '10.1.0.66' },
        { bytes: new TextEncoder().encode('HTTP/1.1 200 OK\r\nLOCATION: http://192.0.2.1/evil.xml\r\n\r\n') },
        { bytes: Uint8Array.from([1, 2, 3, 255]) },
        { bytes: new TextEncoder().encode(`HTTP/1.1 200 OK\r\nLOCATION: ${LOCATION}\r\n\r\n`) },
      ];
    });
    um.start();
    await clock.run(50);
    expect(mapped).toHaveLength(1);
    expect(um.stats).toMatchObject({ foreign: 8, malformed: 4 }); // each of the 4 datagrams searched drew them all

    // only hostile answers: the failure says what was seen
    const h = setup({}, (g) => (g.ssdpAnswer = () => [{ bytes: new TextEncoder().encode('HTTP/1.1 200 OK\r\nLOCATION: http://192.0.2.1/evil.xml\r\n\r\n') }]));
    h.um.start();
    await h.clock.run(3000);
    expect(h.lost[0].reason).toBe(`${GATEWAY} gave a LOCATION elsewhere (http://192.0.2.1/evil.xml), not followed`);
    expect(h.igd.seen.some((s) => s.startsWith('GET'))).toBe(false);

    // an external address of 0.0.0.0 (WAN down)
    const z = setup({}, (g) => (g.externalAddress = '0.0.0.0'));
    z.um.start();
    await z.clock.run(50);
    expect(z.lost[0].reason).toBe('it has no usable external address ("0.0.0.0"): is its WAN connection up?');
  });

  it('WANPPPConnection:1 and WANIPConnection:1 devices map too', async () => {
    for (const t of ['urn:schemas-upnp-org:service:WANPPPConnection:1', WANIP1]) {
      const { clock, um, mapped } = setup({}, (g) => (g.serviceType = t));
      um.start();
      await clock.run(50);
      expect(mapped, t).toHaveLength(1);
    }
  });

  it('fuzz: 300 devices whose every HTTP answer is mutated or random end mapped or failed within 10 s, never throwing', async () => {
    let x = 12345;
    const r = () => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32);
    let mappedCount = 0;
    for (let i = 0; i < 300; i++) {
      const s = setup({}, (g) => {
        g.httpAnswer = (req) => {
          if (r() < 0.3) return null; // the real answer
          const real = { status: 200, body: req.method === 'GET' ? 'x' : '' };
          const kinds = [
            () => ({ status: [200, 500, 404, 302][Math.floor(r() * 4)], body: String.fromCharCode(...Array.from({ length: Math.floor(r() * 200) }, () => Math.floor(r() * 128))) }),
            () => ({ error: 'ECONNRESET' }),
            () => ({ status: 200, body: '<u:AddPortMappingResponse/><NewExternalIPAddress>1.2.3.</NewExternalIPAddress><serviceType>' }),
            () => ({ status: 500, body: `<UPnPError><errorCode>${Math.floor(r() * 1000)}</errorCode></UPnPError>` }),
            () => real,
          ];
          return kinds[Math.floor(r() * kinds.length)]();
        };
      });
      s.um.start();
      await s.clock.run(10_000);
      expect(['mapped', 'failed'], `case ${i}`).toContain(s.um.state);
      if (s.um.state === 'mapped') mappedCount++;
      else expect(s.lost.length, `case ${i}`).toBe(1);
      await Promise.all([s.um.stop(), s.clock.run(1100)]);
    }
    expect(mappedCount).toBeGreaterThan(0);
  });
});
