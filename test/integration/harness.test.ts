/**
 * The harness proves itself with the stock implementation only: two wireguard-go nodes in the
 * two-hosts topology ping each other over both inner families and move 5 MB of TCP with matching
 * sha256. If this fails, the keymesh integration tests cannot be trusted either. Also checks that a
 * Lab leaves nothing behind. Needs root; skipped with the reason otherwise.
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunNetns, Lab, ping, sh, startWireguardGo, tcpTransfer, uapiGet, uapiSocket } from '../../netns/lib.js';
import { TUNNEL, twoHosts } from '../../netns/two-hosts.js';

const skip = canRunNetns() ?? (spawnSync('which', ['wireguard-go']).status === 0 ? null : 'wireguard-go is not installed');
if (skip) console.warn(`harness self-test skipped: ${skip}`);

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
});

describe.skipIf(skip)('netns harness self-test (wireguard-go ↔ wireguard-go)', () => {
  it('pings both inner families and moves 5 MB over TCP with matching sha256; cleanup leaves nothing', async () => {
    const l = (lab = new Lab());
    const { a, b } = twoHosts(l);
    await startWireguardGo(l, b);
    await startWireguardGo(l, a);
    const logs = () => l.logs();
    expect(ping(l, a.ns, TUNNEL.b), `IPv4 ping A→B\n${logs()}`).toBe(true);
    expect(ping(l, a.ns, TUNNEL.b6), `IPv6 ping A→B\n${logs()}`).toBe(true);
    expect(ping(l, b.ns, TUNNEL.a), `IPv4 ping B→A\n${logs()}`).toBe(true);
    expect(ping(l, b.ns, TUNNEL.a6), `IPv6 ping B→A\n${logs()}`).toBe(true);
    const bytes = 5 * 1024 * 1024;
    const t = await tcpTransfer(l, a.ns, b.ns, TUNNEL.b, bytes);
    expect(t.sent.bytes).toBe(bytes);
    expect(t.received.bytes).toBe(bytes);
    expect(t.received.sha256).toBe(t.sent.sha256);

    // The direct UAPI reader sees what wg sees: B learned A's endpoint from the handshake.
    const state = await uapiGet(b.ifname);
    expect(state.at(-1)).toBe('errno=0');
    expect(state).toContain(`endpoint=192.0.2.1:${a.listenPort}`);
    expect(state.some((line) => /^last_handshake_time_sec=[1-9]/.test(line))).toBe(true);

    const namespaces = [a.ns, b.ns];
    await l.cleanup();
    lab = null;
    const left = sh('ip', ['netns', 'list']);
    for (const ns of namespaces) expect(left).not.toContain(ns);
    expect(existsSync(uapiSocket(a.ifname))).toBe(false);
    expect(existsSync(uapiSocket(b.ifname))).toBe(false);
  }, 60_000);
});
