// DRBD's option vocabulary per section, with types, documented ranges, unit defaults and whether
// Tandem honours the option (`supported`) or accepts it with a warning (`accepted`). Ranges and
// defaults follow `drbdsetup xml-help` of drbd-utils 9.22 (drbd_limits.h); Tandem's own options
// are marked `tandem`. A value is stored in the option's native unit (the `unit` field).
import {
  FABRIC_BUFFER_BYTES,
  FABRIC_BUFFER_BYTES_MAX,
  FABRIC_BUFFER_BYTES_MIN,
  FABRIC_BUFFERS_MAX,
  FABRIC_CONTROL_CREDITS,
  FABRIC_CONTROL_CREDITS_MIN,
  FABRIC_DATA_CREDITS,
  FABRIC_RECV_POLL_US_MAX,
  FABRIC_SEND_BUFFERS,
  FABRIC_ZCOPY_THRESHOLD_BYTES,
  GIB,
  MIB,
  MULTIPATH_FLAPS_PER_MINUTE_MAX,
  MULTIPATH_HOLD_DOWN_MS,
  MULTIPATH_REPLAY_BUFFER_BYTES,
} from '../limits.js';
import type { SectionName } from './types.js';

/** How a numeric option's bare number is scaled, as drbd.conf does: 1 = as is, s = sectors, k = KiB. */
export type UnitPrefix = '1' | 's' | 'k';

export type OptionKind =
  | {
      readonly type: 'numeric';
      readonly min: number;
      readonly max: number;
      readonly default?: number;
      readonly prefix: UnitPrefix;
      /** The native unit of the stored number, e.g. "bytes", "sectors", "KiB/s", "1/10 s", "s", "ms". */
      readonly unit: string;
      /** Out-of-range values are clamped into min..max (drbdadm's implicit clamp: al-extents). */
      readonly clamp?: boolean;
    }
  | {
      readonly type: 'numeric-or-symbol';
      readonly min: number;
      readonly max: number;
      readonly symbols: readonly string[];
      readonly default?: string;
    }
  | { readonly type: 'boolean'; readonly default?: boolean }
  | {
      readonly type: 'enum';
      readonly values: readonly string[];
      readonly default?: string;
      /** drbdadm compares the value case-insensitively (protocol); stored as listed in `values`. */
      readonly nocase?: boolean;
    }
  | { readonly type: 'string'; readonly maxLength?: number }
  /** A value-less flag (`stacked-timeouts;`), stored as true. */
  | { readonly type: 'flag' };

export type OptionStatus = 'supported' | 'accepted' | 'tandem';

export interface OptionSchema {
  readonly name: string;
  readonly kind: OptionKind;
  readonly status: OptionStatus;
  readonly doc: string;
}

const num = (
  min: number,
  max: number,
  dflt: number | undefined,
  prefix: UnitPrefix,
  unit: string,
): OptionKind => ({
  type: 'numeric',
  min,
  max,
  ...(dflt === undefined ? {} : { default: dflt }),
  prefix,
  unit,
});
const bool = (dflt?: boolean): OptionKind =>
  dflt === undefined ? { type: 'boolean' } : { type: 'boolean', default: dflt };
const oneOf = (values: string[], dflt?: string): OptionKind =>
  dflt === undefined ? { type: 'enum', values } : { type: 'enum', values, default: dflt };
const str = (maxLength?: number): OptionKind =>
  maxLength === undefined ? { type: 'string' } : { type: 'string', maxLength };
const opt = (name: string, kind: OptionKind, status: OptionStatus, doc: string): OptionSchema => ({
  name,
  kind,
  status,
  doc,
});

const S = 'supported';
const A = 'accepted';

