// Maps one resource of the drbd.conf model onto what the engine, the connection manager and the
// NBD export need on this node. All unit conversion happens here, once: drbd.conf stores each
// option in its native unit (KiB/s, sectors, tenths of a second), the layers below take bytes and ms.
import { createHash } from 'node:crypto';
import type {
  Address,
  DeviceSpec,
  HostConfig,
  OptionMap,
  ResourceConfig,
  TlsFileOption,
  TlsFiles,
  VolumeConfig,
} from '../config/index.js';
import { TLS_FILE_OPTIONS, tlsFilesOf } from '../config/index.js';
import type { ConnectionNetOptions, MultipathConnectionOptions } from '../cm/types.js';
import { resolveFabricOptions, type FabricOptions } from '../transport/fabric/options.js';
import type {
  AfterSb0Pri,
  AfterSb1Pri,
  AfterSb2Pri,
  FencingPolicy,
  EngineConfig,
  Protocol,
} from '../replication/types.js';
import type { Endpoint, PathSpec } from '../transport/types.js';
import type { NbdListenerSpec } from '../nbd/types.js';
import { ConfigError } from '../util/errors.js';
import { findHost } from '../config/load.js';
import {
  MULTIPATH_FLAPS_PER_MINUTE_MAX,
  MULTIPATH_HOLD_DOWN_MS,
  MULTIPATH_REPLAY_BUFFER_BYTES,
} from '../limits.js';

export interface PeerPlan {
  readonly name: string;
  readonly nodeId: number;
  /** Paths to this peer, in configuration order. */
  readonly paths: readonly PathSpec[];
  readonly net: ConnectionNetOptions;
  /** `net { tls yes; }` of this connection: the PEM files of this node's identity; null = plain TCP. */
  readonly tls: TlsFiles | null;
  /** The name the peer's TLS certificate must carry: its `on HOST` name (a floating host: its IP). */
  readonly tlsPeerName: string;
  /**
   * Set when this connection runs as a multipath session: several `path {}` sections,
   * `load-balance-paths yes`, `transport "multipath"`, or an `address ssocks`.
   */
  readonly multipath?: MultipathConnectionOptions;
}

export interface ResourcePlan {
  readonly name: string;
  readonly me: HostConfig;
  readonly nodeId: number;
  readonly volume: VolumeConfig;
  readonly diskPath: string;
  readonly metaDisk: VolumeConfig['metaDisk'];
  readonly nbd: {
    readonly listener: NbdListenerSpec;
    readonly exportName: string;
    readonly uri: string;
    /** `nbds://`: the PEM files the export's TLS uses (net { }); null for plain `nbd://`. */
    readonly tls: TlsFiles | null;
  };
  readonly peers: readonly PeerPlan[];
  /** Where this node listens for its peers. */
  readonly listen: readonly Endpoint[];
  /**
   * The TLS identity each `listen` endpoint speaks, by `endpointKey`; absent = plain TCP. The
   * configuration guarantees that the connections sharing an endpoint agree.
   */
  readonly listenTls: Readonly<Record<string, TlsFiles>>;
  /**
   * The `address ssocks` endpoints among `listen`: the node also listens on (and announces) its
   * interconnect addresses at the same port, so that the peer can upgrade the session.
   */
  readonly ssocks: readonly Endpoint[];
  /** Fabric tunables when any endpoint of this resource is sdp/rdma (or ssocks may upgrade to one). */
  readonly fabric: FabricOptions;
  readonly net: OptionMap;
  /**
   * The resource's `net { tls yes; }` files (this node's TLS identity, also what a TLS NBD export
   * presents); null with tls no. A connection may override it: see `PeerPlan.tls`.
   */
  readonly tls: TlsFiles | null;
  readonly disk: OptionMap;
  /** `handlers { }`: handler name -> shell command. */
  readonly handlers: OptionMap;
}

/** Node ids: as configured, or (two hosts, DRBD 8.4 style) the position of the `on` section. */
function nodeIdOf(r: ResourceConfig, h: HostConfig): number {
  return h.nodeId ?? r.hosts.indexOf(h);
}

/**
 * The transport an address is reached over: `sdp` addresses and `transport "rdma"` (DRBD 9's
 * name; `fabric` is ours) use the fabric transport, everything else TCP. ssocks addresses are
 * the Ethernet (TCP) address; the upgrade to a faster path happens after connecting.
 */
