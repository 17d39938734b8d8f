// Assembles one node: transports and the connection manager, the NBD servers, one Resource per
// configured resource, and the control socket. stop() undoes it in reverse order.
import type { ResourceConfig, TlsFiles } from '../config/index.js';
import { ConnectionManager } from '../cm/manager.js';
import { systemClock } from '../platform/clock.js';
import type { Logger } from '../platform/log.js';
import { secureBytes, secureRandom } from '../platform/random.js';
import type { Endpoint, TlsCredentials } from '../transport/types.js';
import { ConfigError } from '../util/errors.js';
import { ControlServer } from './control-server.js';
import { Daemon } from './daemon.js';
import { NbdHub } from './nbd-hub.js';
import { Resource } from './resource.js';
import { endpointKey, planResource, type ResourcePlan } from './resource-config.js';
import { adjuster } from './adjust-node.js';
import { createMetrics, serveMetrics, type MetricsAddress, type MetricsServer } from './metrics.js';
import { loadTlsCredentials, tlsFilesKey } from './tls-files.js';
import { createTransports, interconnectEndpoints, onLocalSubnet } from './transports.js';
import type { DiskFaultRule } from '../storage/faults.js';

export interface NodeInit {
  readonly node: string;
  readonly resources: readonly ResourceConfig[];
  readonly controlPath: string;
  readonly log: Logger;
  readonly onShutdownRequest: () => void;
  /** The configuration file, read again by `tandem adjust`. */
  readonly configPath?: string;
  /** Serve Prometheus metrics there (`--metrics-address`); none when absent. */
  readonly metricsAddress?: MetricsAddress;
  /** Test-only injected disk faults (src/storage/faults.ts); main.ts sets them under NODE_ENV=test. */
  readonly diskFaults?: readonly DiskFaultRule[];
}

export interface RunningNode {
  stop(): Promise<void>;
}

export async function startNode(init: NodeInit): Promise<RunningNode> {
  const { log } = init;
  const plans = init.resources.map((r) => planResource(r, init.node));
  const nodeIds = new Set(plans.map((p) => p.nodeId));
  if (nodeIds.size > 1) {
    throw new ConfigError(
      `${init.node} has different node-ids in different resources (${[...nodeIds].join(', ')}); Tandem needs one per node`,
    );
  }
  const first = plans[0]!;
  const resources = new Map<string, Resource>();
  // Read at scrape time, so resources `adjust` adds later are in it. Bound before anything
  // else opens, so a refused address stops the daemon with nothing to undo.
  const metrics =
    init.metricsAddress === undefined
      ? null
      : createMetrics({ statuses: () => [...resources.values()].map((r) => r.status()) });
  let metricsServer: MetricsServer | null = null;
  if (metrics !== null && init.metricsAddress !== undefined) {
    metricsServer = await serveMetrics(init.metricsAddress, metrics, log);
    log.info({ address: metricsServer.address }, 'metrics: serving /metrics');
  }
  const { transports, fabric } = createTransports(plans, {
    clock: systemClock,
    randomBytes: secureBytes,
    log,
  });
  const cm = new ConnectionManager(
    { clock: systemClock, random: secureRandom, randomBytes: secureBytes, log },
    { nodeId: first.nodeId, transports, reachable: (a) => onLocalSubnet(a.address) },
  );
  // TLS identities, read once per set of files: a broken file fails the start, `up` or
  // `adjust` that first needs it (ConfigError naming it); a renewed certificate needs a restart.
  const identities = new Map<string, TlsCredentials>();
  const tls = (files: TlsFiles): TlsCredentials => {
    const key = tlsFilesKey(files);
    const known = identities.get(key);
    if (known !== undefined) return known;
    const loaded = loadTlsCredentials(files);
    for (const w of loaded.warnings) log.warn({}, w);
    identities.set(key, loaded.credentials);
    return loaded.credentials;
  };
  const listening = new Set<string>();
  const listen = async (e: Endpoint, required: boolean, files?: TlsFiles): Promise<void> => {
    const key = endpointKey(e);
    if (listening.has(key)) return;
    const creds = files === undefined ? undefined : tls(files);
    listening.add(key);
    try {
      await cm.listen(e, creds === undefined ? {} : { tls: creds });
      log.info(
        { transport: e.transport, address: `${e.address}:${e.port}` },
        'listening for peers',
      );
    } catch (err) {
      if (required) throw err;
      log.warn(
        { address: key, err: String(err) },
        'ssocks: cannot listen on an interconnect address',
      );
    }
  };
  for (const p of plans)
    for (const e of p.listen) await listen(e, true, p.listenTls[endpointKey(e)]);
  for (const p of plans) {
    for (const e of p.ssocks) {
      for (const ic of interconnectEndpoints(e, fabric)) await listen(ic, false);
    }
  }
  const nbd = new NbdHub(log);
  const daemon = new Daemon(init.onShutdownRequest);
  const create = (p: ResourcePlan): Resource => {
    const r = new Resource(p, {
      node: init.node,
      cm,
      nbd,
      clock: systemClock,
      log: log.child({ resource: p.name }),
      emit: daemon.emit,
      ...(init.diskFaults !== undefined ? { diskFaults: init.diskFaults } : {}),
      tls,
    });
    resources.set(p.name, r);
    daemon.add(r);
    return r;
  };
  for (const p of plans) create(p);
  if (init.configPath !== undefined) {
    daemon.setAdjuster(
      adjuster({
        node: init.node,
        nodeId: first.nodeId,
        configPath: init.configPath,
        log,
        listen: (e, files) => listen(e, true, files),
        unlisten: async (e) => {
          listening.delete(`${e.transport}:${e.address}:${e.port}`);
          if (await cm.unlisten(e))
            log.info({ address: `${e.address}:${e.port}` }, 'stopped listening for peers');
        },
        resources,
        create,
      }),
    );
  }
  const control = await ControlServer.listen(init.controlPath, daemon);
  return {
    async stop() {
      await metricsServer?.close();
      await daemon.shutdown();
      await nbd.close();
      await cm.close();
      await Promise.all(Object.values(transports).map((t) => t.close()));
      await control.close();
    },
  };
}
