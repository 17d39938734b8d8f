#!/usr/bin/env node
// `tandemd`: the node daemon. Runs in the foreground (systemd style), logs JSON to stderr,
// manages every resource configured for this node, and listens on a control socket.
// SIGTERM/SIGINT: graceful shutdown (finish or fail I/O in flight, write metadata, close).
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { loadConfig, resourcesForNode, formatDiagnostic } from '../config/index.js';
import { defaultControlPath } from '../cli/context.js';
import { tuneHeapForIo } from '../platform/heap.js';
import { createLogger } from '../platform/log.js';
import { stopHandlers } from './handlers.js';
import { parseMetricsAddress, type MetricsAddress } from './metrics.js';
import { startNode } from './node.js';
import { TEST_DISK_FAULTS_ENV, testDiskFaults, type DiskFaultRule } from '../storage/faults.js';

interface DaemonOptions {
  readonly config: string;
  readonly node?: string;
  readonly control?: string;
  readonly logLevel: string;
  readonly metricsAddress?: string;
}

const program = new Command('tandemd')
  .description('Tandem node daemon: runs every resource configured for this node')
  .option(
    '-c, --config <file>',
    'configuration file (env TANDEM_CONFIG)',
    process.env['TANDEM_CONFIG'] ?? '/etc/tandem/tandem.conf',
  )
  .option(
    '-n, --node <name>',
    'which `on HOST` section is this node (env TANDEM_NODE; default the hostname)',
  )
  .option(
    '--control <path>',
    'control socket path (env TANDEM_CONTROL; default /run/tandem/NODE.sock)',
  )
  .option('--log-level <level>', 'debug, info, warn or error', 'info')
  .option(
    '--metrics-address <host:port>',
    'serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9942; none by default)',
  )
  .action(async (o: DaemonOptions) => {
    const node = o.node ?? process.env['TANDEM_NODE'] ?? hostname();
    let metricsAddress: MetricsAddress | undefined;
    try {
      if (o.metricsAddress !== undefined) metricsAddress = parseMetricsAddress(o.metricsAddress);
    } catch (e) {
      process.stderr.write(`tandemd: ${(e as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    const log = createLogger({ node }, o.logLevel);
    let loaded;
    try {
      loaded = await loadConfig(o.config);
    } catch (e) {
      process.stderr.write(`tandemd: ${(e as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    for (const w of loaded.warnings) log.warn({}, formatDiagnostic(w));
    const resources = resourcesForNode(loaded.config, node);
    if (resources.length === 0) {
      process.stderr.write(
        `tandemd: no resource in ${o.config} has an \`on ${node}\` section (use --node)\n`,
      );
      process.exitCode = 2;
      return;
    }
    const controlPath = o.control ?? process.env['TANDEM_CONTROL'] ?? defaultControlPath(node);
    tuneHeapForIo();
    let diskFaults: DiskFaultRule[] | undefined;
    try {
      const f = testDiskFaults(process.env);
      if (f === 'ignored') log.warn({}, `${TEST_DISK_FAULTS_ENV} is ignored outside NODE_ENV=test`);
      else if (f !== null) {
        diskFaults = f;
        log.error({ faults: f }, 'TEST ONLY: injecting disk faults into the data regions');
      }
    } catch (e) {
      process.stderr.write(`tandemd: ${(e as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    let stopping = false;
    const running = await startNode({
      node,
      resources,
      controlPath,
      log,
      configPath: resolve(o.config),
      ...(metricsAddress !== undefined ? { metricsAddress } : {}),
      ...(diskFaults !== undefined ? { diskFaults } : {}),
      onShutdownRequest: () => void stop('control'),
    });
    async function stop(why: string): Promise<void> {
      if (stopping) return;
      stopping = true;
      log.info({ why }, 'shutting down');
      try {
        await running.stop();
        log.info({}, 'stopped');
      } catch (e) {
        log.error({ err: String(e) }, 'shutdown failed');
        process.exitCode = 1;
      }
      stopHandlers();
      // Sockets of clients that never hang up must not keep a stopped daemon alive.
      process.exit(process.exitCode ?? 0);
    }
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
    log.info({ control: controlPath, resources: resources.map((r) => r.name) }, 'tandemd ready');
  });

program.parseAsync().catch((e: unknown) => {
  process.stderr.write(`tandemd: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
