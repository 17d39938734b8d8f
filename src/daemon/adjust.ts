// `tandem adjust` (drbdadm adjust): compares the configuration file with what runs and plans the
// least disruptive way to apply each difference. planAdjust() is pure (unit-tested); the node
// carries the plan out. Resources removed from the file keep running (drbdadm adjust does not
// down unknown resources); what cannot change live is reported with the command that applies it.
import type { OptionMap, OptionValue } from '../config/index.js';
import type { EngineConfig, ReconfigurableOptions } from '../replication/types.js';
import { endpointKey, engineConfig, type PeerPlan, type ResourcePlan } from './resource-config.js';

type LiveField = keyof ReconfigurableOptions;

/**
 * The options the engine applies live (reconfigure), by the engine field they set (engineConfig
 * derives it from them). Keyed by every field of ReconfigurableOptions: the engine's contract and
 * this table cannot drift apart. protocol changes only while disconnected.
 */
const LIVE: { readonly [F in LiveField]-?: readonly (readonly ['net' | 'disk', string])[] } = {
  protocol: [['net', 'protocol']],
  allowTwoPrimaries: [['net', 'allow-two-primaries']],
  afterSb0Pri: [['net', 'after-sb-0pri']],
  afterSb1Pri: [['net', 'after-sb-1pri']],
  afterSb2Pri: [['net', 'after-sb-2pri']],
  maxEpochSize: [['net', 'max-epoch-size']],
  // The resync controller.
  resync: [
    ['disk', 'resync-rate'],
    ['disk', 'c-plan-ahead'],
    ['disk', 'c-fill-target'],
    ['disk', 'c-max-rate'],
    ['disk', 'c-min-rate'],
  ],
  csums: [['net', 'csums-alg']],
  verify: [['net', 'verify-alg']],
  digest: [
    ['net', 'csums-alg'],
    ['net', 'verify-alg'],
  ],
};
const LIVE_FIELDS = Object.keys(LIVE) as LiveField[];
const liveOptions = (section: 'net' | 'disk'): string[] => [
  ...new Set(
    Object.values(LIVE).flatMap((opts) => opts.filter(([s]) => s === section).map(([, o]) => o)),
  ),
];
const NET_ENGINE = liveOptions('net');
const DISK_ENGINE = liveOptions('disk');
/** Options of one connection (connection manager): applied by reconnecting it. */
const NET_CONNECTION = ['connect-int', 'cram-hmac-alg', 'shared-secret'];
/** Liveness options of the node's transport, shared by every connection: need a restart. */
const NET_TRANSPORT = [
  'ping-int',
  'ping-timeout',
  'timeout',
  'ko-count',
  // The node's listener speaks TLS with the identity it started with.
  'tls',
  'tls-certificate',
  'tls-privkey',
  'tls-ca',
];

export interface OptionChange {
  readonly section: 'net' | 'disk';
  readonly option: string;
  readonly from: OptionValue | undefined;
  readonly to: OptionValue | undefined;
}

export type AdjustStep =
  /** A resource in the file that does not run here (or is down): bring it up. */
  | { readonly kind: 'up'; readonly resource: string }
  /** A running resource no longer in the file: left running, with a warning. */
  | { readonly kind: 'keep'; readonly resource: string }
  /** Options the engine takes live. `reconnect` when the protocol changes under a connection. */
  | {
      readonly kind: 'reconfigure';
      readonly resource: string;
      readonly options: ReconfigurableOptions;
      readonly changes: readonly OptionChange[];
      readonly protocolChanged: boolean;
    }
  /** Paths, addresses or connection options of one peer changed: reconnect it. */
  | {
      readonly kind: 'reconnect';
      readonly resource: string;
      readonly peer: string;
      readonly peerNodeId: number;
      readonly why: string;
    }
  /** New listen addresses this node must accept connections on. */
  | { readonly kind: 'listen'; readonly resource: string; readonly endpoints: readonly string[] }
  /** Listen addresses no longer configured (closed unless another resource still uses them). */
  | { readonly kind: 'unlisten'; readonly resource: string; readonly endpoints: readonly string[] }
  /** A difference that applies only later; `how` says how to apply it. */
  | {
      readonly kind: 'later';
      readonly resource: string;
      readonly what: string;
      readonly how: string;
    };

