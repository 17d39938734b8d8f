// A cluster of tandemd processes on this machine's loopback, each in its own temp directory
// with its own backing file: what `tandem demo` runs, and what the end-to-end tests drive.
// Ports are picked free by the OS; NBD exports are Unix sockets; everything is removed by
// destroy(), whatever state the daemons are in.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, truncate, open } from 'node:fs/promises';
import { createServer } from 'node:net';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request, streamEvents, type RequestInit } from './control-client.js';
import type { ControlOp } from '../daemon/control-protocol.js';
import { EventState } from './event-state.js';

const here = fileURLToPath(new URL('.', import.meta.url));
/** dist/src/cli -> dist/src/daemon/main.js and dist/src/cli/main.js */
export const DAEMON_JS = resolve(here, '../daemon/main.js');
export const CLI_JS = resolve(here, 'main.js');

export interface LocalClusterOptions {
  readonly resource?: string;
  readonly nodes?: readonly string[];
  /** Size of each backing file. */
  readonly diskBytes: number;
  /** Extra lines for the resource's net { } section. */
  readonly net?: string;
  /** Lines of the resource's handlers { } section (e.g. fence-peer "CMD";). */
  readonly handlers?: string;
  /** Extra lines for the resource's disk { } section. */
  readonly disk?: string;
  /**
   * Where the metadata lives: at the end of the backing file (internal), or in a 1 MiB file of
   * its own beside it (external, `meta-disk PATH;`: a device that can grow). @default 'internal'
   */
  readonly metaDisk?: 'internal' | 'external';
  /** drbd.conf address family of every node: ipv4 (default), sdp (fabric) or ssocks. */
  readonly addressFamily?: 'ipv4' | 'sdp' | 'ssocks';
  /**
   * With 2 or more (two nodes only): a DRBD 9 `connection` with this many `path`s, path i on
   * 127.0.0.(i+1), instead of one `address` per node; the connection runs as a multipath session.
   */
  readonly paths?: number;
  /**
   * Addresses instead of loopback (e.g. inside network namespaces): `host[name]` is the node's
   * `address` IP; `paths[i]` the two nodes' IPs of path i (then `paths` is its length).
   */
  readonly ips?: {
    readonly host?: Readonly<Record<string, string>>;
    readonly paths?: readonly (readonly [string, string])[];
  };
  /** Command prefix each daemon runs under, e.g. ['ip', 'netns', 'exec', NS] per node. */
  readonly wrap?: (node: string) => readonly string[];
  /** More tandemd options per node, e.g. ['--metrics-address', '127.0.0.1:PORT']. */
  readonly daemonArgs?: (node: string) => readonly string[];
  /** A node's `device` URI, e.g. nbds://127.0.0.1:PORT/r0. @default nbd+unix:///R?socket=DIR/NODE.nbd */
  readonly device?: (node: string) => string;
  /**
   * Gives each node a configuration file of its own, made from the shared text (as machines
   * each have their own /etc): e.g. its own TLS certificate files, or a peer address rewritten
   * to go through a relay. The shared file (`configPath`) is still written, unchanged.
   */
  readonly configFor?: (node: string, text: string) => string;
}

export interface LocalNode {
  readonly name: string;
  readonly diskPath: string;
  /** The external metadata file, or null for internal metadata. */
  readonly metaPath: string | null;
  readonly controlPath: string;
  /** The configuration file this node's tandemd and tandem read. */
  readonly configPath: string;
  readonly nbdSocket: string;
  readonly nbdUri: string;
  process: ChildProcess | null;
  log: string;
}

