/**
 * UPnP IGD's wire formats, as small pure functions (no I/O): the SSDP search and its answer
 * (UPnP Device Architecture 1.1 §1.3), the device description's few elements we need (UDA §2.3:
 * serviceType, controlURL, URLBase), and SOAP control requests and responses (UDA §3.2, with the
 * WANIPConnection:1/:2 and WANPPPConnection:1 actions and error codes).
 *
 *   M-SEARCH * HTTP/1.1            HTTP/1.1 200 OK
 *   HOST: 239.255.255.250:1900     CACHE-CONTROL: max-age=120
 *   MAN: "ssdp:discover"     ──▶   ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1
 *   MX: 1                          LOCATION: http://192.168.1.1:5000/rootDesc.xml
 *   ST: <search target>            USN: uuid:…::urn:…
 *
 * XML: not a parser. The documents are the router's, i.e. hostile input, and we need a handful
 * of leaf elements from them, so we scan for those by local name (any namespace prefix), take
 * their text, and decode the five predefined entities and character references. Service elements
 * never nest, so scanning the whole description for <service> finds those of every embedded
 * device. Every scan is linear in the (bounded) input; nothing here throws on bad input: it
 * returns null, or an empty list.
 */
import { isIPv4 } from 'node:net';

export const SSDP_GROUP = '239.255.255.250';
export const SSDP_PORT = 1900;
/** UDA §1.3.2: MX, the seconds a device may wait before it answers a multicast search. */
export const SSDP_MX = 1;

export const ST_IGD = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1';
export const ST_WAN_IP = 'urn:schemas-upnp-org:service:WANIPConnection:1';

/** The services that map ports, best first (IGD:2's WANIPConnection:2 has AddAnyPortMapping and finite leases by spec). */
export const WAN_SERVICES = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1',
] as const;

/** UPnP and IGD error codes (UDA §3.2.2; WANIPConnection:2 §2.4.16) that the client acts on or names. */
export const UpnpError = {
  INVALID_ARGS: 402,
  ACTION_FAILED: 501,
  NOT_AUTHORIZED: 606,
  NO_SUCH_ENTRY: 714,
  CONFLICT_IN_MAPPING_ENTRY: 718,
  SAME_PORT_VALUES_REQUIRED: 724,
  ONLY_PERMANENT_LEASES_SUPPORTED: 725,
  NO_PORT_MAPS_AVAILABLE: 728,
  CONFLICT_WITH_OTHER_MECHANISMS: 729,
} as const;

const ERROR_NAMES: Record<number, string> = {
  401: 'Invalid Action',
  402: 'Invalid Args',
  501: 'Action Failed',
  606: 'Action not authorized',
  714: 'NoSuchEntryInArray',
  715: 'WildCardNotPermittedInSrcIP',
  716: 'WildCardNotPermittedInExtPort',
  718: 'ConflictInMappingEntry',
  724: 'SamePortValuesRequired',
  725: 'OnlyPermanentLeasesSupported',
  726: 'RemoteHostOnlySupportsWildcard',
  727: 'ExternalPortOnlySupportsWildcard',
  728: 'NoPortMapsAvailable',
  729: 'ConflictWithOtherMechanisms',
  732: 'WildCardNotPermittedInIntPort',
};

/** "ConflictInMappingEntry (718)"; an unknown code with the router's own description, if any. */
export function upnpErrorName(code: number | null, description = ''): string {
  const name = (code !== null && ERROR_NAMES[code]) || printable(description, 60) || 'error';
  return code === null ? name : `${name} (${code})`;
}

// ───────────────────────────── SSDP ─────────────────────────────

/** UDA §1.3.2: a multicast M-SEARCH for `st`. (Sent unicast to the gateway as well; it is the same text.) */
export function encodeMSearch(st: string, mx = SSDP_MX): Uint8Array {
  const text = `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_GROUP}:${SSDP_PORT}\r\nMAN: "ssdp:discover"\r\nMX: ${mx}\r\nST: ${st}\r\nUSER-AGENT: Linux UPnP/1.1 keymesh/1\r\n\r\n`;
  return new TextEncoder().encode(text);
}

export interface SsdpAnswer {
  location: string;
  st: string;
  usn: string;
}

/** Larger is not an SSDP answer (they are a few hundred bytes). */
export const SSDP_MAX_ANSWER = 2048;

/** A search answer (`HTTP/1.1 200 OK` with LOCATION), or null for anything else. */
export function decodeSsdpAnswer(bytes: Uint8Array): SsdpAnswer | null {
  if (bytes.length < 16 || bytes.length > SSDP_MAX_ANSWER) return null;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  const lines = text.split(/\r?\n/);
  if (!/^HTTP\/1\.[01] 200\b/i.test(lines[0])) return null;
  const h = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    h.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  const location = h.get('location');
  if (!location || location.length > 512) return null;
  return { location, st: h.get('st') ?? '', usn: h.get('usn') ?? '' };
}

// ───────────────────────────── XML ─────────────────────────────

const MAX_ELEMENTS = 64;

/** Decode the predefined entities and character references; null on one we do not know. */
export function xmlText(raw: string): string | null {
  let bad = false;
  const out = raw.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z]{2,4});/g, (_, e: string) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp === 0) {
        bad = true;
        return '';
      }
      return String.fromCodePoint(cp);
    }
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
    if (!(e in named)) bad = true;
    return named[e] ?? '';
  });
  return bad ? null : out.trim();
}

