/**
 * (f) Hijack attempts from an on-path attacker (netns/routed.ts): it races copies of fresh
 * tunnel packets from its own address while the router drops half of the originals, so many of
 * B's authenticated packets from A arrive *only* from the attacker's address. Stock WireGuard
 * would move its endpoint to the attacker; keymesh must keep its active path, and send the
 * attacker at most AMPLIFICATION_FACTOR × what the attacker sent.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { canRunNetns, Lab, ping, sh, sleep, startKeymesh, waitFor } from '../../netns/lib.js';
import { ATTACKER_PY, ROUTED, routed } from '../../netns/routed.js';

const skip = canRunNetns() ?? (spawnSync('which', ['python3']).status === 0 ? null : 'python3 is not installed');

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.cleanup();
  lab = null;
});

describe.skipIf(skip)('hijack attempts', () => {
  it('(f) racing copies from an attacker’s address do not move the session', async () => {
    lab = new Lab();
    const { a, b, r } = routed(lab);
    await startKeymesh(lab, b);
    await startKeymesh(lab, a);
    expect(ping(lab, a.ns, '10.0.0.2')).toBe(true);
    await waitFor('peers to know each other speak keymesh', () => sh('node', ['bin/keymesh.js', 'show', b.ifname]).includes('speaks keymesh: yes'), 5000);
    const attacker = lab.spawn(r, ['python3', '-c', ATTACKER_PY, 'ra', ROUTED.a, ROUTED.b, '51820', ROUTED.rb, '6666', '4'], 'attacker');
    await waitFor('attacker', () => attacker.output.includes('ATTACKING'), 5000);
    lab.exec(r, ['nft', '-f', '-'], `table inet km { chain kmfwd { type filter hook forward priority 0; ip saddr ${ROUTED.a} udp dport 51820 numgen random mod 100 < 50 drop; }; }`);
    const endpoints = new Set<string>();
    const pinger = lab.spawn(a.ns, ['ping', '-i', '0.01', '-c', '300', '10.0.0.2'], 'ping during attack');
    for (let i = 0; i < 60; i++) {
      endpoints.add(sh('wg', ['show', b.ifname, 'endpoints']).trim().split('\t')[1]);
      await sleep(50);
    }
    await pinger.exited;
    await attacker.exited;
    lab.exec(r, ['nft', 'delete table inet km']);
    const result = JSON.parse(attacker.output.trim().split('\n').pop()!);
    expect([...endpoints], lab.logs()).toEqual([`${ROUTED.a}:51820`]);
    expect(result.sent).toBeGreaterThan(0);
    expect(result.received).toBeLessThanOrEqual(3 * result.sent);
    const show = sh('node', ['bin/keymesh.js', 'show', b.ifname]);
    expect(show).toMatch(new RegExp(`path \\* ${ROUTED.a.replaceAll('.', '\\.')}:51820 validated`));
    expect(show).toMatch(/path {3}198\.51\.100\.254:6666 (validating|failed)/);
    expect(ping(lab, a.ns, '10.0.0.2')).toBe(true);
    console.log(`(f) attacker sent ${result.sent} B, was sent ${result.received} B; B's endpoint never moved`);
  }, 60_000);
});