/** Bottom of the kernel's ephemeral port range (outgoing connections take ports from there). */
function ephemeralLow(): number {
  try {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    );
    return Number.isInteger(low) && low > 21_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A port for a daemon to listen on later. Port 0's answer comes from the ephemeral range, where
 * any outgoing connection made meanwhile (other tests, the other daemon dialing) may take it
 * first; a random free port below that range is only ever taken by another explicit bind.
 */
export async function freePort(): Promise<number> {
  const high = ephemeralLow() - 1;
  for (let i = 0; i < 100; i++) {
    const port = randomInt(20_000, high);
    if (await bindable(port)) return port;
  }
  throw new Error('no free port below the ephemeral range after 100 tries');
}

export class LocalCluster {
  readonly nodes = new Map<string, LocalNode>();

  private wrap: (node: string) => readonly string[] = () => [];
  private daemonArgs: (node: string) => readonly string[] = () => [];

  private constructor(
    readonly dir: string,
    readonly resource: string,
    readonly configPath: string,
  ) {}

  static async create(o: LocalClusterOptions): Promise<LocalCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-'));
    const resource = o.resource ?? 'r0';
    const names = o.nodes ?? ['alice', 'bob'];
    const c = new LocalCluster(dir, resource, join(dir, 'tandem.conf'));
    if (o.wrap) c.wrap = o.wrap;
    if (o.daemonArgs) c.daemonArgs = o.daemonArgs;
    const hosts: string[] = [];
    const family = o.addressFamily ?? 'ipv4';
    const pathIps =
      o.ips?.paths ??
      Array.from({ length: o.paths ?? 1 }, (_, i): [string, string] => [
        `127.0.0.${i + 1}`,
        `127.0.0.${i + 1}`,
      ]);
    const multi = pathIps.length >= 2;
    if (multi && names.length !== 2) throw new Error('paths need exactly two nodes');
    for (const [i, name] of names.entries()) {
      const diskPath = join(dir, `${name}.img`);
      await writeFile(diskPath, '');
      await truncate(diskPath, o.diskBytes);
      const nbdSocket = join(dir, `${name}.nbd`);
      const metaPath = o.metaDisk === 'external' ? join(dir, `${name}.md`) : null;
      if (metaPath !== null) {
        await writeFile(metaPath, '');
        await truncate(metaPath, 1024 * 1024);
      }
      const device = o.device?.(name) ?? `nbd+unix:///${resource}?socket=${nbdSocket}`;
      c.nodes.set(name, {
        name,
        diskPath,
        metaPath,
        controlPath: join(dir, `${name}.ctl`),
        configPath: o.configFor ? join(dir, `tandem.${name}.conf`) : c.configPath,
        nbdSocket,
        nbdUri: device,
        process: null,
        log: '',
      });
      hosts.push(
        [
          `  on ${name} {`,
          `    node-id ${i};`,
          ...(multi
            ? []
            : [`    address ${family} ${o.ips?.host?.[name] ?? '127.0.0.1'}:${await freePort()};`]),
          `    device "${device}";`,
          `    disk ${diskPath};`,
          `    meta-disk ${metaPath ?? 'internal'};`,
          `  }`,
        ].join('\n'),
      );
    }
    const conf = [
      `resource ${resource} {`,
      `  net {\n    protocol C;\n${o.net ?? ''}\n  }`,
      `  disk {\n${o.disk ?? ''}\n  }`,
      ...(o.handlers === undefined ? [] : [`  handlers {\n${o.handlers}\n  }`]),
      ...hosts,
      ...(multi ? [await LocalCluster.connection(names, pathIps, family)] : []),
      `}`,
      '',
    ].join('\n');
    await writeFile(c.configPath, conf);
    if (o.configFor) {
      for (const n of c.nodes.values()) await writeFile(n.configPath, o.configFor(n.name, conf));
    }
    return c;
  }

  private static async connection(
    names: readonly string[],
    paths: readonly (readonly [string, string])[],
    family: string,
  ): Promise<string> {
    const lines = ['  connection {'];
    for (const ips of paths) {
      const ends = names.map(
        async (n, i) => `host ${n} address ${family} ${ips[i]}:${await freePort()};`,
      );
      lines.push(`    path { ${(await Promise.all(ends)).join(' ')} }`);
    }
    lines.push('  }');
    return lines.join('\n');
  }

  node(name: string): LocalNode {
    const n = this.nodes.get(name);
    if (n === undefined) throw new Error(`no node ${name}`);
    return n;
  }

  /** Runs `tandem` for a node and resolves with its stdout; rejects with its stderr. */
  tandem(name: string, ...args: string[]): Promise<string> {
    const n = this.node(name);
    return new Promise((resolve, reject) => {
      const p = spawn(
        process.execPath,
        [CLI_JS, '-c', n.configPath, '-n', name, '--control', n.controlPath, ...args],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      let err = '';
      p.stdout.on('data', (c: Buffer) => (out += c.toString()));
      p.stderr.on('data', (c: Buffer) => (err += c.toString()));
      p.on('close', (code) => {
        if (code === 0) resolve(out);
        else reject(new Error(`tandem ${args.join(' ')} (${name}) exited ${code}: ${err.trim()}`));
      });
    });
  }

  /** Starts tandemd for a node and resolves once it listens on its control socket. */
  start(name: string): Promise<void> {
    const n = this.node(name);
    const [cmd, ...pre] = [
      ...this.wrap(name),
      process.execPath,
      DAEMON_JS,
      ...['-c', n.configPath, '-n', name, '--control', n.controlPath],
      ...this.daemonArgs(name),
    ];
    const p = spawn(cmd ?? process.execPath, pre, {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    n.process = p;
    n.log = '';
    return new Promise((resolve, reject) => {
      p.stderr.on('data', (c: Buffer) => {
        n.log += c.toString();
        if (n.log.includes('tandemd ready')) resolve();
      });
      p.on('exit', (code, signal) => {
        if (n.process === p) n.process = null;
        reject(
          new Error(`tandemd ${name} exited (${code ?? signal}) before it was ready:\n${n.log}`),
        );
      });
    });
  }

  /** Sends a signal to a node's daemon and waits for it to exit. */
  async stop(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.node(name).process;
    if (p === null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(signal);
    await exited;
  }

  request(name: string, op: ControlOp, init: RequestInit = {}): Promise<unknown> {
    return request(this.node(name).controlPath, op, { resource: this.resource, ...init });
  }

  /**
   * Waits, on the node's events stream, until `done(state)` holds; rejects after timeoutMs
   * naming what it waited for, or at once when the stream fails. The stream ends either way.
   */
  async waitFor(
    name: string,
    what: string,
    done: (s: EventState) => boolean,
    timeoutMs = 60_000,
  ): Promise<void> {
    const w = this.watch(name);
    try {
      await w.until(what, done, timeoutMs);
    } finally {
      w.close();
    }
  }

  /**
   * Watches a node's events stream from now on: `ready` resolves once the current state has
   * arrived, so whatever the caller does next is seen; `until` waits for a condition.
   */
  watch(name: string): EventWatch {
    return new EventWatch(name, this.node(name).controlPath);
  }

  /** The data region of a node's backing file (metadata at the end excluded). */
  async readData(name: string, lengthBytes: number): Promise<Buffer> {
    const fh = await open(this.node(name).diskPath, 'r');
    try {
      const b = Buffer.alloc(lengthBytes);
      await fh.read(b, 0, lengthBytes, 0);
      return b;
    } finally {
      await fh.close();
    }
  }

  async destroy(): Promise<void> {
    for (const n of this.nodes.values()) {
      if (n.process !== null) await this.stop(n.name, 'SIGKILL').catch(() => undefined);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

interface Waiter {
  readonly done: (s: EventState) => boolean;
  readonly resolve: () => void;
  readonly fail: (e: Error) => void;
}

/** A node's events stream folded into an EventState, with conditions to wait on. */
export class EventWatch {
  readonly state = new EventState();
  /** Resolves once the `exists` snapshot is in; rejects if the stream cannot be opened. */
  readonly ready: Promise<void>;
  private readonly waiters = new Set<Waiter>();
  private readonly abort = new AbortController();
  private failure: Error | null = null;

  constructor(
    readonly node: string,
    controlPath: string,
  ) {
    let markReady: () => void = () => undefined;
    this.ready = new Promise((resolve) => (markReady = resolve));
    const stream = streamEvents(
      controlPath,
      true,
      (e) => {
        this.state.apply(e);
        if (!this.state.snapshotDone) return false;
        markReady();
        for (const w of this.waiters) {
          if (w.done(this.state)) {
            this.waiters.delete(w);
            w.resolve();
          }
        }
        return false;
      },
      this.abort.signal,
    );
    this.ready = Promise.race([this.ready, stream.then(() => undefined)]);
    stream.catch((e: unknown) => {
      const failure = e instanceof Error ? e : new Error(String(e));
      this.failure = failure;
      // No event will come any more: waiting on to the timeout would only hide why.
      for (const w of this.waiters) w.fail(failure);
      this.waiters.clear();
    });
  }

  /**
   * Resolves when `done(state)` holds (now or later); rejects naming `what` after timeoutMs, or
   * at once when the events stream failed.
   */
  until(what: string, done: (s: EventState) => boolean, timeoutMs = 60_000): Promise<void> {
    if (this.state.snapshotDone && done(this.state)) return Promise.resolve();
    const notYet = (why: string, cause?: Error): Error =>
      new Error(`${this.node}: not ${what}${why}; state:\n${this.state.describe()}`, { cause });
    const streamFailed = (e: Error): Error => notYet(` (events stream: ${e.message})`, e);
    if (this.failure !== null) return Promise.reject(streamFailed(this.failure));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(notYet(` after ${timeoutMs} ms`));
      }, timeoutMs);
      const w: Waiter = {
        done,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        fail: (e) => {
          clearTimeout(timer);
          reject(streamFailed(e));
        },
      };
      this.waiters.add(w);
    });
  }

  close(): void {
    this.abort.abort();
  }
}
