// Which transports a node runs, built from its resource plans: TCP always; the fabric transport
// when an endpoint is sdp/rdma (required: missing pieces are a ConfigError saying what to
// install) or when an ssocks connection could upgrade to it (optional: without it, ssocks stays
// on TCP). Also the interconnect addresses an ssocks node listens on and announces.
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import type { Logger } from '../platform/log.js';
import type { Clock } from '../platform/clock.js';
import { fabricTransport, type FabricTransportApi } from '../transport/fabric/index.js';
import { tcpTransport } from '../transport/tcp/index.js';
import type { Endpoint, Transport, TransportName } from '../transport/types.js';
import { ConfigError, FabricUnavailableError } from '../util/errors.js';
import { channelOptions, type ResourcePlan } from './resource-config.js';

export interface NodeTransports {
  readonly transports: Partial<Record<TransportName, Transport>>;
  readonly fabric: FabricTransportApi | null;
}

export interface TransportDeps {
  readonly clock: Clock;
  readonly randomBytes: (n: number) => Buffer;
  readonly log: Logger;
  /** For tests: the fabric factory (default: the native addon's). */
  readonly makeFabric?: (plan: ResourcePlan) => FabricTransportApi;
}

function usesFabric(p: ResourcePlan): boolean {
  return (
    p.listen.some((e) => e.transport === 'fabric') ||
    p.peers.some((peer) => peer.paths.some((path) => path.peer.transport === 'fabric'))
  );
}

export function createTransports(
  plans: readonly ResourcePlan[],
  deps: TransportDeps,
): NodeTransports {
  const first = plans[0];
  if (first === undefined) throw new ConfigError('no resources to run');
  const tcp = tcpTransport(channelOptions(first.net))({
    clock: deps.clock,
    randomBytes: deps.randomBytes,
    log: deps.log,
  });
  const transports: Partial<Record<TransportName, Transport>> = { tcp };
  const required = plans.find(usesFabric);
  const wanted = required ?? plans.find((p) => p.ssocks.length > 0);
  let fabric: FabricTransportApi | null = null;
  if (wanted !== undefined) {
    const make =
      deps.makeFabric ??
      ((p: ResourcePlan) =>
        fabricTransport({ ...p.fabric, channel: channelOptions(p.net) })({ clock: deps.clock }));
    try {
      fabric = make(wanted);
      transports.fabric = fabric;
      deps.log.info({ provider: fabric.provider }, 'fabric transport ready');
    } catch (e) {
      if (!(e instanceof FabricUnavailableError)) throw e;
      if (required !== undefined) {
        throw new ConfigError(
          `${required.name}: the fabric transport (address sdp / transport "rdma") is not usable here: ${e.message}`,
        );
      }
      deps.log.info({ why: e.message }, 'ssocks: no fabric transport; upgrades stay on TCP');
    }
  }
  return { transports, fabric };
}

/**
 * The interconnect endpoints of an ssocks node: its other addresses of the same family, at the
 * ssocks port (TCP), and with a verbs fabric also as fabric endpoints (rdma-cm has a port space
 * of its own). A loopback ssocks address has no interconnect: the session stays on TCP.
 */
export function interconnectEndpoints(
  ethernet: Endpoint,
  fabric: FabricTransportApi | null,
  ifaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): Endpoint[] {
  const out: Endpoint[] = [];
  const loopback = ethernet.address.startsWith('127.') || ethernet.address === '::1';
  if (loopback) return out;
  for (const infos of Object.values(ifaces)) {
    for (const i of infos ?? []) {
      const family = i.family === 'IPv6' ? 'ipv6' : 'ipv4';
      if (family !== ethernet.family || i.internal || i.address === ethernet.address) continue;
      if (family === 'ipv6' && i.address.toLowerCase().startsWith('fe80:')) continue;
      if (fabric !== null && fabric.provider === 'verbs') {
        out.push({ transport: 'fabric', family, address: i.address, port: ethernet.port });
      }
      out.push({ transport: 'tcp', family, address: i.address, port: ethernet.port });
    }
  }
  return out;
}

function ipv4ToInt(ip: string): number | null {
  const parts = ip.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    const v = Number(p);
    if (!/^\d{1,3}$/.test(p) || v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

function ipv6ToBigInt(ip: string): bigint | null {
  const [head, tail, extra] = ip.toLowerCase().split('::');
  if (extra !== undefined) return null;
  const h = head === undefined || head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  if (fill < 0 || (tail === undefined && h.length !== 8)) return null;
  let n = 0n;
  for (const g of [...h, ...Array<string>(fill).fill('0'), ...t]) {
    if (!/^[0-9a-f]{1,4}$/.test(g)) return null;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return n;
}

/**
 * Whether `address` lies on the subnet of one of this host's interfaces: what an ssocks node
 * dials to upgrade (an interconnect the peer announced but this node is not attached to would
 * only be redialed in vain).
 */
export function onLocalSubnet(
  address: string,
  ifaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): boolean {
  const v4 = ipv4ToInt(address);
  const v6 = v4 === null ? ipv6ToBigInt(address) : null;
  for (const infos of Object.values(ifaces)) {
    for (const i of infos ?? []) {
      if (v4 !== null && i.family === 'IPv4') {
        const a = ipv4ToInt(i.address);
        const m = ipv4ToInt(i.netmask);
        if (a !== null && m !== null && (a & m) === (v4 & m)) return true;
      } else if (v6 !== null && i.family === 'IPv6') {
        const a = ipv6ToBigInt(i.address.split('%')[0] ?? '');
        const m = ipv6ToBigInt(i.netmask);
        if (a !== null && m !== null && (a & m) === (v6 & m)) return true;
      }
    }
  }
  return false;
}