export interface AdjustPlan {
  readonly steps: readonly AdjustStep[];
  /** The plans to run with from now on, by resource (for the resources adjusted). */
  readonly plans: ReadonlyMap<string, ResourcePlan>;
}

const show = (v: OptionValue | undefined): string => (v === undefined ? '(default)' : String(v));

function changed(a: OptionMap, b: OptionMap, keys: readonly string[]): string[] {
  return keys.filter((k) => a[k] !== b[k]);
}

/** Every key whose value differs between two option maps. */
function allChanged(a: OptionMap, b: OptionMap): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => a[k] !== b[k]).sort();
}

/** The fields of an engine configuration that reconfigure takes (all of them, each defined). */
export function liveOptionsOf(c: EngineConfig): Required<ReconfigurableOptions> {
  return Object.fromEntries(LIVE_FIELDS.map((f) => [f, c[f]])) as Required<ReconfigurableOptions>;
}

/** The engine options of a plan, as reconfigure takes them. */
export function engineOptions(plan: ResourcePlan): ReconfigurableOptions {
  // engineConfig's size and seed do not matter here: only the option fields are taken.
  return liveOptionsOf(engineConfig(plan, 4096, 0));
}

const pathKey = (p: PeerPlan): string =>
  JSON.stringify(p.paths.map((x) => [x.local, x.peer])) + JSON.stringify(p.net);

/**
 * Plans how to go from the running resources to the configured ones. `only` limits it to one
 * resource ("all": every one). Pure: the same inputs give the same plan.
 */
export function planAdjust(
  running: ReadonlyMap<string, ResourcePlan>,
  configured: readonly ResourcePlan[],
  only: string,
  /** Resources that exist here but are down (`tandem down`): adjust brings them up. */
  down: ReadonlySet<string> = new Set(),
): AdjustPlan {
  const steps: AdjustStep[] = [];
  const plans = new Map<string, ResourcePlan>();
  const wanted = configured.filter((p) => only === 'all' || p.name === only);
  for (const next of wanted) {
    const cur = running.get(next.name);
    if (cur === undefined) {
      steps.push({ kind: 'up', resource: next.name });
      plans.set(next.name, next);
      continue;
    }
    plans.set(next.name, planOne(cur, next, steps));
    if (down.has(next.name)) steps.push({ kind: 'up', resource: next.name });
  }
  if (only === 'all') {
    for (const name of running.keys())
      if (!configured.some((p) => p.name === name)) steps.push({ kind: 'keep', resource: name });
  }
  return { steps, plans };
}

