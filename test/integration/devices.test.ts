/**
 * A stock WireGuard device (Debian's wireguard-go, standing in for a phone's WireGuard app) joins
 * the mesh through a gateway, configured from nothing but `keymesh device add`'s output.
 *
 *   public network 203.0.113.0/24: LH .1 (lighthouse), core .254 (a router, as the internet's)
 *                                   ┌────────────┴────────────┐
 *                                   r1 (NAT)                  r2 (NAT)        (netns/mesh-lab.ts)
 *                                   │ 10.1.0/24               │ 10.2.0/24
 *                                   gw .2 (keymesh)           m2 .2 (keymesh)
 *                                   │ lan1 192.168.77.1       subnets 10.99.200.0/24, fd99:0:0:c8::/64 → gw
 *                                   phone 192.168.77.2 (wireguard-go; tunnel 10.99.200.1, fd99:0:0:c8::1)
 *
 * The phone reaches m2 two hops away (phone → gw → NAT → m2, the gw–m2 session set up through
 * the lighthouse), and by name through the resolver its config names (m2.mesh, and m2 with its
 * search domain); m2 reaches the phone; m2 finds phone.gw by name through the lighthouse; the QR
 * code decodes to the printed configuration; the phone cannot leave the mesh through the gateway
 * (deviceOutsideMesh); `device remove` ends its traffic at once.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseWgQuick } from '../../src/config/wgquick.js';
import { canRunNetns, Lab, sh, sleep, uapiSocket, waitFor } from '../../netns/lib.js';
import { km, meshLab, MESH_LH } from '../../netns/mesh-lab.js';

const skip = canRunNetns() ?? (existsSync('/usr/bin/wireguard-go') ? null : 'no /usr/bin/wireguard-go') ?? (existsSync('/usr/bin/zbarimg') ? null : 'no zbarimg (zbar-tools)');
let lab: Lab | null = null;
/** /etc/netns/NS directories a test made (the phone's resolv.conf), removed after it. */
const etcDirs: string[] = [];
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
  for (const d of etcDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * The terminal's QR code (qrcode's utf8 rendering: each character two modules high, █ ▀ ▄ or a
 * space) as a PBM image, 8 pixels a module, for zbarimg.
 */
function terminalQrToPbm(qr: string): string {
  const rows = qr.split('\n').filter((r) => r.length > 0);
  const width = Math.max(...rows.map((r) => [...r].length));
  const px: number[][] = [];
  for (const r of rows) {
    const chars = [...r];
    const top: number[] = [];
    const bottom: number[] = [];
    for (let i = 0; i < width; i++) {
      const c = chars[i] ?? ' ';
      top.push(c === '█' || c === '▀' ? 1 : 0);
      bottom.push(c === '█' || c === '▄' ? 1 : 0);
    }
    px.push(top, bottom);
  }
  const S = 8;
  const lines = [`P1`, `${width * S} ${px.length * S}`];
  for (const row of px) {
    const line = row.flatMap((v) => new Array<number>(S).fill(v)).join(' ');
    for (let k = 0; k < S; k++) lines.push(line);
  }
  return lines.join('\n') + '\n';
}

function pings(l: Lab, ns: string, to: string, count: number, waitS = 1): number {
  try {
    const out = l.exec(ns, ['ping', ...(to.includes(':') ? ['-6'] : []), '-c', String(count), '-i', '0.2', '-W', String(waitS), to]);
    return Number(/(\d+) received/.exec(out)?.[1] ?? 0);
  } catch (e) {
    return Number(/(\d+) received/.exec(String((e as { stdout?: string }).stdout ?? ''))?.[1] ?? 0);
  }
}

/** ms until `to` first answers a ping from `ns` (one ping at a time, 1 s each), Infinity after `limitMs`. */
async function firstAnswer(l: Lab, ns: string, to: string, limitMs: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < limitMs) {
    if (pings(l, ns, to, 1) === 1) return Date.now() - t0;
    await sleep(50);
  }
  return Infinity;
}