const NET: OptionSchema[] = [
  opt(
    'protocol',
    { type: 'enum', values: ['A', 'B', 'C'], default: 'C', nocase: true },
    S,
    'replication protocol: A async, B memory-sync, C sync',
  ),
  opt(
    'transport',
    oneOf(['tcp', 'rdma', 'fabric', 'multipath', 'memory'], 'tcp'),
    S,
    "transport: tcp (default), rdma (DRBD's name, served by fabric), fabric, multipath, memory (tests)",
  ),
  opt(
    'timeout',
    num(1, 600, 60, '1', '1/10 s'),
    S,
    'a peer that does not answer within this is dead',
  ),
  opt('max-epoch-size', num(1, 20000, 2048, '1', 'requests'), A, 'writes between two barriers'),
  opt('connect-int', num(1, 120, 10, '1', 's'), S, 'interval between connection attempts'),
  opt('ping-int', num(1, 120, 10, '1', 's'), S, 'idle time before a keep-alive ping'),
  opt('sndbuf-size', num(0, 10485760, 0, '1', 'bytes'), S, 'socket send buffer (0 = auto)'),
  opt('rcvbuf-size', num(0, 10485760, 0, '1', 'bytes'), S, 'socket receive buffer (0 = auto)'),
  opt(
    'ko-count',
    num(0, 200, 7, '1', 'timeouts'),
    A,
    'peer expelled after this many timed-out writes (0 = never)',
  ),
  opt(
    'allow-two-primaries',
    bool(false),
    S,
    'both nodes Primary at once (needs a cluster file system)',
  ),
  opt('cram-hmac-alg', str(), S, 'HMAC algorithm for peer authentication (e.g. sha1, sha256)'),
  opt('shared-secret', str(63), S, 'peer authentication secret, at most 63 characters'),
  opt(
    'after-sb-0pri',
    oneOf(
      [
        'disconnect',
        'discard-younger-primary',
        'discard-older-primary',
        'discard-zero-changes',
        'discard-least-changes',
        'discard-local',
        'discard-remote',
      ],
      'disconnect',
    ),
    S,
    'split-brain policy with no Primary',
  ),
  opt(
    'after-sb-1pri',
    oneOf(
      ['disconnect', 'consensus', 'discard-secondary', 'call-pri-lost-after-sb', 'violently-as0p'],
      'disconnect',
    ),
    S,
    'split-brain policy with one Primary',
  ),
  opt(
    'after-sb-2pri',
    oneOf(['disconnect', 'call-pri-lost-after-sb', 'violently-as0p'], 'disconnect'),
    S,
    'split-brain policy with two Primaries',
  ),
  opt('always-asbp', bool(false), A, 'apply after-sb policies even without a common ancestor'),
  opt(
    'rr-conflict',
    oneOf(
      ['disconnect', 'call-pri-lost', 'violently', 'retry-connect', 'auto-discard'],
      'disconnect',
    ),
    A,
    'resync direction against the role',
  ),
  opt('ping-timeout', num(1, 300, 5, '1', '1/10 s'), S, 'time to wait for a ping answer'),
  opt('data-integrity-alg', str(), A, 'digest over every replicated block'),
  opt('tcp-cork', bool(true), A, 'cork the TCP socket between packets'),
  opt(
    'on-congestion',
    oneOf(['block', 'pull-ahead', 'disconnect'], 'block'),
    A,
    'what protocol A does when the send buffer fills',
  ),
  opt(
    'congestion-fill',
    num(0, 20971520, 0, 's', 'sectors'),
    A,
    'data in flight that counts as congestion',
  ),
  opt(
    'congestion-extents',
    num(67, 65534, 1237, '1', 'extents'),
    A,
    'active extents that count as congestion',
  ),
  opt('csums-alg', str(), S, 'checksum-based resync digest'),
  opt('csums-after-crash-only', bool(false), A, 'use csums-alg only after a Primary crash'),
  opt('verify-alg', str(), S, 'online verify digest'),
  opt('use-rle', bool(true), A, 'run-length encode bitmap exchange'),
  opt(
    'socket-check-timeout',
    num(0, 300, 0, '1', '1/10 s'),
    A,
    'time both sockets must stay up after connect',
  ),
  opt(
    'fencing',
    oneOf(['dont-care', 'resource-only', 'resource-and-stonith'], 'dont-care'),
    S,
    'resource-level fencing: run fence-peer when a Primary loses a peer or before promoting over an unknown one; resource-and-stonith also freezes I/O until it answers',
  ),
  opt(
    'max-buffers',
    num(32, 131072, 2048, '1', 'pages'),
    S,
    'receive buffers per connection (4 KiB pages)',
  ),
  opt('allow-remote-read', bool(true), A, 'serve reads from this peer'),
  opt(
    'load-balance-paths',
    bool(false),
    'tandem',
    'use all paths of a connection at once (Tandem multipath)',
  ),
  opt(
    'multipath-replay-buffer',
    num(MIB, GIB, MULTIPATH_REPLAY_BUFFER_BYTES, '1', 'bytes'),
    'tandem',
    'unacknowledged bytes a multipath session keeps per stream for replay after a path fails',
  ),
  opt(
    'path-flaps-max',
    num(1, 10000, MULTIPATH_FLAPS_PER_MINUTE_MAX, '1', 'failures/min'),
    'tandem',
    'a path that fails more often than this in a minute is held down (multipath hysteresis)',
  ),
  opt(
    'path-hold-down',
    num(1, 3600, MULTIPATH_HOLD_DOWN_MS / 1000, '1', 's'),
    'tandem',
    'how long a flapping path is held down',
  ),
  opt(
    'tls',
    bool(false),
    'tandem',
    'encrypt and mutually authenticate replication with TLS (DRBD 9.2 net { tls yes; }); needs tls-certificate, tls-privkey and tls-ca',
  ),
  opt(
    'tls-certificate',
    str(4096),
    'tandem',
    "PEM file with this node's certificate (chain), presented to peers (DRBD: a keyring serial)",
  ),
  opt(
    'tls-privkey',
    str(4096),
    'tandem',
    'PEM file with the private key of tls-certificate (DRBD: a keyring serial)',
  ),
  opt(
    'tls-ca',
    str(4096),
    'tandem',
    "PEM file with the CA certificate(s) a peer's certificate must chain to",
  ),
  opt(
    'fabric-provider',
    str(64),
    'tandem',
    'libfabric provider for sdp/rdma (verbs, tcp, sockets; default $FI_PROVIDER, else verbs if present, else tcp)',
  ),
  opt(
    'fabric-progress',
    oneOf(['auto', 'manual']),
    'tandem',
    "fabric: who moves data, the provider's thread (auto) or the addon polling its queues (manual; default for sockets, else auto)",
  ),
  opt(
    'zcopy-threshold',
    num(0, FABRIC_BUFFER_BYTES_MAX, FABRIC_ZCOPY_THRESHOLD_BYTES, '1', 'bytes'),
    'tandem',
    'fabric: payloads this large or larger are sent without a copy (SDP sdp_zcopy_thresh)',
  ),
  opt(
    'recv-poll',
    num(0, FABRIC_RECV_POLL_US_MAX, 0, '1', 'us'),
    'tandem',
    'fabric: busy-poll completions this long before sleeping (SDP recv_poll)',
  ),
  opt(
    'fabric-buffer-size',
    num(FABRIC_BUFFER_BYTES_MIN, FABRIC_BUFFER_BYTES_MAX, FABRIC_BUFFER_BYTES, '1', 'bytes'),
    'tandem',
    'fabric: size of each registered receive/bounce buffer',
  ),
  opt(
    'fabric-data-buffers',
    num(1, FABRIC_BUFFERS_MAX, FABRIC_DATA_CREDITS, '1', 'buffers'),
    'tandem',
    "fabric: receive buffers posted for DATA (the peer's credits)",
  ),
  opt(
    'fabric-control-buffers',
    num(FABRIC_CONTROL_CREDITS_MIN, FABRIC_BUFFERS_MAX, FABRIC_CONTROL_CREDITS, '1', 'buffers'),
    'tandem',
    'fabric: receive buffers posted for CONTROL',
  ),
  opt(
    'fabric-send-buffers',
    num(1, FABRIC_BUFFERS_MAX, FABRIC_SEND_BUFFERS, '1', 'buffers'),
    'tandem',
    'fabric: registered bounce buffers, bounding sends in flight',
  ),
];

