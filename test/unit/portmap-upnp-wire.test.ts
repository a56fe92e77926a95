/**
 * UPnP IGD wire formats (src/io/portmap/upnp-wire.ts): the M-SEARCH text (UDA 1.1 §1.3.2), SSDP
 * answers, the XML extractor, device descriptions (a miniupnpd-like IGD:2 one, IGD:1 with
 * URLBase, hostile URLs), SOAP requests and responses (UDA §3.2), and random or malformed input:
 * null or an empty list, never a throw, and in time linear in the input.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeSoapResponse,
  decodeSsdpAnswer,
  encodeMSearch,
  encodeSoapRequest,
  parseDeviceDescription,
  upnpErrorName,
  usableExternalAddress,
  xmlElements,
  xmlField,
  xmlText,
} from '../../src/io/portmap/upnp-wire.js';
import { deviceDescription } from './support/upnp-fakes.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A small deterministic PRNG (xorshift32), so a failing fuzz case can be replayed. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

describe('SSDP', () => {
  it('M-SEARCH: the request line, HOST, MAN in quotes, MX and ST, CRLF line ends and an empty line', () => {
    expect(dec(encodeMSearch('urn:schemas-upnp-org:device:InternetGatewayDevice:1'))).toBe(
      'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSER-AGENT: Linux UPnP/1.1 keymesh/1\r\n\r\n',
    );
  });

  it('an answer: LOCATION, ST and USN, headers in any case, LF or CRLF', () => {
    const miniupnpd =
      'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:3d3c::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: Debian UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://10.77.0.1:35299/rootDesc.xml\r\n\r\n';
    expect(decodeSsdpAnswer(enc(miniupnpd))).toEqual({
      location: 'http://10.77.0.1:35299/rootDesc.xml',
      st: 'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
      usn: 'uuid:3d3c::urn:schemas-upnp-org:device:InternetGatewayDevice:1',
    });
    expect(decodeSsdpAnswer(enc('HTTP/1.0 200 OK\nlocation:http://10.0.0.1/d.xml\n\n'))?.location).toBe('http://10.0.0.1/d.xml');
  });

  it('not an answer: another status, a NOTIFY or M-SEARCH, no LOCATION, too long, not UTF-8, too short', () => {
    for (const t of [
      'HTTP/1.1 404 Not Found\r\nLOCATION: http://10.0.0.1/\r\n\r\n',
      'NOTIFY * HTTP/1.1\r\nLOCATION: http://10.0.0.1/\r\nNTS: ssdp:alive\r\n\r\n',
      dec(encodeMSearch('ssdp:all')),
      'HTTP/1.1 200 OK\r\nST: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.1/' + 'a'.repeat(600) + '\r\n\r\n',
      'HTTP/1.1 200 OK\r\nLOCATION: ' + 'a'.repeat(3000) + '\r\n\r\n',
      'HTTP/1.1 200',
    ])
      expect(decodeSsdpAnswer(enc(t)), t.slice(0, 40)).toBeNull();
    expect(decodeSsdpAnswer(new Uint8Array([...enc('HTTP/1.1 200 OK\r\nLOCATION: http://a/'), 0xff, 0xfe, 13, 10, 13, 10]))).toBeNull();
  });
});

describe('XML extraction', () => {
  it('finds elements by local name under any prefix, self-closing ones as "", in order', () => {
    const x = '<a><u:x attr="1">one</u:x><x/><x >two</x ><xy>no</xy><x>three</x></a>';
    expect(xmlElements(x, 'x')).toEqual(['one', '', 'two', 'three']);
    expect(xmlElements(x, 'xy')).toEqual(['no']);
    expect(xmlElements('<x>unclosed', 'x')).toEqual([]);
    expect(xmlElements('<x>a</x><x>b', 'x')).toEqual(['a']);
  });

  it('decodes the predefined entities and character references; refuses unknown ones and markup in a leaf', () => {
    expect(xmlText(' a &lt;&gt;&amp;&quot;&apos; &#65;&#x42; ')).toBe(`a <>&"' AB`);
    expect(xmlText('&nbsp;')).toBeNull();
    expect(xmlText('&#0;')).toBeNull();
    expect(xmlText('&#xD800;')).toBeNull();
    expect(xmlField('<a><b>1</b></a>', 'a')).toBeNull();
    expect(xmlField('<a>&amp;x</a>', 'a')).toBe('&x');
  });

  it('is linear: 64 KiB of hostile nesting and unclosed tags are scanned in milliseconds', () => {
    const hostile = ['<service>'.repeat(7000), '<'.repeat(65536), '<a:' + 'b'.repeat(65530) + '>', '<service><serviceType>'.repeat(3000)];
    for (const h of hostile) {
      const t0 = performance.now();
      parseDeviceDescription(h, 'http://10.0.0.1/');
      xmlElements(h, 'serviceType');
      expect(performance.now() - t0).toBeLessThan(200);
    }
  });
});

describe('device description', () => {
  it('finds the WAN connection service deep in an IGD:2 description (miniupnpd\'s layout) and resolves its control URL', () => {
    expect(parseDeviceDescription(deviceDescription('urn:schemas-upnp-org:service:WANIPConnection:2'), 'http://10.77.0.1:35299/rootDesc.xml')).toEqual([
      { serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2', controlUrl: 'http://10.77.0.1:35299/ctl/IPConn' },
    ]);
  });

  it('prefers WANIPConnection:2, then :1, then WANPPPConnection:1; URLBase is used when it is on the same host', () => {
    const svc = (t: string, c: string) => `<service><serviceType>urn:schemas-upnp-org:service:${t}</serviceType><controlURL>${c}</controlURL></service>`;
    const xml = `<root><URLBase>http://10.0.0.1:80/base/</URLBase><device>${svc('WANPPPConnection:1', 'ppp')}${svc('WANIPConnection:1', '/ip1')}${svc('WANIPConnection:2', 'http://10.0.0.1:5000/ip2')}${svc('Layer3Forwarding:1', '/l3f')}</device></root>`;
    expect(parseDeviceDescription(xml, 'http://10.0.0.1:5000/desc.xml')).toEqual([
      { serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2', controlUrl: 'http://10.0.0.1:5000/ip2' },
      { serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:1', controlUrl: 'http://10.0.0.1/ip1' },
      { serviceType: 'urn:schemas-upnp-org:service:WANPPPConnection:1', controlUrl: 'http://10.0.0.1/base/ppp' },
    ]);
  });

  it('drops control URLs on another host or not over http, and a URLBase elsewhere', () => {
    const svc = (c: string) => `<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>${c}</controlURL></service>`;
    const xml = `<root><URLBase>http://192.0.2.9/</URLBase>${svc('http://192.0.2.9/ctl')}${svc('https://10.0.0.1/ctl')}${svc('file:///etc/passwd')}${svc('/ok')}</root>`;
    expect(parseDeviceDescription(xml, 'http://10.0.0.1:5000/d.xml')).toEqual([{ serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:1', controlUrl: 'http://10.0.0.1:5000/ok' }]);
    expect(parseDeviceDescription(xml, 'not a url')).toEqual([]);
  });
});

describe('SOAP', () => {
  it('a request: the SOAPAction header value, the envelope, the arguments in order and escaped', () => {
    const r = encodeSoapRequest('urn:schemas-upnp-org:service:WANIPConnection:1', 'AddPortMapping', [
      ['NewExternalPort', 51820],
      ['NewPortMappingDescription', 'a<b&c'],
    ]);
    expect(r.soapAction).toBe('"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"');
    expect(r.body).toBe(
      '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
        '<s:Body><u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewExternalPort>51820</NewExternalPort>' +
        '<NewPortMappingDescription>a&lt;b&amp;c</NewPortMappingDescription></u:AddPortMapping></s:Body></s:Envelope>\r\n',
    );
  });

  it('a response: out arguments of <ActionResponse>; a fault: the UPnPError code and description', () => {
    const okBody =
      '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"><NewExternalIPAddress>203.0.113.1</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>';
    expect(decodeSoapResponse(200, okBody, 'GetExternalIPAddress', ['NewExternalIPAddress'])).toEqual({ ok: true, fields: new Map([['NewExternalIPAddress', '203.0.113.1']]) });
    expect(decodeSoapResponse(200, '<u:AddPortMappingResponse xmlns:u="x"/>', 'AddPortMapping')).toEqual({ ok: true, fields: new Map() });
    const faultBody =
      '<s:Envelope><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>';
    expect(decodeSoapResponse(500, faultBody, 'AddPortMapping')).toEqual({ ok: false, code: 718, description: 'ConflictInMappingEntry' });
    expect(decodeSoapResponse(500, '<html>Internal Server Error</html>', 'AddPortMapping')).toEqual({ ok: false, code: null, description: 'HTTP 500' });
    expect(decodeSoapResponse(200, '<html>hello</html>', 'AddPortMapping')).toBeNull();
    expect(decodeSoapResponse(200, okBody, 'AddPortMapping')).toBeNull();
    expect(decodeSoapResponse(302, '', 'AddPortMapping')).toBeNull();
  });

  it('names errors; external addresses usable for an announcement', () => {
    expect(upnpErrorName(725)).toBe('OnlyPermanentLeasesSupported (725)');
    expect(upnpErrorName(899, 'Weird\u0007thing')).toBe('Weird?thing (899)');
    expect(upnpErrorName(null, '')).toBe('error');
    expect(usableExternalAddress('203.0.113.1')).toBe('203.0.113.1');
    for (const a of ['0.0.0.0', '', undefined, '::1', '224.0.0.1', '255.255.255.255', '127.0.0.1', '1.2.3', 'x']) expect(usableExternalAddress(a)).toBeNull();
  });
});

describe('random and mutated input', () => {
  it('never throws: 3000 random datagrams, mutated descriptions and SOAP answers', () => {
    const r = rng(0x5eed);
    const pieces = ['<', '>', '</', '/>', 'service', 'serviceType', 'controlURL', 'URLBase', 'u:', '&amp;', '&#x', ';', 'http://10.0.0.1/', 'urn:schemas-upnp-org:service:WANIPConnection:1', '"', ' ', '\r\n', 'HTTP/1.1 200 OK', 'LOCATION:', 'UPnPError', 'errorCode', '718', 'AddPortMappingResponse'];
    const good = [deviceDescription('urn:schemas-upnp-org:service:WANIPConnection:1'), 'HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.1:5000/d.xml\r\n\r\n'];
    for (let i = 0; i < 3000; i++) {
      let s: string;
      if (i % 3 === 0) s = Array.from({ length: Math.floor(r() * 60) }, () => pieces[Math.floor(r() * pieces.length)]).join('');
      else {
        const base = good[i % 2];
        const chars = [...base];
        for (let k = 0; k < 1 + Math.floor(r() * 8); k++) chars[Math.floor(r() * chars.length)] = String.fromCharCode(Math.floor(r() * 128));
        s = chars.join('');
      }
      const bytes = i % 5 === 0 ? Uint8Array.from({ length: Math.floor(r() * 300) }, () => Math.floor(r() * 256)) : enc(s);
      expect(() => {
        decodeSsdpAnswer(bytes);
        for (const svc of parseDeviceDescription(s, 'http://10.0.0.1:5000/d.xml')) {
          expect(new URL(svc.controlUrl).hostname).toBe('10.0.0.1');
        }
        decodeSoapResponse(r() < 0.5 ? 200 : 500, s, 'AddPortMapping', ['NewExternalIPAddress']);
      }).not.toThrow();
    }
  });
});
