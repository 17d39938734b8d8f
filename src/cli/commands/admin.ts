// The commands that drive a running tandemd over its control socket, named as drbdadm's.
// Each prints nothing on success (like drbdadm) and one actionable line on failure.
import type { Command } from 'commander';
import type { ControlOp } from '../../daemon/control-protocol.js';
import { formatEvent } from '../../daemon/control-protocol.js';
import type { ResourceStatus } from '../../daemon/status.js';
import { formatRate, formatStatus } from '../../daemon/status.js';
import { globalOptions, CliError, EXIT } from '../context.js';
import { request, streamEvents } from '../control-client.js';
import { allConnected, allInSync, EventState } from '../event-state.js';

interface SimpleCommand {
  readonly name: ControlOp;
  readonly description: string;
  readonly flags?: readonly { flag: string; key: string; description: string }[];
}

const SIMPLE: readonly SimpleCommand[] = [
  { name: 'up', description: 'bring a resource up: attach its disk and connect to its peers' },
  { name: 'down', description: 'take a resource down: disconnect, flush, detach' },
  { name: 'attach', description: 'attach the backing disk and its metadata' },
  { name: 'detach', description: 'detach the backing disk (the node becomes Diskless)' },
  {
    name: 'connect',
    description: 'connect to the peers',
    flags: [
      {
        flag: '--discard-my-data',
        key: 'discardMyData',
        description: 'resolve a split brain by becoming the sync target',
      },
    ],
  },
  { name: 'disconnect', description: 'disconnect from the peers (StandAlone)' },
  {
    name: 'primary',
    description: 'promote this node to Primary (its NBD export becomes writable)',
    flags: [
      {
        flag: '--force',
        key: 'force',
        description: 'promote without UpToDate data: starts a new data generation',
      },
    ],
  },
  { name: 'secondary', description: 'demote this node to Secondary' },
  {
    name: 'new-current-uuid',
    description: 'start a new data generation',
    flags: [
      {
        flag: '--clear-bitmap',
        key: 'clearBitmap',
        description: 'skip the initial sync of devices known identical',
      },
    ],
  },
  { name: 'invalidate', description: 'discard local data and resync it from the peer' },
  {
    name: 'invalidate-remote',
    description: "mark the peer's data as out of sync and resync it from here",
  },
  { name: 'verify', description: 'compare the data with the peer block by block (online verify)' },
];

export function registerAdmin(program: Command): void {
  for (const c of SIMPLE) {
    const cmd = program
      .command(`${c.name} <resource>`)
      .description(`${c.description} ("all" for every resource)`);
    for (const f of c.flags ?? []) cmd.option(f.flag, f.description);
    cmd.action(
      async (resource: string, opts: Record<string, boolean | undefined>, self: Command) => {
        const flags: Record<string, boolean> = {};
        for (const f of c.flags ?? []) if (opts[f.key] === true) flags[f.key] = true;
        await request(globalOptions(self).controlPath, c.name, { resource, flags });
      },
    );
  }

  program
    .command('status [resource]')
    .description('show roles, disk states, connections and sync progress')
    .option('--json', 'print JSON')
    .action(async (resource: string | undefined, opts: { json?: boolean }, self: Command) => {
      const result = (await request(globalOptions(self).controlPath, 'status', {
        ...(resource !== undefined ? { resource } : {}),
      })) as ResourceStatus[];
      process.stdout.write(
        opts.json === true ? `${JSON.stringify(result, null, 2)}\n` : formatStatus(result),
      );
    });

  program
    .command('events')
    .description('stream state changes, one line each (like drbdsetup events2)')
    .option('--json', 'print one JSON object per line')
    .option('--now', 'print the current state first')
    .action(async (opts: { json?: boolean; now?: boolean }, self: Command) => {
      await streamEvents(globalOptions(self).controlPath, opts.now === true, (e) => {
        if (e.object === 'helper' && e.props['end'] === true) {
          if (opts.json !== true) process.stdout.write('exists -\n');
          return false;
        }
        process.stdout.write(opts.json === true ? `${JSON.stringify(e)}\n` : `${formatEvent(e)}\n`);
        return false;
      });
    });

  program
    .command('wait-connect <resource>')
    .description('wait until the resource is connected to all its peers')
    .option('--timeout <seconds>', 'give up after this long (0: wait forever)', '0')
    .action(async (resource: string, opts: { timeout: string }, self: Command) => {
      await waitFor(globalOptions(self).controlPath, resource, opts.timeout, 'connected', (s) =>
        allConnected(s, resource),
      );
    });

  program
    .command('wait-sync <resource>')
    .description('wait until the resource is connected and in sync, showing progress')
    .option('--timeout <seconds>', 'give up after this long (0: wait forever)', '0')
    .action(async (resource: string, opts: { timeout: string }, self: Command) => {
      const tty = process.stdout.isTTY;
      await waitFor(globalOptions(self).controlPath, resource, opts.timeout, 'in sync', (s) => {
        for (const p of s.all('peer-device', resource)) {
          if (typeof p['done'] !== 'number' || !String(p['replication']).startsWith('Sync'))
            continue;
          const line = progressLine(p['done'], Number(p['rate'] ?? 0), p['eta']);
          if (tty) process.stdout.write(`\r${line}`);
          else process.stdout.write(`${line}\n`);
        }
        const done = allInSync(s, resource);
        if (done && tty) process.stdout.write('\n');
        return done;
      });
    });
}

function progressLine(percent: number, rate: number, eta: unknown): string {
  const width = 30;
  const filled = Math.max(0, Math.min(width, Math.round((percent / 100) * width)));
  const etaText = typeof eta === 'number' ? `${Math.round(eta)}s` : '?';
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${percent.toFixed(1)}% ${formatRate(rate)} eta ${etaText}`;
}

async function waitFor(
  controlPath: string,
  resource: string,
  timeout: string,
  what: string,
  done: (s: EventState) => boolean,
): Promise<void> {
  const seconds = Number(timeout);
  if (!Number.isFinite(seconds) || seconds < 0)
    throw new CliError(`--timeout: expected seconds, got "${timeout}"`, EXIT.usage);
  const state = new EventState();
  // On timeout the stream is aborted: left open, it would keep the process alive.
  const abort = new AbortController();
  let timedOut = false;
  const timer =
    seconds > 0
      ? setTimeout(() => {
          timedOut = true;
          abort.abort();
        }, seconds * 1000)
      : undefined;
  try {
    await streamEvents(
      controlPath,
      true,
      (e) => {
        state.apply(e);
        if (!state.snapshotDone) return false;
        if (!state.resources().includes(resource))
          throw new CliError(`${resource}: no such resource on this node`, EXIT.refused);
        return done(state);
      },
      abort.signal,
    );
  } finally {
    clearTimeout(timer);
  }
  if (timedOut) throw new CliError(`${resource}: not ${what} after ${seconds}s`, EXIT.timeout);
}
