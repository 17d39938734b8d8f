// Carries out `tandem adjust` on a running node: reads the configuration file again, plans the
// differences (adjust.ts) and applies them: new listen addresses, live options, reconnects,
// new resources brought up. With dryRun it only says what it would do.
import { formatDiagnostic, loadConfig, resourcesForNode, type TlsFiles } from '../config/index.js';
import type { Logger } from '../platform/log.js';
import type { Endpoint } from '../transport/types.js';
import { ConfigError, StateError } from '../util/errors.js';
import { describeStep, planAdjust, type AdjustStep } from './adjust.js';
import type { ControlRequest } from './control-protocol.js';
import type { AdjustHandler } from './daemon.js';
import type { Resource } from './resource.js';
import { endpointKey, planResource, type ResourcePlan } from './resource-config.js';

export interface AdjustContext {
  readonly node: string;
  readonly nodeId: number;
  /** The file tandemd was started with; a request may name another (`tandem --config`). */
  readonly configPath: string;
  readonly log: Logger;
  /** Listens on an endpoint for peers (speaking TLS with `files`), unless the node already does (startNode's). */
  readonly listen: (e: Endpoint, files?: TlsFiles) => Promise<void>;
  /** Stops listening on an endpoint. */
  readonly unlisten: (e: Endpoint) => Promise<void>;
  /** The node's resources by name; adjust adds the new ones. */
  readonly resources: Map<string, Resource>;
  /** Creates a resource and registers it with the daemon (not yet up). */
  readonly create: (plan: ResourcePlan) => Resource;
}

export interface AdjustResult {
  readonly dryRun: boolean;
  readonly configPath: string;
  readonly lines: readonly string[];
}

export function adjuster(ctx: AdjustContext): AdjustHandler {
  // One adjust at a time: two interleaved would each plan from a state the other changes.
  let chain: Promise<unknown> = Promise.resolve();
  return (req) => {
    const run = chain.then(
      () => adjust(ctx, req),
      () => adjust(ctx, req),
    );
    chain = run.catch(() => undefined);
    return run;
  };
}

async function adjust(ctx: AdjustContext, req: ControlRequest): Promise<AdjustResult> {
  const f = req.flags ?? {};
  const configPath = typeof f['config'] === 'string' ? f['config'] : ctx.configPath;
  const dryRun = f['dryRun'] === true;
  const loaded = await loadConfig(configPath);
  for (const w of loaded.warnings) ctx.log.warn({}, formatDiagnostic(w));
  const configured = resourcesForNode(loaded.config, ctx.node).map((r) =>
    planResource(r, ctx.node),
  );
  for (const p of configured) {
    if (p.nodeId !== ctx.nodeId && !ctx.resources.has(p.name)) {
      throw new ConfigError(
        `${p.name}: node-id ${p.nodeId} in ${configPath}, but ${ctx.node} runs as node-id ${ctx.nodeId}; Tandem needs one per node`,
      );
    }
  }
  const only = req.resource ?? 'all';
  if (only !== 'all' && !ctx.resources.has(only) && !configured.some((p) => p.name === only)) {
    throw new StateError(`${only}: not in ${configPath} for ${ctx.node}, and not running here`);
  }
  const running = new Map([...ctx.resources].map(([n, r]) => [n, r.currentPlan]));
  const down = new Set([...ctx.resources].filter(([, r]) => !r.isUp).map(([n]) => n));
  const plan = planAdjust(running, configured, only, down);
  const lines = plan.steps.map((s) => describeStep(s, dryRun));
  if (lines.length === 0) lines.push(`${only === 'all' ? 'all resources' : only}: no changes`);
  if (dryRun) return { dryRun, configPath, lines };

  for (const s of plan.steps) {
    if (s.kind !== 'listen') continue;
    const p = plan.plans.get(s.resource);
    for (const e of p?.listen ?? []) await ctx.listen(e, p?.listenTls[endpointKey(e)]);
  }
  for (const s of plan.steps) {
    if (s.kind !== 'unlisten') continue;
    // Another resource may share the address (one listener serves every resource).
    const used = new Set<string>();
    for (const [name, r] of ctx.resources)
      for (const e of (plan.plans.get(name) ?? r.currentPlan).listen) used.add(endpointKey(e));
    for (const e of running.get(s.resource)?.listen ?? [])
      if (!used.has(endpointKey(e))) await ctx.unlisten(e);
  }
  for (const [name, p] of plan.plans) {
    const r = ctx.resources.get(name);
    if (r === undefined) continue;
    const steps = plan.steps.filter((s): s is AdjustStep => s.resource === name);
    await r.applyAdjust(p, steps);
  }
  for (const s of plan.steps) {
    if (s.kind !== 'up') continue;
    const p = plan.plans.get(s.resource);
    if (p === undefined) continue;
    for (const e of p.listen) await ctx.listen(e, p.listenTls[endpointKey(e)]);
    const r = ctx.resources.get(p.name) ?? ctx.create(p);
    await r.run({ id: req.id, op: 'up', resource: p.name });
  }
  ctx.log.info({ config: configPath, changes: lines }, 'adjusted');
  return { dryRun, configPath, lines };
}
