import { describe, expect, it } from 'vitest';
import { shownPaths } from '../../src/cli/show.js';

const path = (p: string, local: string | null, state: string, active = false, kind: 'direct' | 'relay' = 'direct') => ({
  path: p,
  local,
  state,
  active,
  kind,
  rttMs: null,
  lastReceiveSecondsAgo: null,
});

describe('keymesh show: which paths are listed', () => {
  it('leaves out the unbound configured path once the same remote is reached from a real local end', () => {
    const configured = path('192.0.2.2:51820', null, 'failed');
    const bound = path('192.0.2.2:51820', '192.0.2.1%2', 'validated', true);
    const v6 = path('[fd00:2::2]:51820', 'fd00:2::1%2', 'validated');
    expect(shownPaths([configured, bound, v6])).toEqual([bound, v6]);
  });
  it('keeps it while it is the only way there, while it is active, or while it works', () => {
    const alone = path('198.51.100.7:51820', null, 'new');
    expect(shownPaths([alone])).toEqual([alone]);
    const active = path('192.0.2.2:51820', null, 'failed', true);
    const other = path('192.0.2.2:51820', '192.0.2.1%2', 'validating');
    expect(shownPaths([active, other])).toEqual([active, other]);
    const working = path('192.0.2.2:51820', null, 'validated');
    expect(shownPaths([working, other])).toEqual([working, other]);
  });
  it('never hides relays or paths with a local end', () => {
    const relay = path('relay', null, 'failed', false, 'relay');
    const failedBound = path('192.0.2.9:51820', '192.0.2.1%2', 'failed');
    const otherBound = path('192.0.2.9:51820', '192.0.2.5%3', 'validated');
    expect(shownPaths([relay, failedBound, otherBound])).toEqual([relay, failedBound, otherBound]);
  });
});
