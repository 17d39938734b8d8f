// A minimal QMP client (QEMU Machine Protocol: one JSON object a line over a Unix socket), just
// enough to start a blockdev-mirror job in qemu-storage-daemon and poll it. Commands run one at
// a time; asynchronous events are skipped; every wait has a deadline.
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

const QMP_LINE_BYTES_MAX = 1 << 20;

export class QmpClient {
  private buffer = '';
  private readonly lines: string[] = [];
  private wake: (() => void) | null = null;
  private closed: Error | null = null;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => {
      this.buffer += s;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line) this.lines.push(line);
      }
      if (this.buffer.length > QMP_LINE_BYTES_MAX) this.fail(new Error('QMP line too long'));
      this.wake?.();
    });
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('QMP socket closed')));
  }

  private fail(e: Error): void {
    this.closed ??= e;
    this.wake?.();
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async open(path: string, timeoutMs: number): Promise<QmpClient> {
    const socket = connect(path);
    await once(socket, 'connect');
    const c = new QmpClient(socket);
    const greeting = await c.nextMessage(timeoutMs);
    if (!('QMP' in greeting))
      throw new Error(`QMP: unexpected greeting ${JSON.stringify(greeting)}`);
    await c.execute('qmp_capabilities', {}, timeoutMs);
    return c;
  }

  private async nextMessage(timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.lines.shift();
      if (line !== undefined) {
        try {
          const v: unknown = JSON.parse(line);
          if (typeof v === 'object' && v !== null) return v as Record<string, unknown>;
        } catch {
          // fall through to the error below
        }
        throw new Error(`QMP: not a JSON object: ${line.slice(0, 200)}`);
      }
      if (this.closed) throw this.closed;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`QMP: no answer within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** Runs one command and returns its "return" value; QMP errors reject with their text. */
  async execute(name: string, args: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
    this.socket.write(JSON.stringify({ execute: name, arguments: args }) + '\n');
    for (;;) {
      const m = await this.nextMessage(timeoutMs);
      if ('event' in m) continue;
      if ('error' in m) throw new Error(`QMP ${name}: ${JSON.stringify(m['error'])}`);
      if ('return' in m) return m['return'];
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface BlockJob {
  readonly device: string;
  readonly status: string;
  readonly ready: boolean;
  readonly offset: number;
  readonly len: number;
  readonly ioStatus: string;
}

/** Validates query-block-jobs' answer; throws on a shape we do not understand. */
export function parseBlockJobs(v: unknown): BlockJob[] {
  if (!Array.isArray(v)) throw new Error('QMP query-block-jobs: not an array');
  return v.map((j: unknown) => {
    const o = j as Record<string, unknown>;
    if (
      typeof o !== 'object' ||
      o === null ||
      typeof o['device'] !== 'string' ||
      typeof o['status'] !== 'string' ||
      typeof o['ready'] !== 'boolean' ||
      typeof o['offset'] !== 'number' ||
      typeof o['len'] !== 'number'
    )
      throw new Error(`QMP query-block-jobs: unexpected job ${JSON.stringify(j)}`);
    return {
      device: o['device'],
      status: o['status'],
      ready: o['ready'],
      offset: o['offset'],
      len: o['len'],
      ioStatus: typeof o['io-status'] === 'string' ? o['io-status'] : 'ok',
    };
  });
}