export function xmlEscape(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/**
 * The raw contents of every element whose local name is `name` (any prefix), in document order,
 * at most 64; a self-closing one has "". An element without its end tag ends the scan.
 */
export function xmlElements(xml: string, name: string): string[] {
  const open = new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${name}(?=[\\s/>])[^>]*>`, 'g');
  const close = new RegExp(`</(?:[A-Za-z_][\\w.-]*:)?${name}\\s*>`, 'g');
  const out: string[] = [];
  let from = 0;
  while (out.length < MAX_ELEMENTS) {
    open.lastIndex = from;
    const o = open.exec(xml);
    if (!o) break;
    const start = o.index + o[0].length;
    if (o[0].endsWith('/>')) {
      out.push('');
      from = start;
      continue;
    }
    close.lastIndex = start;
    const c = close.exec(xml);
    if (!c) break;
    out.push(xml.slice(start, c.index));
    from = c.index + c[0].length;
  }
  return out;
}

/** The decoded text of the first element `name` in `xml`, or null (absent, or text we cannot decode, or markup inside). */
export function xmlField(xml: string, name: string): string | null {
  const raw = xmlElements(xml, name)[0];
  if (raw === undefined || raw.includes('<')) return null;
  return xmlText(raw);
}

// ───────────────────────────── device description ─────────────────────────────

export interface WanService {
  serviceType: (typeof WAN_SERVICES)[number];
  /** Absolute http URL. */
  controlUrl: string;
}

/**
 * The port mapping services of a device description fetched from `location`, best first
 * (WAN_SERVICES' order, then document order). Control URLs are resolved against URLBase (IGD:1
 * devices may give one) or else the location; only http URLs on the location's host are kept:
 * the control point must not be sent elsewhere by what a device says.
 */
export function parseDeviceDescription(xml: string, location: string): WanService[] {
  let base: URL;
  try {
    base = new URL(location);
  } catch {
    return [];
  }
  const urlBase = xmlField(xml, 'URLBase');
  if (urlBase) {
    try {
      const u = new URL(urlBase);
      if (u.protocol === 'http:' && u.hostname === base.hostname) base = u;
    } catch {
      /* keep the location */
    }
  }
  const found: WanService[] = [];
  for (const svc of xmlElements(xml, 'service')) {
    const type = xmlField(svc, 'serviceType');
    const control = xmlField(svc, 'controlURL');
    const known = WAN_SERVICES.find((t) => t === type);
    if (!known || !control) continue;
    let url: URL;
    try {
      url = new URL(control, base);
    } catch {
      continue;
    }
    if (url.protocol !== 'http:' || url.hostname !== base.hostname) continue;
    found.push({ serviceType: known, controlUrl: url.href });
  }
  return found.sort((a, b) => WAN_SERVICES.indexOf(a.serviceType) - WAN_SERVICES.indexOf(b.serviceType));
}

// ───────────────────────────── SOAP ─────────────────────────────

export interface SoapRequest {
  soapAction: string;
  body: string;
}

/** UDA §3.2.1: an action invocation; the arguments go in the order the service declares them. */
export function encodeSoapRequest(serviceType: string, action: string, args: Array<[string, string | number]>): SoapRequest {
  const inner = args.map(([k, v]) => `<${k}>${xmlEscape(String(v))}</${k}>`).join('');
  const body =
    '<?xml version="1.0"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${xmlEscape(serviceType)}">${inner}</u:${action}></s:Body></s:Envelope>\r\n`;
  return { soapAction: `"${serviceType}#${action}"`, body };
}

export type SoapResult = { ok: true; fields: Map<string, string> } | { ok: false; code: number | null; description: string };

/**
 * The answer to `action` (UDA §3.2.2): HTTP 200 with <actionResponse> and its out arguments, or
 * a fault (HTTP 500) with the UPnPError code. Null when it is neither.
 */
export function decodeSoapResponse(status: number, body: string, action: string, outArgs: readonly string[] = []): SoapResult | null {
  if (status === 200) {
    const resp = xmlElements(body, `${action}Response`)[0];
    if (resp === undefined) return null;
    const fields = new Map<string, string>();
    for (const name of outArgs) {
      const v = xmlField(resp, name);
      if (v !== null) fields.set(name, v);
    }
    return { ok: true, fields };
  }
  const err = xmlElements(body, 'UPnPError')[0];
  if (err !== undefined) {
    const codeText = xmlField(err, 'errorCode');
    const code = codeText !== null && /^\d{1,4}$/.test(codeText) ? Number(codeText) : null;
    return { ok: false, code, description: printable(xmlField(err, 'errorDescription') ?? '', 80) };
  }
  if (status >= 400 && status < 600) return { ok: false, code: null, description: `HTTP ${status}` };
  return null;
}

/** A dotted-quad IPv4 address a mapping can be announced with (not 0.0.0.0, not multicast or broadcast). */
export function usableExternalAddress(s: string | undefined): string | null {
  if (!s || !isIPv4(s)) return null;
  const first = Number(s.split('.')[0]);
  if (s === '0.0.0.0' || first >= 224 || first === 0 || first === 127) return null;
  return s;
}

/** Text from the router, safe for a log line: printable ASCII only, bounded. */
export function printable(s: string, max: number): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? clean.slice(0, max) + '…' : clean;
}
