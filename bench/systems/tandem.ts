// Tandem's systems: standalone (one node exporting a file over NBD, no peer) and two nodes
// replicating over TCP with protocol C, B or A. Each reports honestly that it cannot run until
// the layer it needs is on main; none of them ever yields a number it did not measure.
import type { Availability, RunningSystem, StartContext, System } from '../types.js';

function notYet(id: string, label: string, reason: string): System {
  return {
    id,
    label,
    kind: 'tandem',
    probe: (): Promise<Availability> => Promise.resolve({ available: false, reason }),
    start: (_ctx: StartContext): Promise<RunningSystem> =>
      Promise.reject(new Error(`${id}: ${reason}`)),
  };
}

export const tandemStandaloneSystem: System = notYet(
  'tandem-standalone',
  'Tandem, one node: NBD export of a file (no replication)',
  'not available yet: needs the NBD server (src/nbd) on main',
);

export const tandemPairSystems: readonly System[] = (['C', 'B', 'A'] as const).map((p) =>
  notYet(
    `tandem-${p}`,
    `Tandem, two nodes, protocol ${p} over TCP loopback`,
    'not available yet: needs tandemd (the node daemon) on main',
  ),
);
