// Every process the harness starts goes through Children, so that all of them die with the
// harness: on stop, on a failed start, on Ctrl-C and on exit. Each child leads its own process
// group, and we signal the group, so whatever it spawned goes too. Only our own pids are killed.
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: string | null;
}

export interface SpawnOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Called with each complete stdout line (for readiness announcements). */
  readonly onStdoutLine?: (line: string) => void;
}

/** Bytes of a child's combined stdout/stderr kept for error messages. */
const OUTPUT_TAIL_BYTES = 16 * 1024;
/** How long stop() waits after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5000;

export class ChildHandle {
  private tail = '';
  private exit: ExitInfo | null = null;
  readonly exited: Promise<ExitInfo>;

  constructor(
    readonly name: string,
    readonly pid: number,
    readonly commandLine: string,
    exited: Promise<ExitInfo>,
  ) {
    this.exited = exited.then((e) => {
      this.exit = e;
      return e;
    });
  }

  /** Null while the child runs. */
  exitInfo(): ExitInfo | null {
    return this.exit;
  }

  /** The last few KiB the child wrote to stdout and stderr. */
  output(): string {
    return this.tail;
  }

  /** @internal */
  append(text: string): void {
    this.tail = (this.tail + text).slice(-OUTPUT_TAIL_BYTES);
  }

  describeExit(): string {
    const e = this.exit;
    if (e === null) return `${this.name} (pid ${this.pid}) is running`;
    const how = e.signal !== null ? `signal ${e.signal}` : `code ${String(e.code)}`;
    const out = this.tail.trim();
    return `${this.name} (pid ${this.pid}) exited with ${how}${out ? `: ${out.slice(-2000)}` : ''}`;
  }

  /** SIGTERM to the child's group, SIGKILL after a grace period; resolves when it is gone. */
  async stop(graceMs = STOP_GRACE_MS): Promise<ExitInfo> {
    if (this.exit !== null) return this.exit;
    signalGroup(this.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        signalGroup(this.pid, 'SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    const e = await this.exited;
    // The leader may be gone while something it spawned still holds the group.
    signalGroup(this.pid, 'SIGKILL');
    return e;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

export class Children {
  private readonly live = new Map<number, ChildHandle>();

  /** Starts `command`; rejects if it cannot be executed at all (e.g. not installed). */
  async start(
    name: string,
    command: string,
    args: readonly string[],
    opts: SpawnOptions = {},
  ): Promise<ChildHandle> {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<ExitInfo>((resolve) => {
      // 'exit' can come before the last output is read; 'close' waits for the pipes, which a
      // grandchild may hold open: take whichever comes first after a short grace.
      child.once('exit', (code, signal) => {
        const done = (): void => resolve({ code, signal });
        const t = setTimeout(done, 200);
        child.once('close', () => {
          clearTimeout(t);
          done();
        });
      });
    });
    try {
      await once(child, 'spawn');
    } catch (e) {
      throw new Error(`cannot start ${name} (${command}): ${(e as Error).message}`);
    }
    const pid = child.pid;
    if (pid === undefined) throw new Error(`cannot start ${name} (${command}): no pid`);
    const handle = new ChildHandle(name, pid, [command, ...args].join(' '), exited);
    this.live.set(pid, handle);
    void handle.exited.then(() => this.live.delete(pid));
    let partial = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      handle.append(s);
      if (opts.onStdoutLine === undefined) return;
      partial += s;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        opts.onStdoutLine(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
      }
    });
    child.stderr.on('data', (s: string) => handle.append(s));
    return handle;
  }

  /** Runs `command` to completion; rejects with its output if it fails or outlives timeoutMs. */
  async run(
    name: string,
    command: string,
    args: readonly string[],
    timeoutMs: number,
    opts: SpawnOptions = {},
  ): Promise<ChildHandle> {
    const h = await this.start(name, command, args, opts);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void h.stop(1000);
    }, timeoutMs);
    const e = await h.exited;
    clearTimeout(timer);
    if (timedOut) throw new Error(`${name} did not finish within ${timeoutMs} ms: ${h.output()}`);
    if (e.code !== 0) throw new Error(h.describeExit());
    return h;
  }

  /** Pids of children still running. */
  pids(): number[] {
    return [...this.live.keys()];
  }

  /** Graceful stop of every child still running. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.live.values()].map((h) => h.stop()));
  }

  /** Synchronous last resort (process 'exit' handler): SIGKILL every group still running. */
  killAll(): void {
    for (const pid of this.live.keys()) signalGroup(pid, 'SIGKILL');
  }
}