function endpointOf(a: Address, transport: string): Endpoint {
  const fabric = a.family === 'sdp' || transport === 'rdma' || transport === 'fabric';
  return {
    transport: fabric ? 'fabric' : 'tcp',
    family: a.family === 'ipv6' || a.ip.includes(':') ? 'ipv6' : 'ipv4',
    address: a.ip,
    port: a.port,
  };
}

/** One listen address or peer endpoint, as daemon code compares them: transport, address, port. */
export function endpointKey(e: Endpoint): string {
  return `${e.transport}:${e.address}:${e.port}`;
}

function transportOf(net: OptionMap, resource: string): string {
  const t = str(net, 'transport', 'tcp');
  if (t === 'memory') {
    throw new ConfigError(
      `${resource}: transport "memory" exists only inside tests; use tcp, rdma or multipath`,
    );
  }
  return t;
}

/**
 * The PEM files of an `nbds://` export: the same net { } options replication TLS uses, read
 * whether or not `tls yes` is set (TLS on the export does not need it on replication).
 */
function nbdTlsFiles(device: DeviceSpec, net: OptionMap, resource: string): TlsFiles | null {
  if (device.kind === 'drbd' || !device.tls) return null;
  const file = (o: TlsFileOption): string => str(net, o, '');
  const missing = TLS_FILE_OPTIONS.filter((o) => file(o) === '');
  if (missing.length > 0) {
    throw new ConfigError(
      `${resource}: device "${device.uri}" is NBD over TLS and needs ${missing.join(', ')} ` +
        `in net { } (PEM files: this node's certificate, its private key, the CA that client ` +
        `certificates must chain to)`,
    );
  }
  const relative = TLS_FILE_OPTIONS.filter((o) => !file(o).startsWith('/'));
  if (relative.length > 0) {
    throw new ConfigError(
      `${resource}: ${relative.map((o) => `${o} "${file(o)}"`).join(', ')} must be an absolute path`,
    );
  }
  return { certificate: file('tls-certificate'), privkey: file('tls-privkey'), ca: file('tls-ca') };
}

function nbdListener(device: DeviceSpec, resource: string, net: OptionMap): ResourcePlan['nbd'] {
  switch (device.kind) {
    case 'nbd-tcp':
      return {
        listener: { kind: 'tcp', host: device.host, port: device.port },
        exportName: device.exportName,
        uri: device.uri,
        tls: nbdTlsFiles(device, net, resource),
      };
    case 'nbd-unix':
      return {
        listener: { kind: 'unix', path: device.socketPath },
        exportName: device.exportName,
        uri: device.uri,
        tls: nbdTlsFiles(device, net, resource),
      };
    case 'drbd':
      throw new ConfigError(
        `${resource}: device ${device.path ?? `minor ${device.minor}`} is a DRBD kernel device; ` +
          `Tandem exports volumes over NBD: write device "nbd://127.0.0.1:PORT/${resource}";`,
      );
  }
}

