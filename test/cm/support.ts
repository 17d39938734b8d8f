// Helpers for connection-manager tests: nodes on a memory network or TCP loopback, an event
// recorder with waits, and a log that keeps every line (to check what is and is not logged).
import { randomBytes } from 'node:crypto';
import { ConnectionManager } from '../../src/cm/manager.js';
import type { CmEvent, ConnectionNetOptions, NodeOptions } from '../../src/cm/types.js';
import type { Clock } from '../../src/platform/clock.js';
import { SeededRandom } from '../../src/util/prng.js';
import type { Endpoint, Log, Transport } from '../../src/transport/types.js';
import { waitFor } from '../compliance/transport.suite.js';

export class MemoryLog implements Log {
  readonly lines: string[] = [];
  info(fields: object, message: string): void {
    this.lines.push(`INFO ${message} ${JSON.stringify(fields)}`);
  }
  warn(fields: object, message: string): void {
    this.lines.push(`WARN ${message} ${JSON.stringify(fields)}`);
  }
  text(): string {
    return this.lines.join('\n');
  }
}

const live: TestNode[] = [];

/** Closes every node made since the last call (use in afterEach, so a failed test cannot hang). */
export async function closeAllNodes(): Promise<void> {
  for (const n of live.splice(0)) {
    await n.cm.close();
    await n.transport.close();
  }
}

export interface TestNode {
  readonly cm: ConnectionManager;
  readonly events: CmEvent[];
  readonly log: MemoryLog;
  readonly transport: Transport;
  /** Resolves with the first event (past or future) that matches. */
  waitEvent(what: string, pred: (e: CmEvent) => boolean, timeoutMs?: number): Promise<CmEvent>;
}

export function makeNode(
  nodeId: number,
  transport: Transport,
  clock: Clock,
  extra: Partial<NodeOptions> = {},
  seed = nodeId + 1,
): TestNode {
  const log = new MemoryLog();
  const cm = new ConnectionManager(
    { clock, random: new SeededRandom(seed), randomBytes, log },
    { nodeId, transports: { [transport.name]: transport }, ...extra },
  );
  const events: CmEvent[] = [];
  const waiters = new Set<(e: CmEvent) => void>();
  cm.on((e) => {
    events.push(e);
    for (const w of [...waiters]) w(e);
  });
  const node: TestNode = {
    cm,
    events,
    log,
    transport,
    waitEvent(what, pred, timeoutMs = 10_000) {
      const past = events.find(pred);
      if (past) return Promise.resolve(past);
      return waitFor(
        `node ${nodeId}: ${what}`,
        (done) => {
          const w = (e: CmEvent): void => {
            if (pred(e)) done(e);
          };
          waiters.add(w);
          return () => waiters.delete(w);
        },
        timeoutMs,
      );
    },
  };
  live.push(node);
  return node;
}

export const connected =
  (resource: string, peer: number) =>
  (e: CmEvent): boolean =>
    e.kind === 'state' &&
    e.resource === resource &&
    e.peerNodeId === peer &&
    e.state === 'Connected';

export const refused =
  (code: string, byPeer?: boolean) =>
  (e: CmEvent): boolean =>
    e.kind === 'refused' && e.code === code && (byPeer === undefined || e.byPeer === byPeer);

export function connectBoth(
  a: TestNode,
  aEp: Endpoint,
  b: TestNode,
  bEp: Endpoint,
  resource: string,
  net: ConnectionNetOptions = {},
  netB: ConnectionNetOptions = net,
): void {
  a.cm.addConnection({ resource, peerNodeId: b.cm.nodeId, paths: [{ peer: bEp }], net });
  b.cm.addConnection({ resource, peerNodeId: a.cm.nodeId, paths: [{ peer: aEp }], net: netB });
}
