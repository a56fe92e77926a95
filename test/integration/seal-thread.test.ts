/**
 * The KEYMESH_SEAL_THREAD=1 experiment end to end (netns/two-hosts.ts): bulk TCP through a node
 * whose TUN direction is sealed and sent by the native worker thread, to and from a node without
 * it, must arrive byte-identical (sha256); the thread must really have carried the traffic; and
 * the node must still shut down cleanly (SIGTERM, `keymesh down`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunNetns, KEYMESH_BIN, Lab, ping, startKeymesh, tcpTransfer, uapiSocket, type NodeSpec } from '../../netns/lib.js';
import { TUNNEL, twoHosts } from '../../netns/two-hosts.js';

const skip = canRunNetns();
if (skip) console.warn(`seal-thread integration tests skipped: ${skip}`);

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
});

interface Status {
  aead: string;
  runtime: { sealThread: { running: number; units: number; datagrams: number; sent: number; sealFailures: number } | null };
}
const show = (l: Lab, n: NodeSpec): Status => JSON.parse(l.exec(n.ns, [process.execPath, KEYMESH_BIN, 'show', n.ifname, '--json']));

async function transfer(l: Lab, from: NodeSpec, to: NodeSpec, addr: string, bytes: number, port: number): Promise<void> {
  const t = await tcpTransfer(l, from.ns, to.ns, addr, bytes, port);
  expect(t.sent.bytes, l.logs()).toBe(bytes);
  expect(t.received.bytes, l.logs()).toBe(bytes);
  expect(t.received.sha256).toBe(t.sent.sha256);
}

describe.skipIf(skip)('seal thread: bulk TCP arrives byte-identical', () => {
  it('KEYMESH_SEAL_THREAD=1 ↔ a node without it, 20 MB each way (offloads on), then SIGTERM', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    a.env = { KEYMESH_SEAL_THREAD: '1' };
    await startKeymesh(l, b);
    const pa = await startKeymesh(l, a);
    expect(ping(l, a.ns, TUNNEL.b), l.logs()).toBe(true);
    expect(show(l, a).aead).toMatch(/worker thread/);
    expect(show(l, b).runtime.sealThread).toBeNull();
    await transfer(l, a, b, TUNNEL.b, 20 << 20, 5201);
    await transfer(l, b, a, TUNNEL.a, 20 << 20, 5202);
    await transfer(l, a, b, TUNNEL.b6, 4 << 20, 5203);
    const st = show(l, a).runtime.sealThread!;
    expect(st.running, JSON.stringify(st)).toBe(1);
    expect(st.units, JSON.stringify(st)).toBeGreaterThan(100);
    expect(st.datagrams, JSON.stringify(st)).toBeGreaterThan(14_000); // 20 MB of 1420-byte packets went through it
    expect(st.sealFailures).toBe(0);
    expect(await pa.stop('SIGTERM')).toBe(0);
    expect(pa.output).not.toMatch(/Error|Segmentation|Aborted/);
    expect(() => l.exec(a.ns, ['ip', 'link', 'show', a.ifname])).toThrow();
    expect(existsSync(uapiSocket(a.ifname))).toBe(false);
  }, 120_000);

  it('both with the thread, one with KEYMESH_OFFLOAD=0 (plain sendmmsg), then keymesh down', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    a.env = { KEYMESH_SEAL_THREAD: '1', KEYMESH_OFFLOAD: '0' };
    b.env = { KEYMESH_SEAL_THREAD: '1' };
    const pb = await startKeymesh(l, b);
    const pa = await startKeymesh(l, a);
    expect(ping(l, a.ns, TUNNEL.b), l.logs()).toBe(true);
    await transfer(l, a, b, TUNNEL.b, 8 << 20, 5201);
    await transfer(l, b, a, TUNNEL.a6, 8 << 20, 5202);
    expect(show(l, a).runtime.sealThread!.units).toBeGreaterThan(0);
    expect(show(l, b).runtime.sealThread!.units).toBeGreaterThan(0);
    const r = spawnSync('ip', ['netns', 'exec', a.ns, process.execPath, KEYMESH_BIN, 'down', a.ifname], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(await pa.exited).toBe(0);
    expect(await pb.stop('SIGTERM')).toBe(0);
  }, 120_000);
});