export function planResource(r: ResourceConfig, nodeName: string): ResourcePlan {
  const me = findHost(r.hosts, nodeName);
  if (me === undefined)
    throw new ConfigError(`${r.name}: no \`on ${nodeName}\` section (this node is ${nodeName})`);
  // `on alpha beta { }` and `_this_host { }`: connections name the section by its first name.
  const node = me.name;
  if (me.volumes.length !== 1) {
    throw new ConfigError(
      `${r.name}: ${me.volumes.length} volumes; Tandem runs one volume per resource for now`,
    );
  }
  const volume = me.volumes[0]!;
  if (volume.disk === null)
    throw new ConfigError(`${r.name}: diskless nodes (disk none) are not supported yet`);
  const nodeId = nodeIdOf(r, me);
  const peers: PeerPlan[] = [];
  for (const c of r.connections) {
    const other = c.hosts[0] === node ? c.hosts[1] : c.hosts[1] === node ? c.hosts[0] : undefined;
    if (other === undefined) continue;
    const peerHost = r.hosts.find((h) => h.name === other);
    if (peerHost === undefined) continue;
    const transport = transportOf(c.net, r.name);
    const paths: PathSpec[] = [];
    let ssocks = false;
    for (const p of c.paths) {
      const mine = p.endpoints.find((e) => e.host === node);
      const theirs = p.endpoints.find((e) => e.host === other);
      if (mine && theirs) {
        ssocks ||= mine.address.family === 'ssocks' || theirs.address.family === 'ssocks';
        paths.push({
          local: { ...endpointOf(mine.address, transport), port: 0 },
          peer: endpointOf(theirs.address, transport),
        });
      }
    }
    if (paths.length === 0 && me.address !== null && peerHost.address !== null) {
      ssocks = me.address.family === 'ssocks' || peerHost.address.family === 'ssocks';
      paths.push({
        local: { ...endpointOf(me.address, transport), port: 0 },
        peer: endpointOf(peerHost.address, transport),
      });
    }
    const loadBalance = bool(c.net, 'load-balance-paths', false);
    const multipath =
      paths.length > 1 || loadBalance || ssocks || transport === 'multipath'
        ? {
            ...channelOptions(c.net),
            loadBalancePaths: loadBalance,
            replayBufferBytes: num(c.net, 'multipath-replay-buffer', MULTIPATH_REPLAY_BUFFER_BYTES),
            flapsPerMinuteMax: num(c.net, 'path-flaps-max', MULTIPATH_FLAPS_PER_MINUTE_MAX),
            holdDownMs: num(c.net, 'path-hold-down', MULTIPATH_HOLD_DOWN_MS / 1000) * 1000,
            ssocks,
          }
        : undefined;
    peers.push({
      name: other,
      nodeId: nodeIdOf(r, peerHost),
      paths,
      net: cmNetOptions(c.net),
      tls: tlsFilesOf(c.net),
      tlsPeerName:
        peerHost.floating && peerHost.address !== null ? peerHost.address.ip : peerHost.name,
      ...(multipath ? { multipath } : {}),
    });
  }
  const listen = new Map<string, Endpoint>();
  const ssocks = new Map<string, Endpoint>();
  const listenTls: Record<string, TlsFiles> = {};
  const add = (a: Address, net: OptionMap): void => {
    const e = endpointOf(a, transportOf(net, r.name));
    const key = endpointKey(e);
    listen.set(key, e);
    const tls = tlsFilesOf(net);
    if (tls !== null) listenTls[key] = tls;
    if (a.family === 'ssocks') ssocks.set(key, e);
  };
  for (const c of r.connections) {
    for (const p of c.paths) {
      for (const e of p.endpoints) if (e.host === node) add(e.address, c.net);
    }
  }
  if (listen.size === 0 && me.address !== null) add(me.address, r.sections.net);
  return {
    name: r.name,
    me,
    nodeId,
    volume,
    diskPath: volume.disk,
    metaDisk: volume.metaDisk,
    nbd: nbdListener(volume.device, r.name, r.sections.net),
    peers,
    listen: [...listen.values()],
    listenTls,
    ssocks: [...ssocks.values()],
    fabric: checkedFabricOptions(r.name, r.sections.net),
    net: r.sections.net,
    tls: tlsFilesOf(r.sections.net),
    disk: { ...r.sections.disk, ...volume.diskOptions },
    handlers: r.sections.handlers,
  };
}

function num(m: OptionMap, key: string, dflt: number): number {
  const v = m[key];
  return typeof v === 'number' ? v : dflt;
}
function str(m: OptionMap, key: string, dflt: string): string {
  const v = m[key];
  return typeof v === 'string' ? v : dflt;
}
function bool(m: OptionMap, key: string, dflt: boolean): boolean {
  const v = m[key];
  return typeof v === 'boolean' ? v : dflt;
}

/**
 * The fabric tunables, checked now by the transport's own validator: rules across options
 * (zcopy-threshold below fabric-buffer-size, the buffer total) fail the config, not tandemd later.
 */
