// drbd.conf `handlers { }`: shell commands tandemd runs on engine events, with the environment
// DRBD gives its handlers (DRBD_RESOURCE, DRBD_PEER_NODE_ID, DRBD_NODE_ID_<id>, ...), so that
// handlers written for DRBD (crm-fence-peer.9.sh and the like) read what they expect.
import { spawn, type ChildProcess } from 'node:child_process';
import type { ResourcePlan } from './resource-config.js';

/** The handler names tandemd runs (the others are accepted and ignored, see docs/CONFIG.md). */
export type HandlerName = 'fence-peer' | 'unfence-peer';

/** DRBD's handler environment for a resource and one of its peers. */
export function handlerEnv(
  plan: ResourcePlan,
  peerNodeId: number,
  upToDateNodeIds: readonly number[],
): Record<string, string> {
  const env: Record<string, string> = {
    DRBD_RESOURCE: plan.name,
    DRBD_MY_NODE_ID: String(plan.nodeId),
    DRBD_PEER_NODE_ID: String(peerNodeId),
    DRBD_VOLUME: '0',
    DRBD_MINOR: '0',
    // A bit per node id, as DRBD 9 passes it (crm-fence-peer.9.sh reads it).
    UP_TO_DATE_NODES: `0x${upToDateNodeIds.reduce((m, id) => m | (1 << id), 0).toString(16)}`,
    [`DRBD_NODE_ID_${plan.nodeId}`]: plan.me.name,
  };
  for (const p of plan.peers) {
    env[`DRBD_NODE_ID_${p.nodeId}`] = p.name;
    if (p.nodeId !== peerNodeId) continue;
    const path = p.paths[0];
    if (path === undefined) continue;
    env['DRBD_PEER_ADDRESS'] = path.peer.address;
    env['DRBD_PEER_AF'] = path.peer.family;
    env['DRBD_PEER'] = p.name;
  }
  return env;
}

/** Handlers still running, so that a stopping tandemd ends them (see stopHandlers). */
const running = new Set<ChildProcess>();

/**
 * Ends every handler still running (SIGTERM): a stopping tandemd leaves none behind (a
 * fence-peer handler can wait a long time for its cluster).
 */
export function stopHandlers(): void {
  for (const c of running) c.kill('SIGTERM');
}

/**
 * Runs `command` with `sh -c` and resolves with its exit code, or null when it could not be
 * started or died by a signal. Never rejects: a handler's failure is an answer, not an error.
 */
export function runHandler(command: string, env: Record<string, string>): Promise<number | null> {
  return new Promise((done) => {
    let child;
    try {
      child = spawn('/bin/sh', ['-c', command], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'inherit', 'inherit'],
      });
    } catch {
      done(null);
      return;
    }
    running.add(child);
    child.once('error', () => {
      running.delete(child);
      done(null);
    });
    child.once('exit', (code) => {
      running.delete(child);
      done(code);
    });
  });
}
