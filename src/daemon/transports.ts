// Which transports a node runs, built from its resource plans: TCP always; the fabric transport
// when an endpoint is sdp/rdma (required: missing pieces are a ConfigError saying what to
// install) or when an ssocks connection could upgrade to it (optional: without it, ssocks stays
// on TCP). Also the interconnect addresses an ssocks node listens on and announces.
import { BlockList, isIP } from 'node:net';
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

/**
 * Whether `address` lies on the subnet of one of this host's interfaces: what an ssocks node
 * dials to upgrade (an interconnect the peer announced but this node is not attached to would
 * only be redialed in vain).
 */
export function onLocalSubnet(
  address: string,
  ifaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  const subnets = new BlockList();
  for (const infos of Object.values(ifaces)) {
    for (const i of infos ?? []) {
      const prefix = Number(i.cidr?.split('/')[1]);
      if (i.cidr === null || !Number.isInteger(prefix)) continue;
      subnets.addSubnet(
        i.address.split('%')[0] ?? '',
        prefix,
        i.family === 'IPv6' ? 'ipv6' : 'ipv4',
      );
    }
  }
  return subnets.check(address, family === 6 ? 'ipv6' : 'ipv4');
}