function checkedFabricOptions(resource: string, net: OptionMap): FabricOptions {
  const o = fabricOptions(net);
  try {
    resolveFabricOptions(o);
  } catch (e) {
    throw new ConfigError(`${resource}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return o;
}

function fabricOptions(net: OptionMap): FabricOptions {
  const n = (key: string, field: keyof FabricOptions): Partial<FabricOptions> => {
    const v = net[key];
    return typeof v === 'number' ? { [field]: v } : {};
  };
  const provider = net['fabric-provider'];
  const progress = net['fabric-progress'];
  return {
    ...(typeof provider === 'string' ? { provider } : {}),
    ...(progress === 'auto' || progress === 'manual' ? { progress } : {}),
    ...n('zcopy-threshold', 'zcopyThresholdBytes'),
    ...n('recv-poll', 'recvPollUs'),
    ...n('fabric-buffer-size', 'bufferBytes'),
    ...n('fabric-data-buffers', 'dataCredits'),
    ...n('fabric-control-buffers', 'controlCredits'),
    ...n('fabric-send-buffers', 'sendBuffers'),
    channel: channelOptions(net),
  };
}

function cmNetOptions(net: OptionMap): ConnectionNetOptions {
  const alg = net['cram-hmac-alg'];
  const secret = net['shared-secret'];
  return {
    connectIntMs: num(net, 'connect-int', 10) * 1000,
    ...(typeof alg === 'string' ? { cramHmacAlg: alg } : {}),
    ...(typeof secret === 'string' ? { sharedSecret: secret } : {}),
  };
}

/** Liveness options of the transport, from the resource's net section (ping-int s, ping-timeout/timeout ds). */
export function channelOptions(net: OptionMap): {
  pingIntMs: number;
  pingTimeoutMs: number;
  timeoutMs: number;
  koCount: number;
} {
  return {
    pingIntMs: num(net, 'ping-int', 10) * 1000,
    pingTimeoutMs: num(net, 'ping-timeout', 5) * 100,
    timeoutMs: num(net, 'timeout', 60) * 100,
    koCount: num(net, 'ko-count', 7),
  };
}

function digestFor(alg: string | undefined): (data: Uint8Array) => Uint8Array {
  const name = alg === undefined || alg === 'crc32c' ? 'sha1' : alg;
  try {
    createHash(name);
  } catch {
    throw new ConfigError(`digest algorithm "${alg}" is not available (try sha1, sha256 or md5)`);
  }
  return (data) => createHash(name).update(data).digest();
}

export function engineConfig(
  plan: ResourcePlan,
  sizeBytes: number,
  uuidSeed: number,
): EngineConfig {
  const net = plan.net;
  const disk = plan.disk;
  const csums = net['csums-alg'];
  const verify = net['verify-alg'];
  const alg = typeof csums === 'string' ? csums : typeof verify === 'string' ? verify : undefined;
  const protocol = str(net, 'protocol', 'C');
  return {
    nodeId: plan.nodeId,
    nodeName: plan.me.name,
    sizeBytes,
    peers: plan.peers.map((p) => ({ nodeId: p.nodeId, name: p.name })),
    protocol: (['A', 'B', 'C'].includes(protocol) ? protocol : 'C') as Protocol,
    allowTwoPrimaries: bool(net, 'allow-two-primaries', false),
    afterSb0Pri: str(net, 'after-sb-0pri', 'disconnect') as AfterSb0Pri,
    afterSb1Pri: str(net, 'after-sb-1pri', 'disconnect') as AfterSb1Pri,
    afterSb2Pri: str(net, 'after-sb-2pri', 'disconnect') as AfterSb2Pri,
    maxEpochSize: num(net, 'max-epoch-size', 2048),
    alExtents: num(disk, 'al-extents', 1237),
    onIoError: str(disk, 'on-io-error', 'detach') === 'pass_on' ? 'pass_on' : 'detach',
    diskFlushes: bool(disk, 'disk-flushes', true),
    resync: {
      resyncRateBytesPerSec: num(disk, 'resync-rate', 250) * 1024,
      cPlanAheadTenths: num(disk, 'c-plan-ahead', 20),
      cFillTargetBytes: num(disk, 'c-fill-target', 100) * 512,
      cDelayTargetTenths: num(disk, 'c-delay-target', 10),
      cMaxRateBytesPerSec: num(disk, 'c-max-rate', 102400) * 1024,
      cMinRateBytesPerSec: num(disk, 'c-min-rate', 250) * 1024,
    },
    csums: typeof csums === 'string',
    verify: typeof verify === 'string',
    digest: digestFor(alg),
    uuidSeed,
    fencing: fencingOf(net),
  };
}

function fencingOf(net: OptionMap): FencingPolicy {
  const f = str(net, 'fencing', 'dont-care');
  return f === 'resource-only' || f === 'resource-and-stonith' ? f : 'dont-care';
}
