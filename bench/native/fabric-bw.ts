// Runs bench/native/fabric_bw (our stand-in for fabtests' fi_msg_bw/fi_rma_bw, which Debian does
// not package): its server and client as child processes on one loopback address, the server on a
// port the kernel picks. Both must exit 0; every wait is bounded, and a child still running when
// the run gives up is killed by its own pid.
import { spawn, type ChildProcess } from 'node:child_process';

export type FabricBwMode = 'msg' | 'rma';
/**
 * How fabric_bw waits for completions. spin: busy-poll the CQ (fabtests' default); wait: sleep in
 * fi_cq_sread; fd: poll(2) the CQ's wait fd after fi_trywait (what the fabric transport does).
 */
export type FabricBwComp = 'spin' | 'wait' | 'fd';

export interface FabricBwOptions {
  readonly mode: FabricBwMode;
  readonly provider: string;
  readonly sizeBytes: number;
  readonly seconds: number;
  /** Operations kept in flight by the client. Default 64. */
  readonly window?: number;
  /** Connect timeout, and the grace after `seconds` for the final handshake. Default 10. */
  readonly timeoutSeconds?: number;
  readonly comp?: FabricBwComp;
  /** Loopback address both sides use. Default 127.0.0.1. */
  readonly host?: string;
}

export interface FabricBwMeasurement {
  readonly kind: 'measured';
  readonly mode: FabricBwMode;
  readonly provider: string;
  readonly sizeBytes: number;
  readonly window: number;
  readonly seconds: number;
  readonly messages: number;
  readonly bytes: number;
  readonly bytesPerSec: number;
  /** Whose count `bytes` is: the receiver's (msg) or the sender's, acknowledged (rma). */
  readonly countedBy: 'receiver' | 'sender';
}

export type FabricBwResult =
  | FabricBwMeasurement
  | { readonly kind: 'unsupported'; readonly mode: FabricBwMode; readonly reason: string };

export type ParsedLine =
  | { readonly kind: 'listening'; readonly port: number }
  | FabricBwResult
  | { readonly kind: 'invalid'; readonly error: string };

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const count = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/** Decodes one line fabric_bw printed; never throws. */
export function parseFabricBwLine(line: string): ParsedLine {
  let j: unknown;
  try {
    j = JSON.parse(line);
  } catch {
    return { kind: 'invalid', error: `not JSON: ${line.slice(0, 200)}` };
  }
  if (!isObj(j)) return { kind: 'invalid', error: `not an object: ${line.slice(0, 200)}` };
  const l = j['listening'];
  if (isObj(l)) {
    const port = l['port'];
    if (typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536)
      return { kind: 'listening', port };
    return { kind: 'invalid', error: `bad listening port in ${line.slice(0, 200)}` };
  }
  const mode = j['mode'];
  if (mode !== 'msg' && mode !== 'rma')
    return { kind: 'invalid', error: `no mode msg|rma in ${line.slice(0, 200)}` };
  if (typeof j['unsupported'] === 'string')
    return { kind: 'unsupported', mode, reason: j['unsupported'] };
  const { provider, sizeBytes, window, seconds, messages, bytes, bytesPerSec, countedBy } = j;
  if (
    typeof provider !== 'string' ||
    !count(sizeBytes) ||
    !count(window) ||
    !count(seconds) ||
    !count(messages) ||
    !count(bytes) ||
    !count(bytesPerSec) ||
    (countedBy !== 'receiver' && countedBy !== 'sender')
  )
    return { kind: 'invalid', error: `missing or bad result fields in ${line.slice(0, 200)}` };
  return {
    kind: 'measured',
    mode,
    provider,
    sizeBytes,
    window,
    seconds,
    messages,
    bytes,
    bytesPerSec,
    countedBy,
  };
}

interface Proc {
  readonly child: ChildProcess;
  readonly lines: string[];
  stderr: string;
  readonly exited: Promise<number | null>;
}

