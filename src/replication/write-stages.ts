// Where a client write's time goes, stage by stage: received from NBD -> issued by the engine
// -> metadata (activity-log) barrier done, for writes that waited for one -> local disk done
// -> each peer's ack -> completed. Pure: the daemon calls one mark per event and this module
// reads time from the clock it was given. It stays on in production, so a mark is a few array
// reads and writes: fixed typed arrays indexed by request id, sequence number and I/O id (each
// masked into WRITE_STAGES_TRACKED_MAX slots), and per stage a counter, a sum, and a log2
// histogram from which the percentiles are derived.
import { WRITE_STAGES_BUCKETS, WRITE_STAGES_TRACKED_MAX } from '../limits.js';

/** The stages of a write, each the time since the previous mark it depends on. */
export const WRITE_STAGES = ['engine', 'barrier', 'disk', 'peer', 'total'] as const;
export type WriteStage = (typeof WRITE_STAGES)[number];

/** One stage's latency in microseconds (0 when count is 0). */
export interface StageLatency {
  readonly count: number;
  readonly meanUs: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
  readonly sumUs: number;
  /**
   * The histogram: samples per log2 bucket (bucket b >= 1 holds [2^(b-1), 2^b) us), trailing
   * empty buckets left out; two snapshots give the breakdown of what ran between them
   * (`stageDelta`).
   */
  readonly buckets: readonly number[];
}

/** `tandem status --json`: a resource's write latency by stage, since it was created. */
export interface WriteStagesStatus {
  readonly stages: Readonly<Record<WriteStage, StageLatency>>;
  /** Writes left out of the breakdown: their slot was taken while they were in flight. */
  readonly dropped: number;
}

const ENGINE = 0;
const BARRIER = 1;
const DISK = 2;
const PEER = 3;
const TOTAL = 4;
const NONE = -1;

/** A log2 histogram of microsecond samples with count, sum and max. */
export class Log2Histogram {
  readonly buckets = new Float64Array(WRITE_STAGES_BUCKETS);
  /** The smallest and largest sample seen in each bucket (interpolation stays inside them). */
  private readonly lows = new Float64Array(WRITE_STAGES_BUCKETS).fill(Infinity);
  private readonly highs = new Float64Array(WRITE_STAGES_BUCKETS);
  count = 0;
  sum = 0;
  max = 0;

  /** Bucket 0 holds [0, 1) us, bucket b >= 1 holds [2^(b-1), 2^b) us; the last one the rest. */
  static bucketOf(us: number): number {
    if (!(us >= 1)) return 0;
    const b = 32 - Math.clz32(us >= 0x7fffffff ? 0x7fffffff : us);
    return b < WRITE_STAGES_BUCKETS ? b : WRITE_STAGES_BUCKETS - 1;
  }

  add(us: number): void {
    const v = us > 0 ? us : 0;
    const b = Log2Histogram.bucketOf(v);
    this.buckets[b]!++;
    if (v < this.lows[b]!) this.lows[b] = v;
    if (v > this.highs[b]!) this.highs[b] = v;
    this.count++;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  /**
   * The q-quantile (0 < q <= 1): found in its bucket, then interpolated linearly between the
   * smallest and largest sample that bucket holds (so a cluster of equal samples comes back
   * exact, and the error is at most the spread of one bucket).
   */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let below = 0;
    for (let b = 0; b < WRITE_STAGES_BUCKETS; b++) {
      const n = this.buckets[b]!;
      if (below + n >= rank) {
        const lo = this.lows[b]!;
        const hi = this.highs[b]!;
        return n === 1 ? hi : lo + ((hi - lo) * (rank - below - 1)) / (n - 1);
      }
      below += n;
    }
    return this.max;
  }

  summary(): StageLatency {
    if (this.count === 0) return EMPTY;
    let last = WRITE_STAGES_BUCKETS - 1;
    while (last > 0 && this.buckets[last] === 0) last--;
    return {
      count: this.count,
      meanUs: round1(this.sum / this.count),
      p50Us: round1(this.quantile(0.5)),
      p99Us: round1(this.quantile(0.99)),
      maxUs: round1(this.max),
      sumUs: round1(this.sum),
      buckets: Array.from(this.buckets.subarray(0, last + 1)),
    };
  }
}