const DISK: OptionSchema[] = [
  opt(
    'size',
    num(0, 2199023255552, 0, 's', 'sectors'),
    A,
    'use only this much of the backing disk (0 = all)',
  ),
  opt(
    'on-io-error',
    oneOf(['pass_on', 'call-local-io-error', 'detach'], 'detach'),
    S,
    'what a lower-level I/O error does',
  ),
  opt('disk-barrier', bool(false), A, 'use write barriers'),
  opt('disk-flushes', bool(true), S, 'flush the backing disk at epoch boundaries'),
  opt('disk-drain', bool(true), A, 'drain requests before a barrier'),
  opt('md-flushes', bool(true), A, 'flush metadata writes (Tandem always does)'),
  opt('resync-after', str(), A, 'resync after this resource (RES or RES/VOLUME) has finished'),
  opt(
    'al-extents',
    {
      type: 'numeric',
      min: 67,
      max: 65534,
      default: 1237,
      prefix: '1',
      unit: 'extents',
      clamp: true,
    },
    S,
    'activity log size (4 MiB extents)',
  ),
  opt('al-updates', bool(true), A, 'update the activity log on disk'),
  opt('discard-zeroes-if-aligned', bool(true), A, 'treat aligned discards as zeroing'),
  opt('disable-write-same', bool(false), A, 'never send WRITE SAME'),
  opt(
    'disk-timeout',
    num(0, 6000, 0, '1', '1/10 s'),
    A,
    'a backing I/O slower than this fails (0 = never)',
  ),
  opt(
    'read-balancing',
    oneOf(
      [
        'prefer-local',
        'prefer-remote',
        'round-robin',
        'least-pending',
        'when-congested-remote',
        '32K-striping',
        '64K-striping',
        '128K-striping',
        '256K-striping',
        '512K-striping',
        '1M-striping',
      ],
      'prefer-local',
    ),
    A,
    'where reads are served',
  ),
  opt(
    'rs-discard-granularity',
    num(0, 1048576, 0, '1', 'bytes'),
    A,
    'resync zeroes as discards of this size',
  ),
  // peer-device options (per connection in DRBD 9; resource-wide in the disk section too)
  opt(
    'resync-rate',
    num(1, 8388608, 250, 'k', 'KiB/s'),
    S,
    'fixed resync rate when c-plan-ahead is 0',
  ),
  opt(
    'c-plan-ahead',
    num(0, 300, 20, '1', '1/10 s'),
    S,
    'dynamic resync controller horizon (0 = fixed rate)',
  ),
  opt('c-delay-target', num(1, 100, 10, '1', '1/10 s'), S, 'dynamic resync delay target'),
  opt('c-fill-target', num(0, 1048576, 100, 's', 'sectors'), S, 'dynamic resync fill target'),
  opt('c-max-rate', num(0, 4194304, 102400, 'k', 'KiB/s'), S, 'resync rate ceiling'),
  opt(
    'c-min-rate',
    num(0, 4194304, 250, 'k', 'KiB/s'),
    S,
    'resync rate floor under application I/O',
  ),
  opt('bitmap', bool(true), A, 'keep a bitmap for this peer'),
];

