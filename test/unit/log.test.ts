import { describe, expect, it } from 'vitest';
import { createLog, redactKeys } from '../../src/io/log.js';
import { onEvent, type EventHost } from '../../src/io/events.js';

const PRIV = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';
const HEX = 'c8a3e7e5317e9575c9b5ed78b638b7ce530dabe85ddab614220241801ddf0669';
const clock = () => new Date('2026-12-02T10:00:00.000Z');

function capture(format: 'text' | 'json', level?: 'debug' | 'info' | 'warn' | 'error') {
  const lines: string[] = [];
  const log = createLog({ format, level, clock, write: (l) => lines.push(l) });
  return { log, lines };
}

describe('log: formats and levels', () => {
  it('text: a time stamp and the sentence, the level named when it is not info', () => {
    const { log, lines } = capture('text');
    log('wg0: up');
    log('wg0: peer x does not resolve', { level: 'warn', event: 'resolve-failed' });
    expect(lines).toEqual(['2026-12-02T10:00:00.000Z wg0: up\n', '2026-12-02T10:00:00.000Z warn: wg0: peer x does not resolve\n']);
  });

  it('json: one object per line with time, level, event, msg and fields; a bare line is an info "log" event', () => {
    const { log, lines } = capture('json');
    log('wg0: up, listening on UDP port 51820', { event: 'up', fields: { listenPort: 51820, peers: 2 } });
    log('something');
    expect(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      { time: '2026-12-02T10:00:00.000Z', level: 'info', event: 'up', msg: 'wg0: up, listening on UDP port 51820', fields: { listenPort: 51820, peers: 2 } },
      { time: '2026-12-02T10:00:00.000Z', level: 'info', event: 'log', msg: 'something', fields: {} },
    ]);
  });

  it('a message with a newline or quotes is still one JSON line', () => {
    const { log, lines } = capture('json');
    log('a "quoted"\nsecond line', { fields: { why: 'x\ny' } });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]).msg).toBe('a "quoted"\nsecond line');
  });

  it('drops what is below the level', () => {
    for (const [level, kept] of [
      ['debug', 4],
      ['info', 3],
      ['warn', 2],
      ['error', 1],
    ] as const) {
      const { log, lines } = capture('json', level);
      for (const l of ['debug', 'info', 'warn', 'error'] as const) log(l, { level: l });
      expect(lines.map((x) => JSON.parse(x).level)).toEqual(['debug', 'info', 'warn', 'error'].slice(4 - kept));
    }
  });
});

describe('log: never a key', () => {
  it('redactKeys cuts base64 and hex keys to 8 characters and leaves other text alone', () => {
    expect(redactKeys(`key ${PRIV} and ${HEX}.`)).toBe(`key ${PRIV.slice(0, 8)}… and ${HEX.slice(0, 8)}….`);
    expect(redactKeys('192.0.2.1:51820 peer xTIBA5rb… handshake')).toBe('192.0.2.1:51820 peer xTIBA5rb… handshake');
    // a longer hex run (not a key) is left whole
    expect(redactKeys('a'.repeat(70))).toBe('a'.repeat(70));
  });

  it('a key passed in the sentence or a field never comes out whole, in either format', () => {
    for (const format of ['text', 'json'] as const) {
      const { log, lines } = capture(format);
      log(`oops ${PRIV}`, { fields: { psk: PRIV, hex: HEX } });
      const out = lines.join('');
      expect(out).not.toContain(PRIV);
      expect(out).not.toContain(HEX);
      expect(out).toContain(PRIV.slice(0, 8));
    }
  });

  it("the engine's events log the peer shortened, with an event name and fields", () => {
    const { log, lines } = capture('json');
    const publicKey = new Uint8Array(32).fill(7);
    const host: EventHost = { name: 'wg0', names: { has: () => false } as unknown as EventHost['names'], quietPeers: new Set(), log };
    const peer = { publicKey, keyId: 'k', cert: null, name: 'bob' } as never;
    onEvent(host, { type: 'handshake-complete', peer, initiator: true } as never);
    onEvent(host, { type: 'endpoint-changed', peer, from: null, to: { id: '192.0.2.2:51820' }, reason: 'roamed' } as never);
    const full = Buffer.from(publicKey).toString('base64');
    const [hs, ep] = lines.map((l) => JSON.parse(l));
    expect(hs).toMatchObject({ level: 'info', event: 'handshake-complete', fields: { peer: `${full.slice(0, 8)}…`, name: 'bob', initiator: true } });
    expect(ep).toMatchObject({ event: 'endpoint-changed', fields: { to: '192.0.2.2:51820', from: null, reason: 'roamed' } });
    expect(lines.join('')).not.toContain(full);
  });
});