function start(binary: string, args: string[], onLine?: (line: string) => void): Proc {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = {
    child,
    lines: [],
    stderr: '',
    exited: new Promise((resolve) => {
      child.once('error', () => resolve(null));
      child.once('close', (code) => resolve(code));
    }),
  };
  let partial = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      p.lines.push(line);
      onLine?.(line);
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    p.stderr = (p.stderr + chunk).slice(-8192);
  });
  return p;
}

function kill(p: Proc): void {
  if (p.child.exitCode === null && p.child.signalCode === null && p.child.pid !== undefined) {
    try {
      process.kill(p.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function withTimeout<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`fabric_bw: ${what}: no answer after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const describe = (name: string, p: Proc, code: number | null): string =>
  `fabric_bw ${name} exited ${code === null ? 'abnormally' : `with code ${code}`}` +
  (p.stderr.trim() ? `: ${p.stderr.trim()}` : '');

/** One measurement: the client's result line (its count is the receiver's, see countedBy). */
export async function runFabricBw(binary: string, o: FabricBwOptions): Promise<FabricBwResult> {
  const timeoutSeconds = o.timeoutSeconds ?? 10;
  const common = [
    ...['-m', o.mode, '-p', o.provider, '-a', o.host ?? '127.0.0.1'],
    ...['-T', String(timeoutSeconds), '-c', o.comp ?? 'spin'],
  ];
  let onListening: (l: ParsedLine) => void = () => {};
  const listening = new Promise<ParsedLine>((resolve) => (onListening = resolve));
  const server = start(binary, ['server', ...common], (line) =>
    onListening(parseFabricBwLine(line)),
  );
  let client: Proc | undefined;
  try {
    const first = await withTimeout(
      'server start',
      Promise.race([
        listening,
        server.exited.then((code): ParsedLine => {
          const l = server.lines[0];
          if (code === 0 && l !== undefined) return parseFabricBwLine(l);
          return { kind: 'invalid', error: describe('server', server, code) };
        }),
      ]),
      timeoutSeconds * 1000 + 5000,
    );
    if (first.kind === 'unsupported') return first;
    if (first.kind !== 'listening') throw new Error(`fabric_bw server: ${JSON.stringify(first)}`);
    client = start(binary, [
      'client',
      ...common,
      ...['-P', String(first.port), '-s', String(o.sizeBytes)],
      ...['-w', String(o.window ?? 64), '-d', String(o.seconds)],
    ]);
    // What fabric_bw's own alarms allow (the server waits up to 3 timeouts), and a margin.
    const budgetMs = (o.seconds + 3 * timeoutSeconds) * 1000 + 10_000;
    const [clientCode, serverCode] = await withTimeout(
      'run',
      Promise.all([client.exited, server.exited]),
      budgetMs,
    );
    if (clientCode !== 0) throw new Error(describe('client', client, clientCode));
    if (serverCode !== 0) throw new Error(describe('server', server, serverCode));
    const last = client.lines.at(-1);
    const r = last === undefined ? undefined : parseFabricBwLine(last);
    if (r === undefined || (r.kind !== 'measured' && r.kind !== 'unsupported'))
      throw new Error(`fabric_bw client printed no result: ${client.lines.join('\n')}`);
    return r;
  } finally {
    kill(server);
    if (client) kill(client);
    await Promise.all([server.exited, client?.exited]);
  }
}

/**
 * For tests: runs the binary with `args` and returns its exit code, stdout and stderr; onLine
 * sees each stdout line as it comes (a server's port, before it exits).
 */
export async function runFabricBwRaw(
  binary: string,
  args: string[],
  timeoutMs: number,
  onLine?: (line: string) => void,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = start(binary, args, onLine);
  try {
    const code = await withTimeout(args.join(' '), p.exited, timeoutMs);
    return { code, stdout: p.lines.join('\n'), stderr: p.stderr };
  } finally {
    kill(p);
    await p.exited;
  }
}