const OPTIONS: OptionSchema[] = [
  opt('cpu-mask', str(), A, "CPUs for the resource's threads (hex mask)"),
  opt(
    'on-no-data-accessible',
    oneOf(['io-error', 'suspend-io'], 'io-error'),
    A,
    'I/O with no up-to-date data anywhere',
  ),
  opt('auto-promote', bool(true), S, 'become Primary when the device is opened for writing'),
  opt('peer-ack-window', num(2048, 204800, 4096, 's', 'sectors'), A, 'data between peer acks'),
  opt('peer-ack-delay', num(1, 10000, 100, '1', 'ms'), A, 'delay before a peer ack'),
  opt('twopc-timeout', num(50, 600, 300, '1', '1/10 s'), A, 'two-phase commit timeout'),
  opt('twopc-retry-timeout', num(1, 50, 1, '1', '1/10 s'), A, 'two-phase commit retry back-off'),
  opt('auto-promote-timeout', num(0, 600, 20, '1', '1/10 s'), A, 'how long auto-promote waits'),
  opt(
    'max-io-depth',
    num(4, 4294967295, 8000, '1', 'requests'),
    A,
    'application requests in flight',
  ),
  opt(
    'quorum',
    {
      type: 'numeric-or-symbol',
      min: 1,
      max: 32,
      symbols: ['off', 'majority', 'all'],
      default: 'off',
    },
    S,
    'nodes needed to keep writing',
  ),
  opt(
    'on-no-quorum',
    oneOf(['io-error', 'suspend-io'], 'suspend-io'),
    S,
    'what I/O does without quorum',
  ),
  opt(
    'quorum-minimum-redundancy',
    {
      type: 'numeric-or-symbol',
      min: 1,
      max: 32,
      symbols: ['off', 'majority', 'all'],
      default: 'off',
    },
    A,
    'up-to-date nodes needed for quorum',
  ),
  opt(
    'on-suspended-primary-outdated',
    oneOf(['disconnect', 'force-secondary'], 'disconnect'),
    A,
    'an outdated suspended Primary',
  ),
];

