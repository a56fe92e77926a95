/**
 * Port mapping wire formats — NAT-PMP (RFC 6886) and PCP (RFC 6887) — checked byte by byte
 * against the RFCs' field layouts (the expected bytes are written out by hand, field by field),
 * hostile input (truncated, wrong version, wrong opcode, random bytes) decoded to null without
 * throwing, the two epoch checks, and the default-gateway parsers. The PortMapper itself is
 * tested in portmap-client.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  encodeNatPmpErrorResponse,
  encodeNatPmpExternalAddressRequest,
  encodeNatPmpExternalAddressResponse,
  encodeNatPmpMapRequest,
  encodeNatPmpMapResponse,
  encodeNatPmpUnsupportedOpcodeResponse,
  natPmpEpochPlausible,
  natPmpResultName,
} from '../../src/io/portmap/natpmp.js';
import {
  decodePcpRequest,
  decodePcpResponse,
  encodePcpAnnounceRequest,
  encodePcpErrorForRequest,
  encodePcpMapRequest,
  encodePcpResponse,
  pcpAddress,
  pcpAddressText,
  pcpEpochValid,
  pcpErrorLifetime,
  pcpRenewalDelayMs,
  pcpResultName,
} from '../../src/io/portmap/pcp.js';
import { findDefaultGateway, parseIpRouteJson, parseProcNetRoute } from '../../src/io/portmap/gateway.js';

const bytes = (...parts: number[][]) => new Uint8Array(parts.flat());
const u16 = (n: number) => [n >> 8, n & 0xff];
const u32 = (n: number) => [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const zeros = (n: number) => new Array<number>(n).fill(0);
/** The 128-bit address field holding an IPv4 address: ::ffff:a.b.c.d (RFC 6887 §5). */
const mapped4 = (a: number, b: number, c: number, d: number) => [...zeros(10), 0xff, 0xff, a, b, c, d];

