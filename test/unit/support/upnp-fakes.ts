/**
 * An in-memory UPnP Internet Gateway Device for the UpnpMapper's seams, on the virtual clock of
 * portmap-fakes.ts: it answers M-SEARCH (1 ms later), serves a device description like
 * miniupnpd's (IGD:2 with WANIPConnection:2, or IGD:1 with WANIPConnection:1 or
 * WANPPPConnection:1), and runs GetExternalIPAddress, AddPortMapping and DeletePortMapping on a
 * mapping table, with the refusals real routers give (ConflictInMappingEntry for a port held by
 * another client, OnlyPermanentLeasesSupported, Action not authorized):
 *
 *   UpnpMapper ──openSsdp/send──▶ (1 ms) ──▶ answer ──▶ (1 ms) ──▶ http GET / POST ──▶ (1 ms) ──▶ result
 *
 * It can go silent (no SSDP answer), hang (HTTP never answers), or be made to say anything.
 */
import type { HttpRequest, HttpResult, SsdpHandlers, UpnpTransport } from '../../../src/io/portmap/upnp-transport.js';
import { xmlField } from '../../../src/io/portmap/upnp-wire.js';
import { CLIENT, GATEWAY, WAN, type FakeClock } from './portmap-fakes.js';

export const HTTP_PORT = 5000;
export const LOCATION = `http://${GATEWAY}:${HTTP_PORT}/rootDesc.xml`;

export interface IgdMapping {
  client: string;
  internalPort: number;
  lease: number;
}

export function deviceDescription(serviceType: string, controlPath = '/ctl/IPConn'): string {
  const igd = serviceType.endsWith(':2') ? 2 : 1;
  return `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:${igd}</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:${igd}</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType><controlURL>/ctl/CmnIfCfg</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:${igd}</deviceType>
<serviceList><service><serviceType>${serviceType}</serviceType><serviceId>urn:upnp-org:serviceId:WANConn1</serviceId>
<SCPDURL>/WANCn.xml</SCPDURL><controlURL>${controlPath}</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>`;
}

function fault(code: number, description: string): HttpResult {
  return {
    status: 500,
    body: `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode><errorDescription>${description}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`,
  };
}

function ok(serviceType: string, action: string, inner = ''): HttpResult {
  return {
    status: 200,
    body: `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:${action}Response xmlns:u="${serviceType}">${inner}</u:${action}Response></s:Body></s:Envelope>`,
  };
}

export class FakeIgd {
  serviceType = 'urn:schemas-upnp-org:service:WANIPConnection:2';
  externalAddress = WAN;
  /** No SSDP answer at all. */
  silent = false;
  /** HTTP requests are accepted and never answered. */
  hang = false;
  /** Only lease 0 (IGD:1 routers): 725 for any other. */
  permanentOnly = false;
  /** Answer AddPortMapping with this error code. */
  refuse: number | null = null;
  /** Ports held by another client (718 for them). */
  readonly taken = new Set<number>();
  readonly mappings = new Map<number, IgdMapping>();
  /** What the client did, in order: "search ST", "GET /rootDesc.xml", "AddPortMapping 51820 3600", … */
  readonly seen: string[] = [];
  /** Override the SSDP answers (hostile tests): datagrams to send for one search, and from where. */
  ssdpAnswer: ((st: string) => Array<{ bytes: Uint8Array; from?: string }>) | null = null;
  /** Override an HTTP answer (hostile tests); null: the device's own. */
  httpAnswer: ((req: HttpRequest) => HttpResult | null) | null = null;
  holds = 0;

  constructor(readonly clock: FakeClock) {}

  readonly transport: UpnpTransport = {
    localAddress: () => Promise.resolve(CLIENT),
    openSsdp: (_local, h: SsdpHandlers) => {
      let closed = false;
      return {
        send: (bytes, address) => {
          if (closed) return;
          const text = new TextDecoder().decode(bytes);
          const st = /\r\nST: (.*)\r\n/.exec(text)?.[1] ?? '';
          this.seen.push(`search ${address === GATEWAY ? 'unicast' : 'multicast'} ${st}`);
          if (this.silent) return;
          const answers = this.ssdpAnswer ? this.ssdpAnswer(st) : [{ bytes: this.answer(st) }];
          for (const a of answers)
            this.clock.setTimeout(() => {
              if (!closed) h.datagram(a.bytes, { address: a.from ?? GATEWAY, port: 1900 });
            }, 1);
        },
        close: () => {
          closed = true;
        },
      };
    },
    http: (req) => {
      if (req.hold) this.holds++;
      const path = new URL(req.url).pathname;
      const action = /#(\w+)"$/.exec(req.headers.SOAPAction ?? '')?.[1];
      if (this.hang) {
        this.seen.push(`${req.method} ${path}${action ? ' ' + action : ''} (hangs)`);
        return new Promise(() => {});
      }
      return new Promise((resolve) => this.clock.setTimeout(() => resolve(this.httpAnswer?.(req) ?? this.handle(req, path, action)), 1));
    },
  };

  private answer(st: string): Uint8Array {
    return new TextEncoder().encode(
      `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: ${st}\r\nUSN: uuid:fake::${st}\r\nEXT:\r\nSERVER: fake UPnP/1.1\r\nLOCATION: ${LOCATION}\r\n\r\n`,
    );
  }

  private handle(req: HttpRequest, path: string, action: string | undefined): HttpResult {
    if (req.method === 'GET') {
      this.seen.push(`GET ${path}`);
      return path === '/rootDesc.xml' ? { status: 200, body: deviceDescription(this.serviceType) } : { status: 404, body: '' };
    }
    const body = req.body ?? '';
    const arg = (name: string) => xmlField(body, name) ?? '';
    if (path !== '/ctl/IPConn' || !action || !req.headers.SOAPAction?.startsWith(`"${this.serviceType}#`)) return fault(401, 'Invalid Action');
    if (action === 'GetExternalIPAddress') {
      this.seen.push('GetExternalIPAddress');
      return ok(this.serviceType, action, `<NewExternalIPAddress>${this.externalAddress}</NewExternalIPAddress>`);
    }
    const port = Number(arg('NewExternalPort'));
    if (action === 'AddPortMapping') {
      const lease = Number(arg('NewLeaseDuration'));
      this.seen.push(`AddPortMapping ${port} ${lease}`);
      if (arg('NewProtocol') !== 'UDP' || arg('NewInternalClient') !== CLIENT) return fault(402, 'Invalid Args');
      if (this.refuse !== null) return fault(this.refuse, 'Refused');
      if (this.permanentOnly && lease !== 0) return fault(725, 'OnlyPermanentLeasesSupported');
      const held = this.mappings.get(port);
      if (this.taken.has(port) || (held && held.client !== CLIENT)) return fault(718, 'ConflictInMappingEntry');
      this.mappings.set(port, { client: CLIENT, internalPort: Number(arg('NewInternalPort')), lease });
      return ok(this.serviceType, action);
    }
    if (action === 'DeletePortMapping') {
      this.seen.push(`DeletePortMapping ${port}`);
      if (!this.mappings.delete(port)) return fault(714, 'NoSuchEntryInArray');
      return ok(this.serviceType, action);
    }
    return fault(401, 'Invalid Action');
  }
}