const EMPTY: StageLatency = {
  count: 0,
  meanUs: 0,
  p50Us: 0,
  p99Us: 0,
  maxUs: 0,
  sumUs: 0,
  buckets: [],
};

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/**
 * The writes between two snapshots of one stage (`before` taken earlier from the same resource;
 * null: since it started). Percentiles come from the bucket counts alone, interpolated inside
 * each bucket's bounds (a lone sample at its middle), so they are good to a factor of two at
 * worst; max is the upper bound
 * of the highest bucket used, kept within `after.maxUs`.
 */
export function stageDelta(after: StageLatency, before: StageLatency | null): StageLatency {
  const buckets = after.buckets.map((n, b) => n - (before?.buckets[b] ?? 0));
  const count = after.count - (before?.count ?? 0);
  if (count <= 0 || buckets.some((n) => n < 0)) return EMPTY;
  const sumUs = after.sumUs - (before?.sumUs ?? 0);
  let last = buckets.length - 1;
  while (last > 0 && buckets[last] === 0) last--;
  const upper = (b: number): number => Math.min(after.maxUs, b === 0 ? 1 : 2 ** b);
  const quantile = (q: number): number => {
    const rank = Math.max(1, Math.ceil(q * count));
    let below = 0;
    for (let b = 0; b <= last; b++) {
      const n = buckets[b]!;
      if (n > 0 && below + n >= rank) {
        const lo = b === 0 ? 0 : 2 ** (b - 1);
        return lo + ((upper(b) - lo) * (rank - below - 0.5)) / n;
      }
      below += n;
    }
    return upper(last);
  };
  return {
    count,
    meanUs: round1(sumUs / count),
    p50Us: round1(quantile(0.5)),
    p99Us: round1(quantile(0.99)),
    maxUs: round1(upper(last)),
    sumUs: round1(sumUs),
    buckets: buckets.slice(0, last + 1),
  };
}

/** `stageDelta` of every stage. */
export function writeStagesDelta(
  after: WriteStagesStatus,
  before: WriteStagesStatus | null,
): WriteStagesStatus {
  const stages = {} as Record<WriteStage, StageLatency>;
  for (const k of WRITE_STAGES) stages[k] = stageDelta(after.stages[k], before?.stages[k] ?? null);
  return { stages, dropped: after.dropped - (before?.dropped ?? 0) };
}

/**
 * Per-resource stage timing of client writes. Marks name a write the way the daemon sees it at
 * that point: the request id (received, issued, barrier, complete), the engine's I/O id of its
 * local write (disk done), or its Data sequence number (peer acks). A mark for anything not
 * tracked (a peer's write on a Secondary, a resync write, a write whose slot was taken) is
 * ignored.
 */
export class WriteStages {
  private readonly mask = WRITE_STAGES_TRACKED_MAX - 1;
  /** Request id in each slot, NONE when free. */
  private readonly req = new Float64Array(WRITE_STAGES_TRACKED_MAX).fill(NONE);
  private readonly tRecv = new Float64Array(WRITE_STAGES_TRACKED_MAX);
  /** When the engine issued the write (its diskWrite or Data), NONE before. */
  private readonly tIssue = new Float64Array(WRITE_STAGES_TRACKED_MAX);
  /** When the metadata barrier that held it was done, NONE when none held it. */
  private readonly tBarrier = new Float64Array(WRITE_STAGES_TRACKED_MAX);
  private readonly seq = new Float64Array(WRITE_STAGES_TRACKED_MAX);
  private readonly ioId = new Float64Array(WRITE_STAGES_TRACKED_MAX);
  /** Slot of the write that sent each Data sequence number / issued each I/O id (masked). */
  private readonly bySeq = new Int32Array(WRITE_STAGES_TRACKED_MAX).fill(NONE);
  private readonly byIo = new Int32Array(WRITE_STAGES_TRACKED_MAX).fill(NONE);
  private readonly hist: readonly Log2Histogram[] = WRITE_STAGES.map(() => new Log2Histogram());
  private dropped = 0;

  /** @param nowUs monotonic time in microseconds */
  constructor(private readonly nowUs: () => number) {}

