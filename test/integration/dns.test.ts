/**
 * The mesh's resolver end to end (netns/mesh-lab.ts: a lighthouse, members behind NATs, all made
 * with `keymesh ca enroll`):
 *
 *      m1 (MeshDNS default)      m2 (MeshDNS = direct,             m3 (never talked to m1)
 *      dig @10.99.0.x …          /etc/netns/NS/resolv.conf)        TCP server on its overlay
 *            \                          |                           /
 *             └──────────── lighthouse (knows every member) ───────┘
 *
 *   (a) `dig @M1_OVERLAY` answers m1's own name, m3's (only the lighthouse knows it: asked), AAAA,
 *       PTR, NXDOMAIN, REFUSED, over UDP and TCP; nothing answers on m1's underlay address; the
 *       counters in `keymesh show`.
 *   (b) MeshDNS = direct in a namespace with its own resolv.conf: `getent hosts m3.mesh` and a TCP
 *       connection by name work; the file is restored on down, and after a kill -9 by the next up.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunNetns, Lab, sleep, waitFor } from '../../netns/lib.js';
import { meshLab, type MeshLab, type MeshNode } from '../../netns/mesh-lab.js';

const skip = canRunNetns() ?? (existsSync('/usr/bin/dig') ? null : 'dig is not installed');
let lab: Lab | null = null;
const etcDirs: string[] = [];
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
  for (const d of etcDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dig(l: MeshLab, from: MeshNode, server: string, args: string[]): { status: string | null; answers: string[]; text: string } {
  let text: string;
  try {
    text = l.lab.exec(from.ns, ['dig', `@${server}`, '+time=2', '+tries=1', ...args]);
  } catch (e) {
    text = String((e as { stdout?: string }).stdout ?? (e as Error).message);
  }
  const status = /status: (\w+)/.exec(text)?.[1] ?? null;
  const answers = [...text.matchAll(/^\S+\s+\d+\s+IN\s+(?:A|AAAA|PTR)\s+(\S+)$/gm)].map((m) => m[1]);
  return { status, answers, text };
}

const ORIGINAL = '# the namespace\'s own resolver configuration\nnameserver 203.0.113.1\noptions timeout:1\n';

describe.skipIf(skip)(`mesh DNS${skip ? ` — skipped: ${skip}` : ''}`, () => {
  it('(a) dig @OVERLAY: own name, a name only the lighthouse knows, AAAA, PTR, NXDOMAIN, REFUSED, TCP; not on the underlay', async () => {
    lab = new Lab();
    const l = meshLab(lab);
    await l.up(l.lh);
    const m1 = l.member(1);
    const m3 = l.member(3);
    await l.up(m1);
    await l.up(m3);
    await waitFor('m1 to listen on its overlay address', () => /DNS: names \*\.mesh are answered on/.test(m1.proc!.output), 10_000);
    expect(m1.proc!.output, 'without systemd-resolved it says how to use the resolver').toContain(`dig @${m1.v4} NAME.mesh`);
    expect(l.show(m1).peers.some((p: any) => p.publicKey === m3.publicKey), 'm1 has not met m3').toBe(false);

    expect(dig(l, m1, m1.v4, ['m1.mesh', 'A']).answers).toEqual([m1.v4]);
    const a = dig(l, m1, m1.v4, ['m3.mesh', 'A']);
    expect(a.status, a.text + lab.logs()).toBe('NOERROR');
    expect(a.answers).toEqual([m3.v4]);
    expect(dig(l, m1, m1.v4, ['M3.MESH', 'AAAA']).answers).toEqual([m3.v6]);
    expect(dig(l, m1, m1.v4, ['-x', m3.v4]).answers).toEqual(['m3.mesh.']);
    expect(dig(l, m1, m1.v6, ['-x', m3.v6]).answers, 'over IPv6 too').toEqual(['m3.mesh.']);
    expect(dig(l, m1, m1.v4, ['nobody.mesh', 'A']).status).toBe('NXDOMAIN');
    expect(dig(l, m1, m1.v4, ['example.com', 'A']).status).toBe('REFUSED');
    expect(dig(l, m1, m1.v4, ['+tcp', 'm3.mesh', 'A']).answers, 'over TCP').toEqual([m3.v4]);
    // the underlay address (10.1.0.2) has no resolver: nothing listens there
    expect(dig(l, m1, '10.1.0.2', ['m1.mesh', 'A']).status).toBeNull();
    expect(dig(l, m1, '10.1.0.2', ['+tcp', 'm1.mesh', 'A']).status).toBeNull();
    const listeners = lab.exec(m1.ns, ['ss', '-Hlnu', 'sport', '=', ':53']) + lab.exec(m1.ns, ['ss', '-Hlnt', 'sport', '=', ':53']);
    const bound = [...listeners.matchAll(/\s(\[?[0-9a-f.:]+\]?):53\s/g)].map((m) => m[1].replace(/[[\]]/g, '')).sort();
    expect(bound).toEqual([m1.v4, m1.v4, m1.v6, m1.v6].sort());

    const dns = l.show(m1).dns;
    expect(dns).toMatchObject({ mode: 'auto', host: 'none', nxdomain: 1, refused: 1, malformed: 0, rateLimited: 0 });
    expect(dns.answered).toBeGreaterThanOrEqual(6);
  }, 60_000);

  it('(b) MeshDNS = direct with /etc/netns/NS/resolv.conf: getent and TCP by name; restored on down and after kill -9', async () => {
    lab = new Lab();
    const l = meshLab(lab);
    await l.up(l.lh);
    const m2 = l.member(2);
    const m3 = l.member(3);
    writeFileSync(m2.conf, readFileSync(m2.conf, 'utf8').replace('[Interface]\n', '[Interface]\nMeshDNS = direct\n'));
    // `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf
    const etc = `/etc/netns/${m2.ns}`;
    mkdirSync(etc, { recursive: true });
    etcDirs.push(etc);
    writeFileSync(`${etc}/resolv.conf`, ORIGINAL);
    await l.up(m3);
    await l.up(m2);
    await waitFor("m2's resolv.conf to be keymesh's", () => readFileSync(`${etc}/resolv.conf`, 'utf8').includes(`nameserver ${m2.v4}`));
    expect(lab.exec(m2.ns, ['cat', '/etc/resolv.conf']), 'the bind mount shows the file written in place').toContain(`nameserver ${m2.v4}`);
    expect(readFileSync(`${etc}/resolv.conf`, 'utf8')).toMatch(/^search mesh$/m);

    const hosts = lab.exec(m2.ns, ['getent', 'hosts', 'm3.mesh']);
    expect([m3.v4, m3.v6], hosts).toContain(hosts.split(/\s+/)[0]);
    expect(lab.exec(m2.ns, ['getent', 'ahostsv4', 'm3']), 'the search domain').toContain(m3.v4);

    // a TCP connection by name: a server on m3's overlay address, a client in m2 that knows only "m3.mesh"
    const server = lab.spawn(m3.ns, [process.execPath, '-e', `require('net').createServer((c) => c.end('hello from m3\\n')).listen(7070, '${m3.v4}', () => console.log('listening'))`], 'tcp server');
    await waitFor('the TCP server', () => server.output.includes('listening'));
    const client = lab.exec(m2.ns, [process.execPath, '-e', "const c = require('net').connect({ host: 'm3.mesh', port: 7070, family: 4 }); c.on('data', (d) => process.stdout.write(d)); c.on('error', (e) => { console.error(e.message); process.exit(1); });"]);
    expect(client).toBe('hello from m3\n');
    expect(l.show(m2).dns).toMatchObject({ mode: 'direct', host: 'direct', upstreams: ['203.0.113.1'] });

    // down: the file is back as it was
    await m2.proc!.stop('SIGTERM');
    expect(readFileSync(`${etc}/resolv.conf`, 'utf8')).toBe(ORIGINAL);

    // kill -9 while up: the next up restores the file before writing its own, and down restores it again
    await l.up(m2);
    await waitFor('m2 up again', () => m2.proc!.output.includes("DNS: this node is the host's resolver"));
    await m2.proc!.stop('SIGKILL');
    expect(readFileSync(`${etc}/resolv.conf`, 'utf8'), 'a crash leaves it').toContain('keymesh');
    await sleep(200);
    await l.up(m2); // (the dead node's UAPI socket is still there: wait for the log line instead)
    await waitFor('m2 up after the crash', () => m2.proc!.output.includes("DNS: this node is the host's resolver"));
    expect(m2.proc!.output).toMatch(/cleaned up after a node \(pid \d+\).*resolv\.conf restored/);
    expect(l.show(m2).dns.upstreams, 'the upstreams are the original ones, not our own address').toEqual(['203.0.113.1']);
    await m2.proc!.stop('SIGTERM');
    expect(readFileSync(`${etc}/resolv.conf`, 'utf8')).toBe(ORIGINAL);
  }, 60_000);
});
