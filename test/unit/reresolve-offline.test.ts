/**
 * reresolve.ts with a name that does not resolve at bring-up: the backoff (1 s doubling to 30 s),
 * the immediate retry on a local change, the retry when traffic waits, and what the answer does.
 * The resolver (node:dns/promises) is a fake; the clock is vitest's.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

const dns = vi.hoisted(() => ({
  answers: new Map<string, string | { code: string }>(),
  calls: [] as Array<{ host: string; at: number }>,
  /** Lookups that hang until released (a resolver that drops queries). */
  hang: false,
  pending: [] as Array<() => void>,
}));

vi.mock('node:dns/promises', () => {
  const lookup = (host: string, opts?: { all?: boolean }) => {
    dns.calls.push({ host, at: Date.now() });
    const run = () => {
      const a = dns.answers.get(host) ?? { code: 'EAI_AGAIN' };
      if (typeof a !== 'string') return Promise.reject(Object.assign(new Error(`getaddrinfo ${a.code} ${host}`), { code: a.code }));
      return Promise.resolve(opts?.all ? [{ address: a, family: 4 }] : { address: a, family: 4 });
    };
    if (!dns.hang) return run();
    return new Promise((resolve, reject) => dns.pending.push(() => run().then(resolve, reject)));
  };
  const resolve4 = () => Promise.resolve([{ address: '192.0.2.2', ttl: 60 }]);
  return { lookup, resolve4, default: { lookup, resolve4 } };
});

import { EndpointNames, RETRY_FIRST, RETRY_MAX } from '../../src/io/reresolve.js';
import { PathTable } from '../../src/io/udp-path.js';
import { resolveEndpoint } from '../../src/config/wgquick.js';
import type { LogMeta } from '../../src/io/log.js';

function setup() {
  const logs: Array<{ line: string; meta?: LogMeta }> = [];
  const peer = { publicKey: new Uint8Array(32).fill(1), endpoint: { path: null as null | { id: string } } };
  const engine = {
    setEndpoint: vi.fn((p: typeof peer, path: { id: string }) => (p.endpoint.path = path)),
    initiateHandshake: vi.fn(),
    addCandidatePaths: vi.fn(),
  };
  const host = {
    engine: engine as never,
    paths: new PathTable(),
    name: 'wg0',
    stopped: false,
    log: (line: string, meta?: LogMeta) => logs.push({ line, meta }),
    now: () => Date.now(),
    flushAndArm: vi.fn(),
    endpointsChanged: vi.fn(),
  };
  const names = new EndpointNames(host);
  const start = () => names.remember(peer as never, { host: 'peer.test', port: 51820 }, resolveEndpoint({ host: 'peer.test', port: 51820 }));
  return { names, peer, engine, host, logs, start, lookups: () => dns.calls.filter((c) => c.host === 'peer.test').length };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
  dns.answers.clear();
  dns.calls.length = 0;
  dns.hang = false;
  dns.pending.length = 0;
});
afterEach(() => vi.useRealTimers());