const STARTUP: OptionSchema[] = [
  opt(
    'wfc-timeout',
    num(0, 2147483647, 0, '1', 's'),
    S,
    'wait for the peer at start-up (0 = forever)',
  ),
  opt(
    'degr-wfc-timeout',
    num(0, 2147483647, 0, '1', 's'),
    S,
    'the same when the cluster was degraded',
  ),
  opt(
    'outdated-wfc-timeout',
    num(0, 2147483647, 0, '1', 's'),
    A,
    'the same when this node was Outdated',
  ),
  opt('wait-after-sb', bool(false), A, 'keep waiting after a split brain'),
  opt(
    'stacked-timeouts',
    { type: 'flag' },
    A,
    'stacked resources use the timeouts of their lower resource',
  ),
  opt('become-primary-on', str(), A, 'host (or "both") that becomes Primary at start-up'),
];

const HANDLER_NAMES = [
  'pri-on-incon-degr',
  'pri-lost-after-sb',
  'pri-lost',
  'initial-split-brain',
  'split-brain',
  'outdate-peer',
  'fence-peer',
  'unfence-peer',
  'local-io-error',
  'before-resync-target',
  'after-resync-target',
  'before-resync-source',
  'out-of-sync',
  'quorum-lost',
  'disconnected',
];
const HANDLER_DOCS: Readonly<Record<string, string>> = {
  'fence-peer':
    "shell command that keeps the peer from promotion (fencing); exit 3-7 as DRBD's, e.g. 4 = peer outdated",
  'unfence-peer': 'shell command that undoes fence-peer once the fenced peer is UpToDate again',
};
const HANDLERS: OptionSchema[] = HANDLER_NAMES.map((n) =>
  opt(
    n,
    str(),
    n === 'split-brain' || n === 'local-io-error' || n === 'fence-peer' || n === 'unfence-peer'
      ? S
      : A,
    HANDLER_DOCS[n] ?? 'shell command run on this event',
  ),
);

export const GLOBAL_OPTIONS: readonly OptionSchema[] = [
  opt(
    'usage-count',
    oneOf(['yes', 'no', 'ask']),
    A,
    "DRBD's online usage counter (Tandem never phones home)",
  ),
  opt('minor-count', num(1, 1048576, undefined, '1', 'minors'), A, 'minors to reserve'),
  opt('dialog-refresh', num(0, 2147483647, 1, '1', 's'), A, 'drbdadm dialog refresh'),
  opt('disable-ip-verification', { type: 'flag' }, A, 'do not check that the local address exists'),
  opt('udev-always-use-vnr', { type: 'flag' }, A, 'udev names include the volume number'),
  opt('cmd-timeout-short', num(0, 900, 5, '1', 's'), A, 'drbdadm short command timeout'),
  opt('cmd-timeout-medium', num(0, 900, 121, '1', 's'), A, 'drbdadm medium command timeout'),
  opt('cmd-timeout-long', num(0, 900, 600, '1', 's'), A, 'drbdadm long command timeout'),
];