  /** NBD handed the write to the resource (its request id is fresh). */
  received(reqId: number): void {
    const i = reqId & this.mask;
    if (this.req[i] !== NONE) this.dropped++;
    this.req[i] = reqId;
    this.tRecv[i] = this.nowUs();
    this.tIssue[i] = NONE;
    this.tBarrier[i] = NONE;
    this.seq[i] = NONE;
    this.ioId[i] = NONE;
  }

  /** The engine issued the write's local disk write as I/O `ioId`. */
  issued(reqId: number | undefined, ioId: number): void {
    const i = this.slot(reqId);
    if (i === NONE) return;
    this.engineDone(i);
    this.ioId[i] = ioId;
    this.byIo[ioId & this.mask] = i;
  }

  /** The engine sent the write to a peer as Data `seq` (one sequence number for all peers). */
  sent(reqId: number | undefined, seq: number): void {
    const i = this.slot(reqId);
    if (i === NONE) return;
    this.engineDone(i);
    this.seq[i] = seq;
    this.bySeq[seq & this.mask] = i;
  }

  /** The metadata barrier that held the write (and its Data) is done. */
  barrierDone(reqId: number | undefined): void {
    const i = this.slot(reqId);
    if (i === NONE || this.tIssue[i] === NONE || this.tBarrier[i] !== NONE) return;
    const t = this.nowUs();
    this.tBarrier[i] = t;
    this.hist[BARRIER]!.add(t - this.tIssue[i]!);
  }

  /** A local disk I/O completed (any: only a tracked write's counts). */
  diskDone(ioId: number): void {
    const i = this.byIo[ioId & this.mask]!;
    if (i === NONE || this.ioId[i] !== ioId || this.req[i] === NONE) return;
    this.hist[DISK]!.add(this.nowUs() - this.startOf(i));
  }

  /** A peer acknowledged Data `seq` (WriteAck or RecvAck, as the protocol asks). */
  peerAck(seq: number): void {
    const i = this.bySeq[seq & this.mask]!;
    if (i === NONE || this.seq[i] !== seq || this.req[i] === NONE) return;
    this.hist[PEER]!.add(this.nowUs() - this.startOf(i));
  }

  /** The engine completed request `reqId`; a successful write adds its total. */
  complete(reqId: number, ok: boolean): void {
    const i = this.slot(reqId);
    if (i === NONE) return;
    if (ok) this.hist[TOTAL]!.add(this.nowUs() - this.tRecv[i]!);
    this.req[i] = NONE;
  }

  /**
   * The writes in flight will never complete through the engine (it stopped: the resource went
   * down and failed them): forget them, so a later engine's I/O ids and sequence numbers, which
   * start again, cannot be taken for theirs. The histograms stay.
   */
  forgetInFlight(): void {
    this.req.fill(NONE);
  }

  status(): WriteStagesStatus {
    const stages = {} as Record<WriteStage, StageLatency>;
    WRITE_STAGES.forEach((name, k) => (stages[name] = this.hist[k]!.summary()));
    return { stages, dropped: this.dropped };
  }

  private slot(reqId: number | undefined): number {
    if (reqId === undefined) return NONE;
    const i = reqId & this.mask;
    return this.req[i] === reqId ? i : NONE;
  }

  private engineDone(i: number): void {
    if (this.tIssue[i] !== NONE) return;
    const t = this.nowUs();
    this.tIssue[i] = t;
    this.hist[ENGINE]!.add(t - this.tRecv[i]!);
  }

  /** Disk and peer time count from when the write could go: issued, or released by a barrier. */
  private startOf(i: number): number {
    return this.tBarrier[i] !== NONE ? this.tBarrier[i]! : this.tIssue[i]!;
  }
}

/** `engine 12us, barrier 80us, ...`: each stage's p50 for `tandem status`; '' before any write. */
export function formatStageP50(s: WriteStagesStatus): string {
  const parts: string[] = [];
  for (const name of WRITE_STAGES) {
    const l = s.stages[name];
    if (l.count > 0) parts.push(`${name} ${formatUs(l.p50Us)}`);
  }
  return parts.join(', ');
}

export function formatUs(us: number): string {
  if (us >= 10_000) return `${(us / 1000).toFixed(0)}ms`;
  if (us >= 1000) return `${(us / 1000).toFixed(1)}ms`;
  return `${Math.round(us)}us`;
}