describe('an Endpoint name that does not resolve at bring-up', () => {
  it('is retried 1 s, 2 s, 4 s … apart, up to 30 s; said once as a warning, then at debug level', async () => {
    const t = setup();
    t.start();
    await vi.advanceTimersByTimeAsync(0);
    const at: number[] = [];
    for (let i = 0; i < 200; i++) {
      const n = t.lookups();
      await vi.advanceTimersByTimeAsync(500);
      if (t.lookups() > n) at.push((Date.now() - 1_000_000) / 1000);
    }
    // lookups at 0 (bring-up), then 1, 3, 7, 15, 31, 61, 91 s
    expect(at.slice(0, 7)).toEqual([1, 3, 7, 15, 31, 61, 91]);
    expect(RETRY_FIRST).toBe(1000);
    expect(RETRY_MAX).toBe(30_000);
    const warns = t.logs.filter((l) => l.meta?.level === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0].line).toMatch(/"peer\.test" does not resolve yet \(EAI_AGAIN\): up without it/);
    expect(t.logs.filter((l) => l.meta?.level === 'debug').length).toBe(at.length);
    expect(t.names.unresolved(t.peer as never)).toMatchObject({ host: 'peer.test', error: 'EAI_AGAIN', attempts: at.length + 1 });
    expect(t.engine.setEndpoint).not.toHaveBeenCalled();
  });

  it('a local change (netlink) looks again at once and starts the backoff over', async () => {
    const t = setup();
    t.start();
    await vi.advanceTimersByTimeAsync(20_000); // lookups at 0, 1, 3, 7, 15; the next at 31
    expect(t.lookups()).toBe(5);
    t.names.retryUnresolved();
    await vi.advanceTimersByTimeAsync(0);
    expect(t.lookups()).toBe(6);
    await vi.advanceTimersByTimeAsync(1000);
    expect(t.lookups()).toBe(7);
  });

  it('traffic waiting for the peer looks again, a second apart at most, and never two lookups at once', async () => {
    const t = setup();
    t.start();
    await vi.advanceTimersByTimeAsync(20_000);
    const n = t.lookups();
    await t.names.reresolve(t.peer as never, 'traffic waiting');
    await t.names.reresolve(t.peer as never, 'traffic waiting');
    expect(t.lookups()).toBe(n + 1);
    await vi.advanceTimersByTimeAsync(1000);
    await t.names.reresolve(t.peer as never, 'traffic waiting');
    expect(t.lookups()).toBe(n + 2);
    // a resolver that drops queries: the lookup in flight is not doubled
    dns.hang = true;
    await vi.advanceTimersByTimeAsync(1000);
    await t.names.reresolve(t.peer as never, 'traffic waiting');
    await vi.advanceTimersByTimeAsync(5000);
    await t.names.reresolve(t.peer as never, 'traffic waiting');
    t.names.retryUnresolved();
    expect(t.lookups()).toBe(n + 3);
  });

  it('the first answer sets the endpoint, starts a handshake, pins routes, and stops the retries', async () => {
    const t = setup();
    t.start();
    await vi.advanceTimersByTimeAsync(4000);
    dns.answers.set('peer.test', '192.0.2.2');
    await vi.advanceTimersByTimeAsync(3000); // the lookup at 7 s answers
    expect(t.engine.setEndpoint).toHaveBeenCalledTimes(1);
    expect(t.engine.setEndpoint.mock.calls[0][1].id).toBe('192.0.2.2:51820');
    expect(t.engine.initiateHandshake).toHaveBeenCalledTimes(1);
    expect(t.host.flushAndArm).toHaveBeenCalled();
    expect(t.host.endpointsChanged).toHaveBeenCalledTimes(1);
    expect(t.names.unresolved(t.peer as never)).toBeNull();
    const resolved = t.logs.find((l) => l.meta?.event === 'endpoint-resolved')!;
    expect(resolved.line).toMatch(/peer\.test resolves to 192\.0\.2\.2:51820 \(after 7\.0 s, 4 lookup\(s\)\); connecting/);
    const n = t.lookups();
    t.names.retryUnresolved();
    await vi.advanceTimersByTimeAsync(50_000); // (the record's TTL, 60 s, brings the next lookup)
    expect(t.lookups()).toBe(n);
  });

  it('a peer that reached us meanwhile keeps the endpoint it proved', async () => {
    const t = setup();
    t.start();
    await vi.advanceTimersByTimeAsync(2000);
    t.peer.endpoint.path = { id: '198.51.100.7:40000' };
    dns.answers.set('peer.test', '192.0.2.2');
    await vi.advanceTimersByTimeAsync(1000);
    expect(t.engine.setEndpoint).not.toHaveBeenCalled();
    expect(t.names.unresolved(t.peer as never)).toBeNull();
    expect(t.logs.some((l) => /keeping the endpoint it reached us from/.test(l.line))).toBe(true);
  });

  it('a name that does not exist (NXDOMAIN) is said plainly, and still retried', async () => {
    const t = setup();
    dns.answers.set('peer.test', { code: 'ENOTFOUND' });
    t.start();
    await vi.advanceTimersByTimeAsync(4000);
    const w = t.logs.find((l) => l.meta?.level === 'warn')!;
    expect(w.line).toMatch(/endpoint host "peer\.test" does not exist \(NXDOMAIN\): check the Endpoint/);
    expect(w.meta?.fields).toMatchObject({ host: 'peer.test', error: 'ENOTFOUND' });
    expect(t.lookups()).toBe(3);
  });

  it('stops retrying when forgotten or cleared (shutdown)', async () => {
    const t = setup();
    t.start();
    await vi.advanceTimersByTimeAsync(2000);
    t.names.clear();
    const n = t.lookups();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(t.lookups()).toBe(n);
  });
});
