// The chaos writer: a few concurrent streams of stamped writes (1 to 4 blocks each, some FUA,
// a FLUSH now and then) through the Primary's NBD export, recording in the Ledger what was
// issued and what was acknowledged, with reads among them checked against the Ledger as they
// come back. It writes until told to stop or until a write fails (a
// killed Primary, a refused write): then it stops issuing and waits for what is in flight.
import { NbdClient } from '../../src/nbd/client.js';
import type { SeededRandom } from '../../src/util/prng.js';
import { BLOCK_BYTES, readStamp, stampBlock, type Ledger } from './ledger.js';

export interface WriterRegion {
  /** Blocks [0, mainBlocks) take the random writes. */
  readonly mainBlocks: number;
  /** Blocks [freshStart, freshEnd) are written once each, in order, while `fresh` is on. */
  readonly freshStart: number;
  readonly freshEnd: number;
}

const STREAMS = 4;
/** Pause between one stream's writes: about a thousand writes a second in all, which leaves
 * the shared CPUs to the daemons. */
const PAUSE_MS = 3;
const FLUSH_EVERY = 64;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface WriterStats {
  issued: number;
  acked: number;
  failed: number;
  /** Reads answered while the writer ran (faults included). */
  reads: number;
  /** Reads that returned neither the last acknowledged write nor a later one. */
  staleReads: string[];
  lastError: string;
}

const noStats = (): WriterStats => ({
  issued: 0,
  acked: 0,
  failed: 0,
  reads: 0,
  staleReads: [],
  lastError: '',
});

export class Writer {
  private seq = 0;
  private freshNext: number;
  /** Never-written blocks the writer still turns to before going back to the main region. */
  private freshBudgetLeft = 0;
  private client: NbdClient | null = null;
  private running = false;
  private streams: Promise<void>[] = [];
  stats: WriterStats = noStats();

  constructor(
    private readonly ledger: Ledger,
    private readonly rng: SeededRandom,
    private readonly region: WriterRegion,
  ) {
    this.freshNext = region.freshStart;
  }

  /** Fresh blocks left for full-filesystem faults. */
  get freshLeft(): number {
    return this.region.freshEnd - this.freshNext;
  }

  /** Starts counting afresh (once per cycle: the writer may start several times in one). */
  resetStats(): void {
    this.stats = noStats();
  }

  /** The first block no write has been issued to yet. */
  get freshFirst(): number {
    return this.freshNext;
  }

  /** The next `blocks` blocks written go to never-written blocks (a full filesystem must allocate). */
  freshBudget(blocks: number): void {
    this.freshBudgetLeft = blocks;
  }

  /** Connects to an export and starts writing; resolves once connected. */
  async start(socketPath: string, exportName: string): Promise<void> {
    if (this.client !== null) throw new Error('writer already started');
    this.client = await NbdClient.connect({
      listener: { kind: 'unix', path: socketPath },
      exportName,
    });
    this.running = true;
    this.streams = Array.from({ length: STREAMS }, () => this.stream());
  }

  /**
   * Stops issuing and waits up to `timeoutMs` for the writes in flight to be answered. False
   * when some never were (the connection is then cut and they count as unacknowledged).
   */
  async stop(timeoutMs: number): Promise<boolean> {
    this.running = false;
    const client = this.client;
    if (client === null) return true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const drained = await Promise.race([Promise.all(this.streams).then(() => true), late]);
    clearTimeout(timer);
    if (drained) {
      await Promise.race([client.disconnect().catch(() => undefined), sleep(2_000)]);
    }
    client.destroy();
    // Streams still waiting fail with the connection now; their writes stay unacknowledged.
    await Promise.all(this.streams);
    this.client = null;
    this.streams = [];
    return drained;
  }

  private pick(read: boolean): number[] | null {
    const n = 1 + this.rng.int(4);
    if (!read && this.freshBudgetLeft > 0 && this.freshNext + n <= this.region.freshEnd) {
      const start = this.freshNext;
      this.freshNext += n;
      this.freshBudgetLeft -= n;
      return Array.from({ length: n }, (_, i) => start + i);
    }
    for (let tries = 0; tries < 8; tries++) {
      const start = this.rng.int(this.region.mainBlocks - n + 1);
      const blocks = Array.from({ length: n }, (_, i) => start + i);
      if (this.ledger.free(blocks)) return blocks;
    }
    return null;
  }

  private async stream(): Promise<void> {
    const client = this.client;
    if (client === null) return;
    let sinceFlush = 0;
    while (this.running) {
      // One operation in four is a read, checked at once: what the Primary serves during a
      // fault (a detached disk, a peer gone) must never be older than what was acknowledged.
      const read = this.rng.int(4) === 0;
      const blocks = this.pick(read);
      if (blocks === null) {
        await sleep(PAUSE_MS);
        continue;
      }
      if (read) {
        if (!(await this.read(client, blocks))) return;
        await sleep(PAUSE_MS);
        continue;
      }
      const seq = ++this.seq;
      const data = Buffer.concat(blocks.map((b) => stampBlock(this.ledger.runTag, b, seq)));
      this.ledger.issue(blocks, seq);
      this.stats.issued++;
      let answered = false;
      try {
        await client.write(blocks[0]! * BLOCK_BYTES, data, { fua: this.rng.int(8) === 0 });
        answered = true;
        this.ledger.ack(blocks, seq);
        this.stats.acked++;
        if (++sinceFlush >= FLUSH_EVERY) {
          sinceFlush = 0;
          await client.flush();
        }
      } catch (e) {
        // The write may have failed alone, or a flush after it: only an answered write is acked.
        if (!answered) {
          this.ledger.fail(blocks);
          this.stats.failed++;
        }
        this.stats.lastError = e instanceof Error ? e.message : String(e);
        this.running = false;
        return;
      }
      await sleep(PAUSE_MS);
    }
  }

  /** Reads `blocks` and checks them against the ledger; false when the read failed. */
  private async read(client: NbdClient, blocks: readonly number[]): Promise<boolean> {
    this.ledger.hold(blocks);
    try {
      const data = await client.read(blocks[0]! * BLOCK_BYTES, blocks.length * BLOCK_BYTES);
      this.stats.reads++;
      blocks.forEach((b, i) => {
        const seen = readStamp(
          data.subarray(i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES),
          this.ledger.runTag,
          b,
        );
        const why = this.ledger.verdict(b, seen);
        if (why !== null) this.stats.staleReads.push(`read during the fault: ${why}`);
      });
      return true;
    } catch (e) {
      this.stats.lastError = e instanceof Error ? e.message : String(e);
      this.running = false;
      return false;
    } finally {
      this.ledger.release(blocks);
    }
  }
}
