/**
 * The test gateway's server logic (netns/portmap-server.ts): what it answers to good and bad
 * NAT-PMP and PCP requests, and how its mappings live and die.
 */
import { describe, expect, it } from 'vitest';
import { PortMapServer } from '../../netns/portmap-server.js';
import { decodeNatPmpResponse, encodeNatPmpExternalAddressRequest, encodeNatPmpMapRequest } from '../../src/io/portmap/natpmp.js';
import { decodePcpResponse, encodePcpAnnounceRequest, encodePcpMapRequest, PcpResult } from '../../src/io/portmap/pcp.js';

const WAN = '203.0.113.11';
const CLIENT = { address: '10.1.0.2' };
const nonce = new Uint8Array(12).fill(7);
const map = (over: Partial<Parameters<typeof encodePcpMapRequest>[0]> = {}) =>
  encodePcpMapRequest({ lifetime: 60, clientAddress: CLIENT.address, nonce, protocol: 17, internalPort: 51820, externalPort: 0, externalAddress: '0.0.0.0', ...over });
const pcp = (s: PortMapServer, b: Uint8Array, now = 0) => decodePcpResponse(s.handle(b, CLIENT, now).reply!);

describe('PortMapServer', () => {
  it('PCP MAP: creates, refreshes (same port), deletes; the answer carries the WAN address and the epoch', () => {
    const s = new PortMapServer({ wanAddress: WAN, random: () => 0 }, 0);
    const a = s.handle(map({ externalPort: 40000 }), CLIENT, 5000);
    expect(a.changes.map((c) => c.change)).toEqual(['add']);
    expect(decodePcpResponse(a.reply!)).toMatchObject({ resultCode: 0, lifetime: 60, epoch: 5, map: { externalPort: 40000, externalAddress: WAN, internalPort: 51820, nonce } });
    expect(pcp(s, map({ externalPort: 1 }), 6000)).toMatchObject({ resultCode: 0, map: { externalPort: 40000 } });
    const d = s.handle(map({ lifetime: 0 }), CLIENT, 7000);
    expect(d.changes.map((c) => c.change)).toEqual(['delete']);
    expect(decodePcpResponse(d.reply!)).toMatchObject({ resultCode: 0, lifetime: 0 });
    expect(s.mappings.size).toBe(0);
  });

  it('PCP errors: version, malformed, address mismatch, another nonce, options, protocol, refusal', () => {
    const s = new PortMapServer({ wanAddress: WAN }, 0);
    const v1 = map();
    v1[0] = 1;
    expect(pcp(s, v1)).toMatchObject({ version: 2, resultCode: PcpResult.UNSUPP_VERSION, lifetime: 1800 });
    expect(pcp(s, map().subarray(0, 40))).toMatchObject({ resultCode: PcpResult.MALFORMED_REQUEST });
    expect(pcp(s, map({ clientAddress: '10.1.0.9' }))).toMatchObject({ resultCode: PcpResult.ADDRESS_MISMATCH, map: { nonce } });
    expect(pcp(s, map({ protocol: 132 }))).toMatchObject({ resultCode: PcpResult.UNSUPP_PROTOCOL });
    expect(pcp(s, new Uint8Array([...map(), 2, 0, 0, 0]))).toMatchObject({ resultCode: PcpResult.UNSUPP_OPTION });
    expect(pcp(s, new Uint8Array([...map(), 130, 0, 0, 0]))).toMatchObject({ resultCode: PcpResult.SUCCESS }); // optional: ignored
    expect(pcp(s, map({ nonce: new Uint8Array(12) }))).toMatchObject({ resultCode: PcpResult.NOT_AUTHORIZED, lifetime: 1800 });
    const peer = map();
    peer[1] = 2;
    expect(pcp(s, peer)).toMatchObject({ resultCode: PcpResult.UNSUPP_OPCODE });
    expect(pcp(s, encodePcpAnnounceRequest({ clientAddress: CLIENT.address }), 3000)).toEqual({ version: 2, opcode: 0, resultCode: 0, lifetime: 0, epoch: 3, map: null });
    const refusing = new PortMapServer({ wanAddress: WAN, refuse: true }, 0);
    expect(pcp(refusing, map())).toMatchObject({ resultCode: PcpResult.NOT_AUTHORIZED });
    expect(refusing.mappings.size).toBe(0);
  });

  it('NAT-PMP: external address, map, delete; a PCP request to a NAT-PMP-only gateway gets Unsupported Version', () => {
    const s = new PortMapServer({ wanAddress: WAN, natPmpOnly: true }, 0);
    expect(decodeNatPmpResponse(s.handle(encodeNatPmpExternalAddressRequest(), CLIENT, 2000).reply!)).toEqual({ kind: 'external-address', resultCode: 0, epoch: 2, externalAddress: WAN });
    expect(decodeNatPmpResponse(s.handle(map(), CLIENT, 2000).reply!)).toEqual({ kind: 'error', opcode: 129, resultCode: 1, epoch: 2 });
    const m = s.handle(encodeNatPmpMapRequest({ protocol: 'udp', internalPort: 51820, suggestedExternalPort: 51820, lifetime: 7200 }), CLIENT, 2000);
    expect(decodeNatPmpResponse(m.reply!)).toMatchObject({ kind: 'map', resultCode: 0, externalPort: 51820, lifetime: 7200 });
    const d = s.handle(encodeNatPmpMapRequest({ protocol: 'udp', internalPort: 51820, suggestedExternalPort: 0, lifetime: 0 }), CLIENT, 3000);
    expect(decodeNatPmpResponse(d.reply!)).toMatchObject({ kind: 'map', resultCode: 0, internalPort: 51820, externalPort: 0, lifetime: 0 });
    expect(d.changes.map((c) => c.change)).toEqual(['delete']);
    expect(decodeNatPmpResponse(s.handle(new Uint8Array([0, 9]), CLIENT, 0).reply!)).toBeNull(); // opcode 137 is no response a client reads…
    expect([...s.handle(new Uint8Array([0, 9]), CLIENT, 0).reply!]).toEqual([0, 137, 0, 5]); // …but it is the §3.5 echo
    expect(s.handle(new Uint8Array([0, 129, 0, 0]), CLIENT, 0).reply).toBeNull(); // a response: ignored
  });

  it('mappings expire with their lifetime; restart loses them and starts the epoch again', () => {
    const s = new PortMapServer({ wanAddress: WAN, maxLifetime: 10 }, 0);
    expect(pcp(s, map({ lifetime: 3600 }))).toMatchObject({ lifetime: 10 }); // granted up to maxLifetime
    expect(s.nextExpiry()).toBe(10_000);
    expect(s.expire(9_999)).toEqual([]);
    expect(s.expire(10_000).map((c) => c.change)).toEqual(['expire']);
    pcp(s, map(), 20_000);
    expect(s.restart(30_000).map((c) => c.change)).toEqual(['delete']);
    expect(s.epoch(31_000)).toBe(1);
    expect(s.announcements(31_000).map((b) => b[0])).toEqual([2, 0]);
  });
});