function planOne(cur: ResourcePlan, next: ResourcePlan, steps: AdjustStep[]): ResourcePlan {
  const r = cur.name;
  const later = (what: string, how: string): void => {
    steps.push({ kind: 'later', resource: r, what, how });
  };
  const downUp = `\`tandem down ${r}\` and \`tandem up ${r}\``;
  // What identifies the resource's storage and export does not change under a running one.
  if (cur.diskPath !== next.diskPath) later(`disk ${cur.diskPath} -> ${next.diskPath}`, downUp);
  if (JSON.stringify(cur.metaDisk) !== JSON.stringify(next.metaDisk)) later('meta-disk', downUp);
  if (JSON.stringify(cur.nbd) !== JSON.stringify(next.nbd))
    later(`device ${cur.nbd.uri} -> ${next.nbd.uri}`, downUp);
  if (cur.nodeId !== next.nodeId)
    later(`node-id ${cur.nodeId} -> ${next.nodeId}`, 'restart tandemd');

  const engineKeys = [
    ...changed(cur.net, next.net, NET_ENGINE).map((k) => ['net', k] as const),
    ...changed(cur.disk, next.disk, DISK_ENGINE).map((k) => ['disk', k] as const),
  ];
  if (engineKeys.length > 0) {
    const changes = engineKeys.map(([section, option]) => ({
      section,
      option,
      from: (section === 'net' ? cur.net : cur.disk)[option],
      to: (section === 'net' ? next.net : next.disk)[option],
    }));
    steps.push({
      kind: 'reconfigure',
      resource: r,
      options: engineOptions(next),
      changes,
      protocolChanged: cur.net['protocol'] !== next.net['protocol'],
    });
  }
  for (const k of changed(cur.net, next.net, NET_TRANSPORT))
    later(
      `net ${k} ${show(cur.net[k])} -> ${show(next.net[k])}`,
      "restart tandemd (the node's transport is shared by all connections)",
    );
  const handled = new Set<string>([...NET_ENGINE, ...NET_CONNECTION, ...NET_TRANSPORT]);
  for (const k of allChanged(cur.net, next.net).filter((x) => !handled.has(x)))
    later(`net ${k} ${show(cur.net[k])} -> ${show(next.net[k])}`, downUp);
  for (const k of allChanged(cur.disk, next.disk).filter((x) => !DISK_ENGINE.includes(x)))
    later(`disk ${k} ${show(cur.disk[k])} -> ${show(next.disk[k])}`, `the next attach (${downUp})`);

  // Peers: the engine's set of peers is fixed while it runs; their paths are not.
  const ids = (p: ResourcePlan): string =>
    p.peers
      .map((x) => x.nodeId)
      .sort((a, b) => a - b)
      .join(',');
  let peers = cur.peers;
  if (ids(cur) !== ids(next)) {
    later(
      `peers ${cur.peers.map((p) => p.name).join(', ') || 'none'} -> ${next.peers.map((p) => p.name).join(', ') || 'none'}`,
      downUp,
    );
  } else {
    peers = next.peers;
    const connChanged = changed(cur.net, next.net, NET_CONNECTION);
    for (const p of next.peers) {
      const old = cur.peers.find((x) => x.nodeId === p.nodeId);
      if (old === undefined) continue;
      const why: string[] = [];
      if (JSON.stringify(old.paths) !== JSON.stringify(p.paths)) {
        const fmt = (x: PeerPlan): string =>
          x.paths.map((q) => endpointKey(q.peer)).join(' ') || 'none';
        why.push(`paths ${fmt(old)} -> ${fmt(p)}`);
      } else if (pathKey(old) !== pathKey(p)) why.push('connection options');
      for (const k of connChanged) why.push(`net ${k}`);
      if (why.length > 0)
        steps.push({
          kind: 'reconnect',
          resource: r,
          peer: p.name,
          peerNodeId: p.nodeId,
          why: [...new Set(why)].join(', '),
        });
    }
  }
  const have = new Set(cur.listen.map(endpointKey));
  const fresh = next.listen.filter((e) => !have.has(endpointKey(e))).map(endpointKey);
  if (fresh.length > 0) steps.push({ kind: 'listen', resource: r, endpoints: fresh });
  const keep = new Set(next.listen.map(endpointKey));
  const gone = cur.listen.filter((e) => !keep.has(endpointKey(e))).map(endpointKey);
  if (gone.length > 0) steps.push({ kind: 'unlisten', resource: r, endpoints: gone });

  // Run with the new options and paths; storage, export and node id stay as they run.
  return { ...cur, net: next.net, disk: next.disk, peers, listen: next.listen };
}

/** One line per step, as `tandem adjust` prints them. */
export function describeStep(s: AdjustStep, dryRun: boolean): string {
  const will = (done: string, would: string): string => (dryRun ? would : done);
  switch (s.kind) {
    case 'up':
      return `${s.resource}: ${will('brought up', 'would bring up')} (configured, not up here)`;
    case 'keep':
      return `${s.resource}: warning: no longer in the configuration; left running (take it down with \`tandem down ${s.resource}\`)`;
    case 'reconfigure': {
      const list = s.changes
        .map((c) => `${c.section} ${c.option} ${show(c.from)} -> ${show(c.to)}`)
        .join(', ');
      const how = s.protocolChanged ? ' (reconnecting: the protocol changes only then)' : '';
      return `${s.resource}: ${will('applied', 'would apply')} ${list}${how}`;
    }
    case 'reconnect':
      return `${s.resource}: ${will('reconnected', 'would reconnect')} ${s.peer} (${s.why})`;
    case 'listen':
      return `${s.resource}: ${will('listening', 'would listen')} on ${s.endpoints.join(', ')}`;
    case 'unlisten':
      return `${s.resource}: ${will('stopped listening', 'would stop listening')} on ${s.endpoints.join(', ')}`;
    case 'later':
      return `${s.resource}: not applied live: ${s.what}; applies after ${s.how}`;
  }
}
