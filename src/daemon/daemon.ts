// The daemon: the set of resources this node runs, the control operations that reach them, and
// the events bus the `events` stream and `wait-*` commands listen to.
import type { ControlRequest, TandemEvent } from './control-protocol.js';
import type { ControlHandler } from './control-server.js';
import type { ResourceStatus } from './status.js';
import { StateError } from '../util/errors.js';

/** One resource as the daemon drives it. */
export interface ResourceRuntime {
  readonly name: string;
  status(): ResourceStatus;
  /** The current state as `exists` events. */
  snapshot(): TandemEvent[];
  /** Runs one control operation (up, down, primary, ...) on this resource. */
  run(req: ControlRequest): Promise<unknown>;
  /** Graceful stop: fail or finish I/O in flight, flush, write metadata, close connections. */
  shutdown(): Promise<void>;
  /** The configuration in effect (`tandem show`, like drbdsetup show). */
  show?(): unknown;
}

export type EventSink = (e: TandemEvent) => void;

/** Runs `adjust` for the node: it may add resources, so it is the node's, not a resource's. */
export type AdjustHandler = (req: ControlRequest) => Promise<unknown>;

export class Daemon implements ControlHandler {
  private readonly listeners = new Set<EventSink>();
  private readonly resources = new Map<string, ResourceRuntime>();
  private stopping: Promise<void> | undefined;
  private adjuster: AdjustHandler | undefined;

  constructor(private readonly onShutdownRequest: () => void) {}

  /** The sink each resource emits its events into. */
  readonly emit: EventSink = (e) => {
    for (const l of this.listeners) l(e);
  };

  add(r: ResourceRuntime): void {
    this.resources.set(r.name, r);
  }

  setAdjuster(a: AdjustHandler): void {
    this.adjuster = a;
  }

  async handle(req: ControlRequest): Promise<unknown> {
    if (req.op === 'shutdown') {
      this.onShutdownRequest();
      return null;
    }
    if (req.op === 'adjust') {
      if (this.adjuster === undefined) throw new StateError('adjust: not available on this daemon');
      return this.adjuster(req);
    }
    if (req.op === 'show') {
      return this.select(req.resource ?? 'all').map((r) => r.show?.() ?? { name: r.name });
    }
    if (req.op === 'status') {
      return this.select(req.resource ?? 'all').map((r) => r.status());
    }
    if (req.resource === undefined) throw new StateError(`${req.op}: name a resource or "all"`);
    const results: unknown[] = [];
    // One after the other, like drbdadm does for "all": errors name the resource they are about.
    for (const r of this.select(req.resource)) results.push(await r.run(req));
    return results.length === 1 ? results[0] : results;
  }

  snapshot(): TandemEvent[] {
    return [...this.resources.values()].flatMap((r) => r.snapshot());
  }

  subscribe(listener: EventSink): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  shutdown(): Promise<void> {
    this.stopping ??= Promise.allSettled(
      [...this.resources.values()].map((r) => r.shutdown()),
    ).then(() => undefined);
    return this.stopping;
  }

  private select(name: string): ResourceRuntime[] {
    if (name === 'all') return [...this.resources.values()];
    const r = this.resources.get(name);
    if (r === undefined) {
      const known = [...this.resources.keys()].join(', ') || 'none';
      throw new StateError(`${name}: no such resource on this node (configured here: ${known})`);
    }
    return [r];
  }
}