/** A small deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function randomDatagrams(seed: number, count: number, firstByte?: number): Uint8Array[] {
  const r = rng(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const b = new Uint8Array((r() * 80) | 0);
    for (let j = 0; j < b.length; j++) b[j] = (r() * 256) | 0;
    if (firstByte !== undefined && b.length > 0) b[0] = firstByte;
    out.push(b);
  }
  return out;
}

describe('NAT-PMP codec (RFC 6886)', () => {
  it('external address request: version 0, opcode 0 (§3.2)', () => {
    expect(encodeNatPmpExternalAddressRequest()).toEqual(bytes([0, 0]));
    expect(decodeNatPmpRequest(bytes([0, 0]))).toEqual({ kind: 'external-address' });
  });

  it('UDP map request: version, opcode 1, reserved, internal port, suggested port, lifetime (§3.3)', () => {
    const wire = bytes([0, 1], [0, 0], u16(51820), u16(40000), u32(7200));
    expect(encodeNatPmpMapRequest({ protocol: 'udp', internalPort: 51820, suggestedExternalPort: 40000, lifetime: 7200 })).toEqual(wire);
    expect(decodeNatPmpRequest(wire)).toEqual({ kind: 'map', protocol: 'udp', internalPort: 51820, suggestedExternalPort: 40000, lifetime: 7200 });
    // TCP is opcode 2; reserved bytes are ignored on reception
    const tcp = bytes([0, 2], [0xaa, 0xbb], u16(80), u16(0), u32(0));
    expect(decodeNatPmpRequest(tcp)).toEqual({ kind: 'map', protocol: 'tcp', internalPort: 80, suggestedExternalPort: 0, lifetime: 0 });
  });

  it('external address response: opcode 128, result, seconds since start of epoch, address (§3.2)', () => {
    const wire = bytes([0, 128], u16(0), u32(0x01020304), [203, 0, 113, 7]);
    expect(encodeNatPmpExternalAddressResponse({ resultCode: 0, epoch: 0x01020304, externalAddress: '203.0.113.7' })).toEqual(wire);
    expect(decodeNatPmpResponse(wire)).toEqual({ kind: 'external-address', resultCode: 0, epoch: 0x01020304, externalAddress: '203.0.113.7' });
    // on an error the address is sent as zero and ignored on reception
    const refused = bytes([0, 128], u16(3), u32(9), [1, 2, 3, 4]);
    expect(encodeNatPmpExternalAddressResponse({ resultCode: 3, epoch: 9, externalAddress: '203.0.113.7' })).toEqual(bytes([0, 128], u16(3), u32(9), [0, 0, 0, 0]));
    expect(decodeNatPmpResponse(refused)).toEqual({ kind: 'external-address', resultCode: 3, epoch: 9, externalAddress: null });
  });

  it('UDP map response: opcode 129, result, epoch, internal port, mapped external port, lifetime (§3.3)', () => {
    const wire = bytes([0, 129], u16(0), u32(77), u16(51820), u16(40001), u32(3600));
    const fields = { protocol: 'udp', resultCode: 0, epoch: 77, internalPort: 51820, externalPort: 40001, lifetime: 3600 } as const;
    expect(encodeNatPmpMapResponse(fields)).toEqual(wire);
    expect(decodeNatPmpResponse(wire)).toEqual({ kind: 'map', ...fields });
  });

  it('error answers: the 8-byte Unsupported Version form, and an unsupported opcode echoed with result 5 (§3.5)', () => {
    const unsupp = bytes([0, 129], u16(1), u32(5));
    expect(encodeNatPmpErrorResponse({ opcode: 129, resultCode: 1, epoch: 5 })).toEqual(unsupp);
    expect(decodeNatPmpResponse(unsupp)).toEqual({ kind: 'error', opcode: 129, resultCode: 1, epoch: 5 });
    // the RFC's figure shows opcode 0 in that answer; it is read as the same error
    expect(decodeNatPmpResponse(bytes([0, 0], u16(1), u32(5)))).toEqual({ kind: 'error', opcode: 0, resultCode: 1, epoch: 5 });
    expect(decodeNatPmpRequest(bytes([0, 7, 1, 2]))).toEqual({ kind: 'unsupported-opcode', opcode: 7 });
    expect(encodeNatPmpUnsupportedOpcodeResponse(bytes([0, 7, 1, 2, 9]))).toEqual(bytes([0, 135], u16(5), [9]));
    expect(encodeNatPmpUnsupportedOpcodeResponse(bytes([0, 7]))).toEqual(bytes([0, 135], u16(5)));
    expect(natPmpResultName(2)).toBe('Not Authorized/Refused (2)');
    expect(natPmpResultName(99)).toBe('result 99');
  });

  it('malformed → null: truncated, wrong version, a response where a request goes, unknown opcodes', () => {
    const map = encodeNatPmpMapResponse({ protocol: 'udp', resultCode: 0, epoch: 1, internalPort: 1, externalPort: 2, lifetime: 3 });
    for (let n = 0; n < map.length; n++) expect(decodeNatPmpResponse(map.subarray(0, n)), `map response cut to ${n}`).toBeNull();
    const addr = encodeNatPmpExternalAddressResponse({ resultCode: 0, epoch: 1, externalAddress: '192.0.2.1' });
    for (let n = 0; n < addr.length; n++) expect(decodeNatPmpResponse(addr.subarray(0, n)), `address response cut to ${n}`).toBeNull();
    const req = encodeNatPmpMapRequest({ protocol: 'udp', internalPort: 1, suggestedExternalPort: 2, lifetime: 3 });
    for (let n = 0; n < req.length; n++) expect(decodeNatPmpRequest(req.subarray(0, n)), `map request cut to ${n}`).toBeNull();
    expect(decodeNatPmpResponse(bytes([2], [...map.subarray(1)]))).toBeNull(); // version 2
    expect(decodeNatPmpResponse(bytes([0, 131], [...map.subarray(2)]))).toBeNull(); // opcode 131: not a response this version sends
    expect(decodeNatPmpResponse(bytes([0, 1], [...map.subarray(2)]))).toBeNull(); // a request
    expect(decodeNatPmpResponse(bytes([0, 0], u16(0), u32(0)))).toBeNull(); // opcode 0 with success: a request, padded
    expect(decodeNatPmpRequest(bytes([1, 0]))).toBeNull(); // version 1
    expect(decodeNatPmpRequest(bytes([0, 128]))).toBeNull(); // a response: silently ignored (§3.5)
  });

  it('random bytes never throw, and what decodes re-encodes to the same prefix', () => {
    for (const b of [...randomDatagrams(1, 5000), ...randomDatagrams(2, 5000, 0)]) {
      const resp = decodeNatPmpResponse(b);
      if (resp?.kind === 'map') expect(encodeNatPmpMapResponse(resp)).toEqual(b.subarray(0, 16));
      const req = decodeNatPmpRequest(b);
      if (req?.kind === 'map') expect(encodeNatPmpMapRequest(req).subarray(4)).toEqual(b.subarray(4, 12));
    }
  });

  it('epoch (§3.6): implausible when more than 2 s below last SSSoE + 7/8 of the elapsed time', () => {
    const prev = { epoch: 1000, atMs: 0 };
    // 8 s later the conservative estimate is 1000 + 7 = 1007
    expect(natPmpEpochPlausible(prev, 1008, 8000)).toBe(true);
    expect(natPmpEpochPlausible(prev, 1005, 8000)).toBe(true);
    expect(natPmpEpochPlausible(prev, 1004, 8000)).toBe(false);
    expect(natPmpEpochPlausible(prev, 0, 8000)).toBe(false); // restarted
    expect(natPmpEpochPlausible(prev, 998, 0)).toBe(true); // 2 s slack
    expect(natPmpEpochPlausible(prev, 997, 0)).toBe(false);
  });
});

describe('PCP codec (RFC 6887)', () => {
  const nonce = Uint8Array.from({ length: 12 }, (_, i) => i + 1);
  const header = (op: number, lifetime: number, client: number[]) => [2, op, 0, 0, ...u32(lifetime), ...client];

  it('MAP request: common header (§7.1) then nonce, protocol, reserved, ports, suggested address (§11.1)', () => {
    const wire = bytes(header(1, 7200, mapped4(10, 1, 0, 2)), [...nonce], [17, 0, 0, 0], u16(51820), u16(51820), mapped4(0, 0, 0, 0));
    expect(wire.length).toBe(60);
    const req = { lifetime: 7200, clientAddress: '10.1.0.2', nonce, protocol: 17, internalPort: 51820, externalPort: 51820, externalAddress: '0.0.0.0' };
    expect(encodePcpMapRequest(req)).toEqual(wire);
    expect(decodePcpRequest(wire)).toEqual({ kind: 'map', options: [], ...req });
  });

  it('MAP request over IPv6: the addresses as they are, :: for no preference (§5)', () => {
    const client = [0x20, 0x01, 0x0d, 0xb8, ...zeros(11), 0x02];
    const wire = bytes(header(1, 0, client), [...nonce], [17, 0, 0, 0], u16(51820), u16(0), zeros(16));
    expect(encodePcpMapRequest({ lifetime: 0, clientAddress: '2001:db8::2', nonce, protocol: 17, internalPort: 51820, externalPort: 0, externalAddress: '::' })).toEqual(wire);
    expect(decodePcpRequest(wire)).toMatchObject({ kind: 'map', clientAddress: '2001:db8::2', externalAddress: '::', lifetime: 0 });
  });

  it('ANNOUNCE request: the header alone, lifetime 0 (§14.1)', () => {
    const wire = bytes(header(0, 0, mapped4(192, 168, 1, 20)));
    expect(encodePcpAnnounceRequest({ clientAddress: '192.168.1.20' })).toEqual(wire);
    expect(decodePcpRequest(wire)).toEqual({ kind: 'announce', lifetime: 0, clientAddress: '192.168.1.20', options: [] });
  });

  it('MAP response: R bit, reserved, result, lifetime, epoch, 96 reserved bits (§7.2), assigned fields (§11.1)', () => {
    const wire = bytes([2, 0x81, 0, 0], u32(3600), u32(12345), zeros(12), [...nonce], [17, 0, 0, 0], u16(51820), u16(40000), mapped4(203, 0, 113, 11));
    const map = { nonce, protocol: 17, internalPort: 51820, externalPort: 40000, externalAddress: '203.0.113.11' };
    expect(encodePcpResponse({ opcode: 1, resultCode: 0, lifetime: 3600, epoch: 12345, map })).toEqual(wire);
    expect(decodePcpResponse(wire)).toEqual({ version: 2, opcode: 1, resultCode: 0, lifetime: 3600, epoch: 12345, map });
  });

  it('ANNOUNCE response and header-only errors; UNSUPP_VERSION carries the version the server speaks (§9)', () => {
    const announce = bytes([2, 0x80, 0, 0], u32(0), u32(0), zeros(12));
    expect(encodePcpResponse({ opcode: 0, resultCode: 0, lifetime: 0, epoch: 0, map: null })).toEqual(announce);
    expect(decodePcpResponse(announce)).toEqual({ version: 2, opcode: 0, resultCode: 0, lifetime: 0, epoch: 0, map: null });
    const refused = bytes([2, 0x81, 0, 2], u32(1800), u32(9), zeros(12));
    expect(decodePcpResponse(refused)).toEqual({ version: 2, opcode: 1, resultCode: 2, lifetime: 1800, epoch: 9, map: null });
    const otherVersion = bytes([3, 0x81, 0, 1], u32(1800), u32(9), zeros(12));
    expect(decodePcpResponse(otherVersion)).toMatchObject({ version: 3, resultCode: 1 });
    expect(pcpResultName(2)).toBe('NOT_AUTHORIZED (2)');
    expect(pcpResultName(13)).toBe('EXCESSIVE_REMOTE_PEERS (13)');
    expect(pcpResultName(200)).toBe('result 200');
    expect(pcpErrorLifetime(2)).toBe(1800);
    expect(pcpErrorLifetime(8)).toBe(30);
  });

  it('an error for an unreadable request copies it, with the last 96 bits of the client address in the reserved field (§7.2)', () => {
    const req = encodePcpMapRequest({ lifetime: 60, clientAddress: '10.1.0.2', nonce, protocol: 17, internalPort: 1, externalPort: 2, externalAddress: '0.0.0.0' });
    const err = encodePcpErrorForRequest(bytes([...req], [0, 0]), { resultCode: 3, lifetime: 1800, epoch: 44 }); // 62 bytes: cut to 60
    expect(err.length).toBe(60);
    expect([...err.subarray(0, 12)]).toEqual([2, 0x81, 0, 3, ...u32(1800), ...u32(44)]);
    expect([...err.subarray(12, 24)]).toEqual([...req.subarray(12, 24)]);
    expect([...err.subarray(24)]).toEqual([...req.subarray(24)]);
    expect(encodePcpErrorForRequest(bytes([2, 1, 0]), { resultCode: 3, lifetime: 1800, epoch: 1 }).length).toBe(24);
  });

  it('what a server must answer with an error is tagged; what it drops is null (§8.2)', () => {
    const req = encodePcpMapRequest({ lifetime: 60, clientAddress: '10.1.0.2', nonce, protocol: 17, internalPort: 1, externalPort: 2, externalAddress: '0.0.0.0' });
    expect(decodePcpRequest(bytes([2]))).toBeNull(); // shorter than 2
    expect(decodePcpRequest(bytes([2, 0x81], [...req.subarray(2)]))).toBeNull(); // R bit: a response
    expect(decodePcpRequest(bytes([1], [...req.subarray(1)]))).toEqual({ kind: 'unsupported-version', version: 1 });
    expect(decodePcpRequest(req.subarray(0, 20))).toEqual({ kind: 'malformed', opcode: 1 }); // under 24
    expect(decodePcpRequest(req.subarray(0, 58))).toEqual({ kind: 'malformed', opcode: 1 }); // not a multiple of 4
    expect(decodePcpRequest(req.subarray(0, 56))).toEqual({ kind: 'malformed', opcode: 1 }); // MAP without its 36 bytes
    expect(decodePcpRequest(new Uint8Array(1104).fill(0).map((_, i) => (i === 0 ? 2 : i === 1 ? 1 : 0)))).toEqual({ kind: 'malformed', opcode: 1 });
    expect(decodePcpRequest(bytes([2, 2], [...req.subarray(2)]))).toEqual({ kind: 'unsupported-opcode', opcode: 2 }); // PEER
    expect(decodePcpRequest(bytes([2, 9], [...req.subarray(2)]))).toEqual({ kind: 'unsupported-opcode', opcode: 9 });
  });

  it('options (§7.3): code, reserved, length, data padded to 4; one running past the end is MALFORMED_OPTION', () => {
    const req = encodePcpMapRequest({ lifetime: 60, clientAddress: '10.1.0.2', nonce, protocol: 17, internalPort: 1, externalPort: 2, externalAddress: '0.0.0.0' });
    const withOptions = bytes([...req], [2, 0, 0, 0], [130, 0, 0, 3, 7, 8, 9, 0]); // PREFER_FAILURE (no data), an optional one of 3 bytes
    expect(decodePcpRequest(withOptions)).toMatchObject({ kind: 'map', options: [{ code: 2, data: new Uint8Array(0) }, { code: 130, data: bytes([7, 8, 9]) }] });
    expect(decodePcpRequest(bytes([...req], [130, 0, 0, 5, 7, 8, 9, 0]))).toEqual({ kind: 'malformed-option', opcode: 1 });
  });

  it('responses that are not: wrong size, R bit clear, version 1, a MAP success without its payload → null', () => {
    const ok = encodePcpResponse({ opcode: 1, resultCode: 0, lifetime: 1, epoch: 1, map: { nonce, protocol: 17, internalPort: 1, externalPort: 2, externalAddress: '192.0.2.1' } });
    // a MAP success cut anywhere is unreadable (a header-only MAP answer is valid for errors alone)
    for (let n = 0; n < ok.length; n++) expect(decodePcpResponse(ok.subarray(0, n)), `cut to ${n}`).toBeNull();
    expect(decodePcpResponse(bytes([...ok], [0]))).toBeNull(); // 61
    expect(decodePcpResponse(bytes([...ok], zeros(1044)))).toBeNull(); // 1104 > 1100
    expect(decodePcpResponse(bytes([2, 0x01], [...ok.subarray(2)]))).toBeNull(); // a request
    expect(decodePcpResponse(bytes([1], [...ok.subarray(1)]))).toBeNull(); // version 1, success
    for (const b of [...randomDatagrams(3, 5000), ...randomDatagrams(4, 5000, 2)]) {
      expect(() => decodePcpResponse(b)).not.toThrow();
      expect(() => decodePcpRequest(b)).not.toThrow();
    }
  });

  it('addresses: IPv4-mapped only when all 96 prefix bits say so (§5); a zone is dropped', () => {
    expect([...pcpAddress('192.0.2.9')]).toEqual(mapped4(192, 0, 2, 9));
    expect([...pcpAddress('0.0.0.0')]).toEqual(mapped4(0, 0, 0, 0));
    expect([...pcpAddress('fe80::1%eth0')]).toEqual([0xfe, 0x80, ...zeros(13), 1]);
    expect(pcpAddressText(bytes(mapped4(203, 0, 113, 1)))).toBe('203.0.113.1');
    const almost = bytes(mapped4(203, 0, 113, 1));
    almost[3] = 1;
    expect(pcpAddressText(almost)).toBe('0:1::ffff:cb00:7101'); // byte 3 is the low byte of the second group
    expect(() => pcpAddress('not-an-ip')).toThrow('PCP: "not-an-ip" is not an IPv4 or IPv6 address');
  });

  it('epoch (§8.5): back by more than 1 s, or clocks running at clearly different rates, is invalid', () => {
    const prev = { epoch: 1000, atMs: 0 };
    expect(pcpEpochValid(prev, 999, 0)).toBe(true); // back by one second: reordering
    expect(pcpEpochValid(prev, 998, 0)).toBe(false);
    expect(pcpEpochValid(prev, 1100, 100_000)).toBe(true);
    expect(pcpEpochValid(prev, 1000 + 100 - 6 - 2, 100_000)).toBe(true); // server_delta + 2 = client_delta − client_delta/16
    expect(pcpEpochValid(prev, 1000 + 100 - 6 - 3, 100_000)).toBe(false);
    expect(pcpEpochValid(prev, 1000 + 108, 100_000)).toBe(true); // client_delta + 2 = server_delta − server_delta/16
    expect(pcpEpochValid(prev, 1000 + 109, 100_000)).toBe(false);
    expect(pcpEpochValid(prev, 1000 + 200, 100_000)).toBe(false); // the server's clock ran twice as fast
    expect(pcpEpochValid(prev, 5, 100_000)).toBe(false); // restarted
  });

  it('renewal falls between 1/2 and 5/8 of the lifetime (§11.2.1)', () => {
    expect(pcpRenewalDelayMs(4, 0)).toBe(2000);
    expect(pcpRenewalDelayMs(4, 0.999999)).toBeCloseTo(2500, 0);
  });
});

describe('default gateway', () => {
  it('reads `ip -j route show default`, lowest metric first, an IPv6 link-local gateway with its zone', () => {
    const v4 = '[{"dst":"default","gateway":"10.1.0.1","dev":"lan0","metric":600,"flags":[]},{"dst":"default","gateway":"10.2.0.1","dev":"wlan0","metric":100,"flags":[]}]';
    expect(parseIpRouteJson(v4, 4)).toEqual([
      { address: '10.2.0.1', dev: 'wlan0', family: 4, metric: 100 },
      { address: '10.1.0.1', dev: 'lan0', family: 4, metric: 600 },
    ]);
    const v6 = '[{"dst":"default","gateway":"fe80::1","dev":"eth0","protocol":"ra","metric":1024,"flags":[],"pref":"medium"}]';
    expect(parseIpRouteJson(v6, 6)).toEqual([{ address: 'fe80::1%eth0', dev: 'eth0', family: 6, metric: 1024 }]);
    expect(parseIpRouteJson('[{"dst":"default","dev":"wg0","flags":[]}]', 4)).toEqual([]); // no gateway: a device route
    expect(parseIpRouteJson('not json', 4)).toBeNull();
    expect(parseIpRouteJson('{}', 4)).toBeNull();
  });

  it('reads /proc/net/route: little-endian hex, default routes with the gateway flag', () => {
    const text = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'eth0\t00000000\t0100000A\t0003\t0\t0\t200\t00000000\t0\t0\t0',
      'eth1\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0',
      'eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
      'eth2\t00000000\t01010101\t0001\t0\t0\t0\t00000000\t0\t0\t0', // no RTF_GATEWAY
    ].join('\n');
    expect(parseProcNetRoute(text)).toEqual([
      { address: '192.0.2.1', dev: 'eth1', family: 4, metric: 100 },
      { address: '10.0.0.1', dev: 'eth0', family: 4, metric: 200 },
    ]);
  });

  it('falls back to /proc/net/route when `ip` is missing; none is null', async () => {
    const proc = 'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\neth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n';
    expect(await findDefaultGateway(4, async () => null, async () => proc)).toMatchObject({ address: '192.168.1.1', dev: 'eth0' });
    expect(await findDefaultGateway(4, async () => '[]', async () => proc)).toBeNull();
    expect(await findDefaultGateway(6, async () => null, async () => proc)).toBeNull();
    const calls: string[][] = [];
    await findDefaultGateway(6, async (cmd, args) => (calls.push([cmd, ...args]), '[]'));
    expect(calls).toEqual([['ip', '-j', '-6', 'route', 'show', 'default']]);
  });
});