export const SECTION_OPTIONS: Readonly<Record<SectionName, readonly OptionSchema[]>> = {
  net: NET,
  disk: DISK,
  options: OPTIONS,
  startup: STARTUP,
  handlers: HANDLERS,
};

/** Peer-device options: the only ones a DRBD 9 `connection { disk {} }` may set. */
export const PEER_DEVICE_OPTIONS: readonly string[] = [
  'resync-rate',
  'c-plan-ahead',
  'c-delay-target',
  'c-fill-target',
  'c-max-rate',
  'c-min-rate',
  'bitmap',
];

export const SECTION_NAMES: readonly SectionName[] = [
  'net',
  'disk',
  'options',
  'startup',
  'handlers',
];

const bySection = new Map<SectionName, Map<string, OptionSchema>>(
  SECTION_NAMES.map((s) => [s, new Map(SECTION_OPTIONS[s].map((o) => [o.name, o]))]),
);
const globalByName = new Map(GLOBAL_OPTIONS.map((o) => [o.name, o]));

export function optionSchema(
  section: SectionName | 'global',
  name: string,
): OptionSchema | undefined {
  return section === 'global' ? globalByName.get(name) : bySection.get(section)?.get(name);
}

export function optionNames(section: SectionName | 'global'): string[] {
  return section === 'global'
    ? GLOBAL_OPTIONS.map((o) => o.name)
    : SECTION_OPTIONS[section].map((o) => o.name);
}

const PREFIX_BYTES: Record<UnitPrefix, number> = { '1': 1, s: 512, k: 1024 };
const SUFFIX_BYTES: Readonly<Record<string, number>> = {
  s: 512,
  S: 512,
  k: 1024,
  K: 1024,
  m: 1024 ** 2,
  M: 1024 ** 2,
  g: 1024 ** 3,
  G: 1024 ** 3,
};

/**
 * A drbd.conf number in the option's native unit: `10M` for a KiB option is 10240.
 * Returns an error text when the word is not a number, carries a suffix where none is allowed,
 * or is out of the option's range.
 */
export function parseNumericValue(
  word: string,
  kind: Extract<OptionKind, { type: 'numeric' }>,
):
  | { ok: true; value: number; clampedFrom?: number }
  | { ok: false; error: string; expected: string } {
  const m = /^(-?[0-9]+)([a-zA-Z]?)$/.exec(word);
  const range = `${kind.min}..${kind.max}${kind.unit ? ` (${kind.unit})` : ''}`;
  if (!m) return { ok: false, error: `'${word}' is not a number`, expected: `a number ${range}` };
  const digits = m[1] ?? '';
  const suffix = m[2] ?? '';
  let value = Number(digits);
  if (!Number.isSafeInteger(value))
    return { ok: false, error: `'${word}' is too large`, expected: `a number ${range}` };
  if (suffix !== '') {
    const mult = SUFFIX_BYTES[suffix];
    if (mult === undefined)
      return {
        ok: false,
        error: `unknown unit suffix '${suffix}' in '${word}'`,
        expected: 'a suffix s, K, M or G',
      };
    // drbdadm scales by the suffix for every numeric option (`max-buffers 8k` is 8192 pages).
    value = Math.floor((value * mult) / PREFIX_BYTES[kind.prefix]);
    if (!Number.isSafeInteger(value))
      return { ok: false, error: `'${word}' is too large`, expected: `a number ${range}` };
  }
  if (value < kind.min || value > kind.max) {
    if (kind.clamp)
      return { ok: true, value: Math.min(kind.max, Math.max(kind.min, value)), clampedFrom: value };
    return { ok: false, error: `${word} is out of range`, expected: `a value ${range}` };
  }
  return { ok: true, value };
}
