// A real Prometheus server for the metrics tests: Debian's `prometheus` binary on a free loopback
// port with a temporary configuration and storage directory, stopped by its PID. promtool (same
// package) lints an exposition text.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/cli/local-cluster.js';
import { peerEnv } from './peers.js';

export interface Target {
  readonly address: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** `promtool check metrics` over `text`: its exit code and what it printed. */
export function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  const p = spawn('promtool', ['check', 'metrics'], {
    env: peerEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  p.stdout.on('data', (b: Buffer) => (output += b.toString()));
  p.stderr.on('data', (b: Buffer) => (output += b.toString()));
  p.stdin.end(text);
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, output })));
}

export class PrometheusServer {
  private log = '';

  private constructor(
    private readonly dir: string,
    private readonly proc: ChildProcess,
    readonly url: string,
  ) {
    proc.stderr?.on('data', (b: Buffer) => (this.log = (this.log + b.toString()).slice(-8192)));
  }

  /** Starts a server scraping `targets` every second; resolves once it answers /-/ready. */
  static async start(targets: readonly Target[]): Promise<PrometheusServer> {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-prometheus-'));
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: tandem',
      '    static_configs:',
      ...targets.flatMap((t) => [
        `      - targets: [${JSON.stringify(t.address)}]`,
        `        labels: ${JSON.stringify(t.labels)}`,
      ]),
      '',
    ].join('\n');
    await writeFile(join(dir, 'prometheus.yml'), config);
    const port = await freePort();
    const proc = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { env: peerEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const server = new PrometheusServer(dir, proc, `http://127.0.0.1:${port}`);
    try {
      await server.until('ready', async () => (await fetch(`${server.url}/-/ready`)).ok, 30_000);
    } catch (e) {
      await server.stop();
      throw e;
    }
    return server;
  }

  /** An instant PromQL query's result vector. */
  async query(
    promql: string,
  ): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: {
        resultType: string;
        result: { metric: Record<string, string>; value: [number, string] }[];
      };
    };
    if (body.status !== 'success' || body.data === undefined)
      throw new Error(`query ${promql}: ${body.error ?? res.status}`);
    if (body.data.resultType !== 'vector')
      throw new Error(`query ${promql}: a ${body.data.resultType}, not a vector`);
    return body.data.result;
  }

  /** Polls `cond` (errors count as not yet) until it holds; the server's log on timeout. */
  async until(what: string, cond: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const start = performance.now();
    let last = '';
    for (;;) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null)
        throw new Error(
          `prometheus exited (${this.proc.exitCode ?? this.proc.signalCode}):\n${this.log}`,
        );
      try {
        if (await cond()) return;
      } catch (e) {
        last = String(e);
      }
      if (performance.now() - start > timeoutMs)
        throw new Error(`prometheus: not ${what} after ${timeoutMs} ms (${last})\n${this.log}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** SIGTERM to our server's PID (SIGKILL after 10 s), then its temporary files go. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
