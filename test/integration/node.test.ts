/**
 * keymesh as a program, in network namespaces: keymesh ↔ keymesh, keymesh ↔ wireguard-go (either
 * side initiating), a 4-node mesh, the stock `wg` tool against keymesh, bad configs, and clean
 * shutdown. Needs root; skipped with the reason otherwise.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunNetns, KEYMESH_BIN, Lab, ping, sh, sleep, startKeymesh, startWireguardGo, tcpTransfer, uapiSocket, waitFor, wgGenKeypair } from '../../netns/lib.js';
import { mesh } from '../../netns/mesh.js';
import { TUNNEL, twoHosts } from '../../netns/two-hosts.js';

const skip = canRunNetns() ?? (spawnSync('which', ['wireguard-go']).status === 0 ? null : 'wireguard-go is not installed');
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

async function checkPair(l: Lab, nsA: string, nsB: string, megabytes: number): Promise<void> {
  withLogs(() => {
    expect(ping(l, nsA, TUNNEL.b), 'IPv4 ping A→B').toBe(true);
    expect(ping(l, nsA, TUNNEL.b6), 'IPv6 ping A→B').toBe(true);
    expect(ping(l, nsB, TUNNEL.a), 'IPv4 ping B→A').toBe(true);
    expect(ping(l, nsB, TUNNEL.a6), 'IPv6 ping B→A').toBe(true);
  });
  const t = await tcpTransfer(l, nsA, nsB, TUNNEL.b, megabytes * 1024 * 1024);
  expect(t.received.bytes).toBe(megabytes * 1024 * 1024);
  expect(t.received.sha256).toBe(t.sent.sha256);
}

describe.skipIf(skip)('keymesh in network namespaces', () => {
  it('keymesh ↔ keymesh: pings both families, 50 MB TCP with matching sha256', async () => {
    lab = new Lab();
    const { a, b } = twoHosts(lab);
    await startKeymesh(lab, b);
    await startKeymesh(lab, a);
    await checkPair(lab, a.ns, b.ns, 50);
  }, 120_000);

  it('native crypto ↔ pure-TS reference crypto (KEYMESH_CRYPTO=noble): 20 MB TCP each way, matching sha256', async () => {
    lab = new Lab();
    const { a, b } = twoHosts(lab);
    b.env = { KEYMESH_CRYPTO: 'noble' };
    await startKeymesh(lab, b);
    await startKeymesh(lab, a);
    await checkPair(lab, a.ns, b.ns, 20);
    const back = await tcpTransfer(lab, b.ns, a.ns, TUNNEL.a, 20 * 1024 * 1024, 5202);
    expect(back.received.bytes).toBe(20 * 1024 * 1024);
    expect(back.received.sha256).toBe(back.sent.sha256);
    const show = JSON.parse(sh('ip', ['netns', 'exec', b.ns, process.execPath, KEYMESH_BIN, 'show', b.ifname, '--json']));
    expect(show.aead ?? show.interface?.aead).toBe('noble');
  }, 120_000);

  it('keymesh ↔ wireguard-go, keymesh initiating', async () => {
    lab = new Lab();
    const { a, b } = twoHosts(lab);
    await startWireguardGo(lab, b);
    await startKeymesh(lab, a);
    await checkPair(lab, a.ns, b.ns, 50);
  }, 120_000);

  it('keymesh ↔ wireguard-go, wireguard-go initiating', async () => {
    lab = new Lab();
    const { a, b } = twoHosts(lab, { aKnowsB: false, bKnowsA: true });
    await startKeymesh(lab, a);
    await startWireguardGo(lab, b);
    // B initiates: ping from B first.
    withLogs(() => expect(ping(lab!, b.ns, TUNNEL.a), 'wireguard-go → keymesh ping').toBe(true));
    await checkPair(lab, a.ns, b.ns, 50);
  }, 120_000);

  it('a 4-node full mesh: every pair reaches every other', async () => {
    lab = new Lab();
    const nodes = mesh(lab, 4);
    await Promise.all(nodes.map((n) => startKeymesh(lab!, n)));
    const failures: string[] = [];
    for (let i = 0; i < nodes.length; i++) {
      for (let j = 0; j < nodes.length; j++) {
        if (i !== j && !ping(lab, nodes[i].ns, `10.9.0.${j + 1}`, 2)) failures.push(`h${i}→h${j}`);
      }
    }
    withLogs(() => expect(failures).toEqual([]));
  }, 120_000);

  it('the stock wg tool shows and changes a running keymesh', async () => {
    lab = new Lab();
    const { a, b } = twoHosts(lab);
    await startKeymesh(lab, b);
    await startKeymesh(lab, a);
    expect(ping(lab, a.ns, TUNNEL.b)).toBe(true);
    const dump = sh('wg', ['show', a.ifname, 'dump']).trim().split('\n');
    // interface line: private-key public-key listen-port fwmark
    expect(dump[0].split('\t')[2]).toBe('51820');
    const peer = dump[1].split('\t');
    expect(peer[0]).toBe(a.peers[0].publicKey);
    // B's IPv4 address, or its IPv6 one: both are validated paths, and the lower-RTT one may win
    // (a probe sample taken while the machine is busy can favour either); `wg` must report the
    // path keymesh itself uses
    expect(['192.0.2.2:51820', '[fd00:2::2]:51820']).toContain(peer[2]);
    const shown = JSON.parse(sh(process.execPath, [KEYMESH_BIN, 'show', a.ifname, '--json'])).peers[0].endpoint as string;
    expect(peer[2]).toBe(shown.split(' from ')[0]);
    expect(peer[3].split(',').sort()).toEqual(['10.0.0.2/32', 'fd10::2/128']);
    expect(Number(peer[4])).toBeGreaterThan(Date.now() / 1000 - 60); // latest handshake
    expect(Number(peer[5])).toBeGreaterThan(0); // rx
    expect(Number(peer[6])).toBeGreaterThan(0); // tx
    const showconf = sh('wg', ['showconf', a.ifname]);
    expect(showconf).toContain(`PublicKey = ${a.peers[0].publicKey}`);
    expect(showconf).toContain('ListenPort = 51820');

    // Add an address behind B, allow it on A with `wg set`: it becomes reachable (keymesh adds the route).
    lab.exec(b.ns, ['ip', 'addr', 'add', '10.77.7.7/32', 'dev', b.ifname]);
    sh('wg', ['set', b.ifname, 'peer', b.peers[0].publicKey, 'allowed-ips', '10.0.0.1/32,fd10::1/128']);
    expect(ping(lab, a.ns, '10.77.7.7', 1)).toBe(false);
    sh('wg', ['set', a.ifname, 'peer', a.peers[0].publicKey, 'allowed-ips', '10.0.0.2/32,fd10::2/128,10.77.7.7/32', 'persistent-keepalive', '25']);
    await waitFor('route to 10.77.7.7', () => lab!.exec(a.ns, ['ip', 'route', 'show', '10.77.7.7']).includes(a.ifname), 5000);
    withLogs(() => expect(ping(lab!, a.ns, '10.77.7.7')).toBe(true));
    sh('wg', ['set', a.ifname, 'fwmark', '0x51']);
    expect(sh('wg', ['show', a.ifname, 'fwmark']).trim()).toBe('0x51');
    const after = sh('wg', ['show', a.ifname, 'dump']).trim().split('\n')[1].split('\t');
    expect(after[3].split(',').sort()).toEqual(['10.0.0.2/32', '10.77.7.7/32', 'fd10::2/128']);
    expect(after[7]).toBe('25');
    // Remove the peer: traffic stops.
    sh('wg', ['set', a.ifname, 'peer', a.peers[0].publicKey, 'remove']);
    expect(sh('wg', ['show', a.ifname, 'peers']).trim()).toBe('');
    expect(ping(lab, a.ns, TUNNEL.b, 1)).toBe(false);
  }, 120_000);

  it('AllowedIPs = 0.0.0.0/0 routes everything through the tunnel except the tunnel itself', async () => {
    lab = new Lab();
    const { a, b } = twoHosts(lab);
    lab.exec(a.ns, ['ip', 'route', 'add', 'default', 'via', '192.0.2.2']);
    a.peers[0].allowedIps = ['0.0.0.0/0', '::/0'];
    a.peers[0].endpoint = '192.0.2.2:51820';
    await startKeymesh(lab, b);
    const p = await startKeymesh(lab, a);
    await waitFor('default routes', () => lab!.exec(a.ns, ['ip', 'route', 'get', '203.0.113.9']).includes(a.ifname), 5000);
    expect(lab.exec(a.ns, ['ip', 'route', 'get', '192.0.2.2'])).toContain('dev eth0'); // the endpoint stays outside
    withLogs(() => expect(ping(lab!, a.ns, TUNNEL.b)).toBe(true));
    expect(await p.stop('SIGTERM'), p.output).toBe(0);
    expect(lab.exec(a.ns, ['ip', 'route', 'show'])).not.toMatch(/0\.0\.0\.0\/1|128\.0\.0\.0\/1|192\.0\.2\.2 via/);
    expect(lab.exec(a.ns, ['ip', 'route', 'show', 'default'])).toContain('via 192.0.2.2');
  }, 60_000);

  it('SIGTERM removes the interface, its routes and its sockets, and exits 0', async () => {
    lab = new Lab();
    const { a } = twoHosts(lab);
    const p = await startKeymesh(lab, a);
    expect(lab.exec(a.ns, ['ip', 'link', 'show', a.ifname])).toContain(a.ifname);
    expect(lab.exec(a.ns, ['ip', 'route', 'show'])).toContain(a.ifname);
    const code = await p.stop('SIGTERM');
    expect(code).toBe(0);
    expect(() => lab!.exec(a.ns, ['ip', 'link', 'show', a.ifname])).toThrow();
    expect(lab.exec(a.ns, ['ip', 'route', 'show'])).not.toContain(a.ifname);
    expect(lab.exec(a.ns, ['ip', '-6', 'route', 'show'])).not.toContain(a.ifname);
    expect(existsSync(uapiSocket(a.ifname))).toBe(false);
    expect(existsSync(`/var/run/keymesh/${a.ifname}.sock`)).toBe(false);
    expect(lab.exec(a.ns, ['ss', '-uanp'])).not.toContain(':51820');
  }, 60_000);

  it('runs PreUp/PostUp/PreDown/PostDown hooks and writes the config back with SaveConfig', async () => {
    lab = new Lab();
    const { a } = twoHosts(lab);
    const marks = `${lab.dir}/hooks.log`;
    a.extra = [
      `PreUp = echo preup %i >> ${marks}`,
      `PostUp = echo postup %i >> ${marks}`,
      `PreDown = echo predown %i >> ${marks}`,
      `PostDown = echo postdown %i >> ${marks}`,
      'SaveConfig = true',
    ];
    const p = await startKeymesh(lab, a);
    sh('wg', ['set', a.ifname, 'peer', a.peers[0].publicKey, 'allowed-ips', '10.0.0.2/32,10.123.0.0/16']);
    expect(await p.stop('SIGTERM'), p.output).toBe(0);
    expect(readFileSync(marks, 'utf8')).toBe(`preup ${a.ifname}\npostup ${a.ifname}\npredown ${a.ifname}\npostdown ${a.ifname}\n`);
    const saved = readFileSync(a.configFile!, 'utf8');
    expect(saved).toContain('AllowedIPs = 10.0.0.2/32, 10.123.0.0/16');
    expect(saved).toContain(`PrivateKey = ${a.privateKey}`);
    expect(statSync(a.configFile!).mode & 0o777).toBe(0o600);
  }, 60_000);

  it('shuts down cleanly when its interface is deleted from under it', async () => {
    lab = new Lab();
    const { a } = twoHosts(lab);
    const p = await startKeymesh(lab, a);
    lab.exec(a.ns, ['ip', 'link', 'del', a.ifname]);
    expect(await Promise.race([p.exited, sleep(5000).then(() => 'still running')])).toBe(0);
    expect(p.output).toContain(`the TUN device ${a.ifname} was removed`);
    expect(existsSync(uapiSocket(a.ifname))).toBe(false);
  }, 60_000);

  it('keymesh down stops a running node', async () => {
    lab = new Lab();
    const { a } = twoHosts(lab);
    const p = await startKeymesh(lab, a);
    const r = spawnSync(process.execPath, [KEYMESH_BIN, 'down', a.ifname], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(await p.exited).toBe(0);
    expect(existsSync(uapiSocket(a.ifname))).toBe(false);
  }, 60_000);

  it('says plainly when the interface name or the port is taken, or root is missing', async () => {
    lab = new Lab();
    const { a } = twoHosts(lab);
    const conf = lab.file('taken.conf', `[Interface]\nPrivateKey = ${a.privateKey}\nListenPort = 51820\n`);
    const up = (args: string[], pre: string[] = []) =>
      spawnSync('ip', ['netns', 'exec', a.ns, ...pre, process.execPath, KEYMESH_BIN, 'up', conf, ...args], { encoding: 'utf8' });
    const nameTaken = up(['--interface', 'eth0']);
    expect(nameTaken.status).not.toBe(0);
    expect(nameTaken.stderr).toMatch(/interface eth0 already exists/);
    const blocker = lab.spawn(a.ns, [process.execPath, '-e', "require('dgram').createSocket('udp6').bind(51820, () => console.log('BOUND'))"], 'port blocker');
    await waitFor('port blocker', () => blocker.output.includes('BOUND'));
    const portTaken = up(['--interface', lab.name('p')]);
    expect(portTaken.status).not.toBe(0);
    expect(portTaken.stderr).toMatch(/UDP port 51820 is already in use/);
    // the failed start left no interface behind
    expect(lab.exec(a.ns, ['ip', 'link', 'show'])).not.toContain(lab.name('p'));
    if (spawnSync('which', ['setpriv']).status === 0) {
      sh('chmod', ['755', lab.dir]);
      sh('chmod', ['644', conf]);
      const noRoot = up(['--interface', lab.name('r')], ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
      expect(noRoot.status).not.toBe(0);
      expect(noRoot.stderr).toMatch(/needs root/);
    }
  }, 60_000);

  describe('a bad config exits non-zero with FILE:LINE', () => {
    const good = wgGenKeypair();
    const peer = wgGenKeypair();
    const cases: Array<[string, string, number, RegExp]> = [
      ['bad private key', `[Interface]\nPrivateKey = notakey\n`, 2, /PrivateKey is not a valid (base64 )?key/],
      ['bad CIDR', `[Interface]\nPrivateKey = ${good.privateKey}\n[Peer]\nPublicKey = ${peer.publicKey}\nAllowedIPs = 10.0.0.0/33\n`, 5, /AllowedIPs: "10.0.0.0\/33"/],
      ['unknown key', `[Interface]\nPrivateKey = ${good.privateKey}\nListenPortt = 1\n`, 3, /unknown key ListenPortt/],
      ['missing PrivateKey', `[Interface]\nListenPort = 51820\n`, 1, /no PrivateKey/],
      ['bad endpoint', `[Interface]\nPrivateKey = ${good.privateKey}\n[Peer]\nPublicKey = ${peer.publicKey}\nEndpoint = 192.0.2.1\n`, 5, /Endpoint: .*HOST:PORT/],
      ['bad port', `[Interface]\nPrivateKey = ${good.privateKey}\nListenPort = 70000\n`, 3, /ListenPort/],
    ];
    for (const [what, text, line, re] of cases) {
      it(what, () => {
        lab = new Lab();
        const f = lab.file(`${lab.name('c')}.conf`, text);
        const r = spawnSync(process.execPath, [KEYMESH_BIN, 'up', f], { encoding: 'utf8' });
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain(`${f}:${line}:`);
        expect(r.stderr).toMatch(re);
        expect(r.stderr).not.toContain(good.privateKey);
      });
    }
  });
});