describe.skipIf(skip)(`a phone through a gateway${skip ? ` — skipped: ${skip}` : ''}`, () => {
  it('wireguard-go configured from `keymesh device add` reaches a member two hops away; QR decodes; name published; no way out; remove ends it', async () => {
    lab = new Lab();
    const l = meshLab(lab);
    const gw = l.member(1, 'gw', { subnets: '10.99.200.0/24,fd99:0:0:c8::/64' });
    writeFileSync(gw.conf, readFileSync(gw.conf, 'utf8').replace('[Interface]\n', '[Interface]\nDevices = gw.devices\n'));
    const m2 = l.member(2);
    const phoneNs = lab.netns('phone');
    lab.link(phoneNs, 'eth0', ['192.168.77.2/24'], gw.ns, 'lan1', ['192.168.77.1/24']);
    await l.up(l.lh);
    await l.up(gw);
    await l.up(m2);

    // forwarding is on for the gateway's interface, and only there
    const sysctl = (k: string) => lab!.exec(gw.ns, ['sysctl', '-n', k]).trim();
    expect(sysctl(`net.ipv4.conf.${gw.ifname}.forwarding`)).toBe('1');
    expect(sysctl(`net.ipv6.conf.${gw.ifname}.force_forwarding`)).toBe('1');
    expect(sysctl('net.ipv4.conf.eth0.forwarding')).toBe('0');
    expect(sysctl('net.ipv4.conf.all.forwarding')).toBe('0');
    expect(sysctl('net.ipv6.conf.all.forwarding')).toBe('0');

    // ── device add, as a user runs it on the gateway ──
    const png = path.join(lab.dir, 'phone-qr.png');
    const out = km(['device', 'add', 'phone', '--endpoint', '192.168.77.1:51820', '--interface', gw.ifname, '--qr-png', png]);
    const end = out.indexOf('PersistentKeepalive = 25\n') + 'PersistentKeepalive = 25\n'.length;
    const text = out.slice(0, end);
    const cfg = parseWgQuick(text, 'phone.conf');
    expect(cfg.interface.addresses.map((a) => `${a.addr}/${a.cidr}`)).toEqual(['10.99.200.1/32', 'fd99:0:0:c8::1/128']);
    expect(cfg.interface.dns).toEqual([gw.v4, gw.v6]);
    expect(cfg.interface.dnsSearch).toEqual(['mesh']);
    expect(cfg.peers[0].allowedIps.map((a) => a.text)).toEqual(['10.99.0.0/16', 'fd99::/48']);
    // the QR code in the terminal, and the PNG of the same data (0600: the private key is in it)
    expect((out.slice(end).match(/[█▀▄]/g) ?? []).length).toBeGreaterThan(500);
    expect(statSync(png).mode & 0o777).toBe(0o600);
    expect(sh('zbarimg', ['--raw', '-q', png]).replace(/\n$/, '')).toBe(text);
    const pbm = lab.file('phone-terminal-qr.pbm', terminalQrToPbm(out.slice(end)));
    expect(sh('zbarimg', ['--raw', '-q', pbm]).replace(/\n$/, ''), 'the QR code as printed in the terminal').toBe(text);
    const devicesFile = path.join(path.dirname(gw.conf), 'gw.devices');
    expect(statSync(devicesFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(devicesFile, 'utf8')).not.toContain(/^PrivateKey = (\S+)/m.exec(text)![1]);

    // ── the phone: wireguard-go, `wg setconf` with the wg-quick-only keys stripped ──
    const ph = lab.name('ph');
    lab.spawn(phoneNs, ['env', 'WG_PROCESS_FOREGROUND=1', 'wireguard-go', ph], 'wireguard-go phone');
    await waitFor('wireguard-go phone', () => existsSync(uapiSocket(ph)));
    const wgConf = lab.file('phone-wg.conf', text.split('\n').filter((line) => !/^\s*(Address|DNS)\s*=/i.test(line)).join('\n'));
    lab.exec(phoneNs, ['wg', 'setconf', ph, wgConf]);
    for (const a of cfg.interface.addresses) lab.exec(phoneNs, ['ip', 'addr', 'add', `${a.addr}/${a.cidr}`, 'dev', ph, ...(a.family === 6 ? ['nodad'] : [])]);
    lab.exec(phoneNs, ['ip', 'link', 'set', ph, 'up']);
    for (const a of cfg.peers[0].allowedIps) lab.exec(phoneNs, ['ip', `-${a.family}`, 'route', 'add', a.text, 'dev', ph]);

    // two hops: phone → gw (decrypt, forward) → m2 behind its NAT (the session set up through the lighthouse)
    const v4Ms = await firstAnswer(lab, phoneNs, m2.v4, 15_000);
    expect(v4Ms, `phone → m2 ${m2.v4}\n${lab.logs()}`).toBeLessThan(15_000);
    expect(pings(lab, phoneNs, m2.v4, 5)).toBe(5);
    const v6Ms = await firstAnswer(lab, phoneNs, m2.v6, 10_000);
    expect(v6Ms, `phone → m2 ${m2.v6}`).toBeLessThan(10_000);
    // and the other way: m2 routes the gateway's subnet to it (its certificate's subnets are its allowed IPs)
    expect(pings(lab, m2.ns, '10.99.200.1', 3)).toBe(3);
    expect(pings(lab, m2.ns, 'fd99:0:0:c8::1', 3)).toBe(3);
    console.log(`phone → m2: first answer after ${v4Ms} ms (IPv4), ${v6Ms} ms more (IPv6)`);

    // by name, as the phone's WireGuard app does it: the DNS = line of its config (the gateway's
    // resolver, the mesh domain as search domain) becomes its resolv.conf
    const etc = `/etc/netns/${phoneNs}`;
    mkdirSync(etc, { recursive: true });
    etcDirs.push(etc);
    writeFileSync(`${etc}/resolv.conf`, `nameserver ${cfg.interface.dns[0]}\nsearch ${cfg.interface.dnsSearch.join(' ')}\noptions timeout:2 attempts:2\n`);
    const byName = lab.exec(phoneNs, ['getent', 'ahostsv4', 'm2']);
    expect(byName.split(/\s+/)[0], byName).toBe(m2.v4);
    expect(lab.exec(phoneNs, ['getent', 'hosts', 'm2.mesh'])).toMatch(new RegExp(`^(${m2.v4.replace(/\./g, '\\.')}|${m2.v6})\\s`));
    expect(pings(lab, phoneNs, 'm2.mesh', 3), 'phone → m2 by name').toBe(3);

    // the device's name, mesh-wide through the lighthouse: phone.gw is held by the gateway
    const named = km(['ping', 'phone.gw', '-c', '3', '--interface', m2.ifname]);
    expect(named).toMatch(/pong from gw \(10\.99\./);
    let unknown = '';
    try {
      km(['ping', 'tablet.gw', '-c', '1', '--interface', m2.ifname]);
    } catch (e) {
      unknown = String((e as { stdout?: string }).stdout);
    }
    expect(unknown).toMatch(/no such name/);
    expect(l.show(l.lh).stats.lighthouse.namesRefused).toBe(0);

    const listed = km(['device', 'list', '--interface', gw.ifname]);
    expect(listed).toMatch(/^phone\.gw\.mesh\s+10\.99\.200\.1, fd99:0:0:c8::1\s+\S{44}\s+\d+ s ago$/m);

    // no way out of the mesh, whatever the host does: make the gateway's host a router that
    // forwards and NATs everything (its uplink forwards too, r1 routes the subnet back to it), so
    // that only keymesh's rule stands between the phone and the public network, both ways
    const r1 = `km-${lab.id}-r1`;
    lab.exec(gw.ns, ['sysctl', '-qw', 'net.ipv4.conf.eth0.forwarding=1']);
    lab.exec(gw.ns, ['nft', '-f', '-'], 'table ip kmgw { chain post { type nat hook postrouting priority 100; oifname "eth0" ip saddr 10.99.200.0/24 masquerade; }; }');
    lab.exec(r1, ['ip', 'route', 'add', '10.99.200.0/24', 'via', '10.1.0.2']);
    const gwKey = cfg.peers[0].publicKey;
    lab.exec(phoneNs, ['wg', 'set', ph, 'peer', Buffer.from(gwKey).toString('base64'), 'allowed-ips', '10.99.0.0/16,fd99::/48,203.0.113.0/24']);
    lab.exec(phoneNs, ['ip', 'route', 'add', `${MESH_LH}/32`, 'dev', ph]);
    const before = l.show(gw).stats.drops.deviceOutsideMesh;
    expect(pings(lab, phoneNs, MESH_LH, 3), 'phone → the public network through the gateway').toBe(0);
    expect(pings(lab, r1, '10.99.200.1', 3), "the gateway's LAN → the phone").toBe(0);
    expect(l.show(gw).stats.drops.deviceOutsideMesh - before).toBeGreaterThanOrEqual(6);
    expect(pings(lab, phoneNs, m2.v4, 2)).toBe(2); // the mesh still works

    // ── device remove: its traffic ends at once ──
    // a 10 ms ping train runs across the removal; its last reply is timed against the command
    const train = lab.spawn(phoneNs, ['ping', '-D', '-n', '-i', '0.01', '-W', '1', m2.v4], 'ping train');
    await sleep(500);
    const removeAt = Date.now();
    expect(km(['device', 'remove', 'phone', '--interface', gw.ifname])).toMatch(/removed/);
    const removedAt = Date.now();
    await sleep(500);
    await train.stop('SIGINT');
    const replies = [...train.output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Number(m[1]) * 1000);
    expect(replies.filter((t) => t < removeAt).length, train.output.slice(0, 500)).toBeGreaterThan(10);
    const last = Math.max(...replies);
    expect(last).toBeLessThan(removedAt + 5);
    console.log(`device remove: the command took ${removedAt - removeAt} ms; the last reply came ${Math.round(last - removeAt)} ms after it started; none after`);
    expect(pings(lab, phoneNs, m2.v4, 5)).toBe(0);
    expect(l.show(gw).peers.some((p: { device?: boolean }) => p.device)).toBe(false);
    expect(readFileSync(devicesFile, 'utf8')).not.toMatch(/phone/);
    expect(km(['device', 'list', '--interface', gw.ifname])).toMatch(/^no devices/);
    await sleep(600); // past the lighthouse's lookup interval for that name
    let gone = '';
    try {
      km(['ping', 'phone.gw', '-c', '1', '--interface', m2.ifname]);
    } catch (e) {
      gone = String((e as { stdout?: string }).stdout);
    }
    expect(gone).toMatch(/no such name/);
  }, 90_000);
});
