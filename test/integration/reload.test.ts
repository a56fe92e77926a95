/**
 * Changing the configuration of a running keymesh node: `keymesh reload` after editing the file,
 * and stock `wg syncconf` against keymesh and against wireguard-go side by side.
 *
 *        ns a: keymesh A 10.19.0.1 ──┐
 *        ns b: wireguard-go B  .2    ├── bridge 192.168.19.0/24
 *        ns c: wireguard-go C  .3    │
 *        ns d: wireguard-go D  .4  ──┘
 *        ns w: wireguard-go W (A's twin: same file, same `wg syncconf`; no network needed)
 *
 * (a) A runs with B and C. A paced TCP stream A→C keeps flowing while A's file loses B and gains D
 *     and `keymesh reload A` applies it: the stream ends complete and unchanged (no reset), C had
 *     no new handshake, D answers pings, B is gone (no peer, no route, no ping).
 * (b) a bad line in the file: `keymesh reload` prints FILE:LINE and exits 1; `wg show A dump` is
 *     the same before and after.
 * (c) one edited file (a peer removed, one added with a PresharedKey and keepalive, allowed IPs
 *     and keepalive of another changed) through `wg syncconf NAME <(wg-quick strip FILE)` on A
 *     and on W: the same `wg show dump` but for handshake times and byte counts; A's session
 *     with C kept.
 * (d) SIGHUP after a new ListenPort in the file: the log says the socket was restarted, A listens
 *     on the new port, and C (wireguard-go) follows it with the session it had.
 * (e) a new PrivateKey: the reload says the identity restarted and its sessions dropped; `wg show`
 *     has the new public key, and C, told the new key, handshakes anew and answers pings.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { canRunNetns, KEYMESH_BIN, Lab, ping, sleep, startKeymesh, startWireguardGo, tcpTransfer, waitFor, wgGenKeypair, wgQuickConfig, type NodeSpec } from '../../netns/lib.js';

const skip = canRunNetns() ?? (spawnSync('which', ['wireguard-go']).status === 0 ? null : 'wireguard-go is not installed');
if (skip) console.warn(`reload tests skipped: ${skip}`);

const lab = skip ? null : new Lab();
afterAll(async () => {
  await lab?.cleanup();
});

const UNDER = (i: number) => `192.168.19.${i}`;
const TUN = (i: number) => `10.19.0.${i}`;

describe.skipIf(skip)('changing the configuration of a running node', () => {
  const l = lab!;
  const keys = { a: wgGenKeypair(), b: wgGenKeypair(), c: wgGenKeypair(), d: wgGenKeypair(), e: wgGenKeypair() };
  const peerOf = (who: 'b' | 'c' | 'd', i: number) => ({ publicKey: keys[who].publicKey, allowedIps: [`${TUN(i)}/32`], endpoint: `${UNDER(i)}:51820` });
  let a: NodeSpec;
  let aProc: Awaited<ReturnType<typeof startKeymesh>>;
  let nsC: string;

  const km = (args: string[]) => spawnSync('ip', ['netns', 'exec', a.ns, process.execPath, KEYMESH_BIN, ...args], { encoding: 'utf8' });
  const dump = (ns: string, ifname: string) => l.exec(ns, ['wg', 'show', ifname, 'dump']).trim().split('\n');
  const show = () => JSON.parse(km(['show', a.ifname, '--json']).stdout) as { peers: Array<{ publicKey: string; handshakes: number; latestHandshake: number | null; persistentKeepalive: number; session: object | null }> };
  const peerIn = (s: ReturnType<typeof show>, k: string) => s.peers.find((p) => p.publicKey === k);
  const withLogs = async <T,>(f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (e) {
      (e as Error).message += `\n${l.logs()}`;
      throw e;
    }
  };

  it('(a) reload adds D and removes B while a TCP stream to C keeps running, with no new handshake with C', async () => {
    await withLogs(async () => {
      const plug = l.bridge('sw');
      const ns = { a: l.netns('a'), b: l.netns('b'), c: l.netns('c'), d: l.netns('d') };
      nsC = ns.c;
      for (const [i, who] of (['a', 'b', 'c', 'd'] as const).entries()) plug(ns[who], `e${who}`, [`${UNDER(i + 1)}/24`]);
      for (const [i, who] of (['b', 'c', 'd'] as const).entries()) {
        await startWireguardGo(l, { ns: ns[who], ifname: l.name(who), privateKey: keys[who].privateKey, listenPort: 51820, addresses: [`${TUN(i + 2)}/24`], peers: [{ publicKey: keys.a.publicKey, allowedIps: [`${TUN(1)}/32`], endpoint: `${UNDER(1)}:51820` }] });
      }
      a = { ns: ns.a, ifname: l.name('a'), privateKey: keys.a.privateKey, listenPort: 51820, addresses: [`${TUN(1)}/24`], peers: [peerOf('b', 2), peerOf('c', 3)] };
      aProc = await startKeymesh(l, a);
      expect(ping(l, ns.a, TUN(2)), 'A → B before').toBe(true);
      expect(ping(l, ns.a, TUN(3)), 'A → C before').toBe(true);
      const before = peerIn(show(), keys.c.publicKey)!;
      expect(before.handshakes).toBe(1);

      // ~6 s of stream at 512 KB/s; the reload lands in the middle of it
      const stream = tcpTransfer(l, ns.a, ns.c, TUN(3), 3 * 1024 * 1024, 5219, 512 * 1024);
      await sleep(2000);
      writeFileSync(a.configFile!, wgQuickConfig({ ...a, peers: [peerOf('c', 3), peerOf('d', 4)] }));
      const r = km(['reload', a.ifname]);
      console.log(`(a) keymesh reload:\n${r.stdout}`);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`peer ${keys.b.publicKey.slice(0, 8).replace(/[+/]/g, '.')}… removed`));
      expect(r.stdout).toMatch(new RegExp(`peer ${keys.d.publicKey.slice(0, 8).replace(/[+/]/g, '.')}… added`));
      expect(r.stdout).not.toMatch(/restarted/);
      const t = await stream;
      expect(t.received.bytes).toBe(3 * 1024 * 1024);
      expect(t.received.sha256).toBe(t.sent.sha256);
      const after = peerIn(show(), keys.c.publicKey)!;
      expect(after.handshakes, 'no new handshake with C').toBe(1);
      expect(after.latestHandshake).toBe(before.latestHandshake);
      expect(ping(l, ns.a, TUN(4)), 'A → D after').toBe(true);
      expect(peerIn(show(), keys.b.publicKey)).toBeUndefined();
      const routes = l.exec(ns.a, ['ip', 'route', 'show', 'dev', a.ifname]);
      expect(routes).toContain(`${TUN(4)} `);
      expect(routes).not.toContain(`${TUN(2)} `);
      expect(ping(l, ns.a, TUN(2), 1)).toBe(false);
      console.log(`(a) stream of 3 MiB through the reload: ${t.sent.seconds.toFixed(1)} s, sha256 equal, C handshakes ${before.handshakes} → ${after.handshakes}`);
    });
  }, 60_000);

  it('(b) a bad line: reload prints FILE:LINE, exits 1, and changes nothing', async () => {
    const good = readFileSync(a.configFile!, 'utf8');
    const lines = good.split('\n');
    const at = lines.findIndex((x) => x.startsWith('AllowedIPs')) + 1;
    lines[at - 1] = 'AllowedIPs = 10.19.0.300/32';
    const was = dump(a.ns, a.ifname);
    writeFileSync(a.configFile!, lines.join('\n'));
    const r = km(['reload', a.ifname]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${a.configFile}:${at}: AllowedIPs: "10.19.0.300/32" is not an IPv4 or IPv6 address`);
    expect(r.stderr).toMatch(/running configuration of .* is unchanged/);
    expect(dump(a.ns, a.ifname)).toEqual(was);
    writeFileSync(a.configFile!, good);
  }, 30_000);

  it('(c) `wg syncconf` with the same edited file gives keymesh and wireguard-go the same peers, allowed IPs and keepalives; the session with C is kept', async () => {
    await withLogs(async () => {
      // W: wireguard-go set up as A is now (peers C and D)
      const w: NodeSpec = { ns: l.netns('w'), ifname: l.name('w'), privateKey: keys.a.privateKey, listenPort: 51820, addresses: [`${TUN(1)}/24`], peers: [peerOf('c', 3), peerOf('d', 4)] };
      await startWireguardGo(l, w);
      const psk = spawnSync('wg', ['genpsk'], { encoding: 'utf8' }).stdout.trim();
      const edited = wgQuickConfig({
        ...a,
        peers: [
          { ...peerOf('c', 3), allowedIps: [`${TUN(3)}/32`, '10.19.3.0/24'], persistentKeepalive: 15 },
          { publicKey: keys.e.publicKey, allowedIps: [`${TUN(5)}/32`, 'fd19::5/128'], endpoint: `${UNDER(5)}:51820`, presharedKey: psk, persistentKeepalive: 25 },
        ],
      });
      // (wg-quick wants FILE to be NAME.conf with NAME a valid interface name)
      const file = l.file(`${l.name('e')}.conf`, edited);
      expect(l.exec(a.ns, ['wg-quick', 'strip', file])).toContain(keys.e.publicKey);
      const before = peerIn(show(), keys.c.publicKey)!;
      for (const [ns, ifname] of [
        [a.ns, a.ifname],
        [w.ns, w.ifname],
      ]) {
        l.exec(ns, ['bash', '-c', `wg syncconf ${ifname} <(wg-quick strip ${file} 2>/dev/null)`]);
      }
      // peers: public key, preshared key, endpoint, allowed IPs (as a set), keepalive; not handshakes or counters
      const norm = (lines: string[]) => {
        const [iface, ...peers] = lines;
        const f = iface.split('\t');
        return {
          iface: [f[0], f[1], f[2], f[3]],
          peers: peers
            .map((p) => p.split('\t'))
            .map((q) => [q[0], q[1], q[2], q[3].split(',').sort().join(','), q[7]])
            .sort((x, y) => x[0].localeCompare(y[0])),
        };
      };
      await waitFor('both devices applied', () => dump(w.ns, w.ifname).length === 3);
      const km_ = norm(dump(a.ns, a.ifname));
      const go = norm(dump(w.ns, w.ifname));
      console.log(`(c) after wg syncconf:\n keymesh      ${JSON.stringify(km_.peers)}\n wireguard-go ${JSON.stringify(go.peers)}`);
      expect(km_).toEqual(go);
      expect(km_.peers.map((p) => p[0]).sort()).toEqual([keys.c.publicKey, keys.e.publicKey].sort());
      expect(km_.peers.find((p) => p[0] === keys.c.publicKey)![3]).toBe(`10.19.0.3/32,10.19.3.0/24`);
      // A's session with C lives on: no new handshake, traffic flows
      const after = peerIn(show(), keys.c.publicKey)!;
      expect(after.handshakes).toBe(before.handshakes);
      expect(after.latestHandshake).toBe(before.latestHandshake);
      expect(after.persistentKeepalive).toBe(15);
      expect(ping(l, a.ns, TUN(3)), 'A → C after syncconf').toBe(true);
      expect(peerIn(show(), keys.c.publicKey)!.handshakes).toBe(before.handshakes);
    });
  }, 40_000);

  it('(d) SIGHUP with a new ListenPort: a new socket, said in the log; C follows with its session', async () => {
    await withLogs(async () => {
      const before = peerIn(show(), keys.c.publicKey)!;
      const text = readFileSync(a.configFile!, 'utf8').replace('ListenPort = 51820', 'ListenPort = 51830');
      writeFileSync(a.configFile!, text);
      process.kill(aProc.child.pid!, 'SIGHUP');
      await waitFor('the SIGHUP reload', () => /reloaded \(SIGHUP\), with a restart: restarted the UDP socket: ListenPort changed 51820 → 51830/.test(aProc.output), 5000);
      expect(l.exec(a.ns, ['wg', 'show', a.ifname, 'listen-port']).trim()).toBe('51830');
      expect(ping(l, a.ns, TUN(3)), 'A → C on the new port').toBe(true);
      const after = peerIn(show(), keys.c.publicKey)!;
      expect(after.handshakes).toBe(before.handshakes);
      // C's view: A's endpoint moved to the new port
      expect(l.exec(nsC, ['wg', 'show', l.name('c'), 'endpoints']).trim()).toContain(`${UNDER(1)}:51830`);
    });
  }, 30_000);

  it('(e) a new PrivateKey restarts the identity: sessions dropped, new handshakes under the new key', async () => {
    await withLogs(async () => {
      const fresh = wgGenKeypair();
      const text = readFileSync(a.configFile!, 'utf8').replace(keys.a.privateKey, fresh.privateKey);
      writeFileSync(a.configFile!, text);
      const r = km(['reload', a.ifname]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/restarted the device's identity: PrivateKey changed, \d+ session\(s\) dropped/);
      expect(r.stdout + r.stderr).not.toContain(fresh.privateKey);
      expect(l.exec(a.ns, ['wg', 'show', a.ifname, 'public-key']).trim()).toBe(fresh.publicKey);
      const dropped = peerIn(show(), keys.c.publicKey)!;
      expect(dropped.session, 'no session with C right after the new key').toBeNull();
      // C learns the new key: a fresh session
      l.exec(nsC, ['wg', 'set', l.name('c'), 'peer', keys.a.publicKey, 'remove', 'peer', fresh.publicKey, 'allowed-ips', `${TUN(1)}/32`, 'endpoint', `${UNDER(1)}:51830`]);
      expect(ping(l, a.ns, TUN(3)), 'A → C under the new key').toBe(true);
      const again = peerIn(show(), keys.c.publicKey)!;
      expect(again.handshakes).toBe(dropped.handshakes + 1);
      expect(again.session).not.toBeNull();
    });
  }, 30_000);
});
