// bench:live-invariants — what the driver's check after every engine step costs
// (brokenInvariant: the engine's cheap invariants, src/replication/engine.ts), on the state of a
// Primary with one peer established and, for the worst case, 31 peers (DRBD's maximum). A few
// seconds; nothing here asserts speed.
// `node dist/bench/live-invariants.js [calls]`
import { brokenInvariant, createEngine, type EngineState } from '../src/replication/engine.js';
import type { BootState, EngineConfig } from '../src/replication/types.js';

const calls = Number(process.argv[2] ?? 5_000_000);

function primaryWith(peers: number): EngineState {
  const ids = Array.from({ length: peers }, (_, i) => i + 2);
  const cfg: EngineConfig = {
    nodeId: 1,
    nodeName: 'n1',
    sizeBytes: 1 << 30,
    peers: ids.map((id) => ({ nodeId: id, name: `n${id}` })),
    protocol: 'C',
    allowTwoPrimaries: false,
    afterSb0Pri: 'disconnect',
    afterSb1Pri: 'disconnect',
    afterSb2Pri: 'disconnect',
    maxEpochSize: 2048,
    alExtents: 1237,
    onIoError: 'detach',
    resync: {
      resyncRateBytesPerSec: 250 * 1024,
      cPlanAheadTenths: 20,
      cFillTargetBytes: 100 * 1024 * 1024,
      cMaxRateBytesPerSec: 100 * 1024 * 1024,
      cMinRateBytesPerSec: 250 * 1024,
      cDelayTargetTenths: 10,
    },
    csums: false,
    verify: false,
    digest: () => new Uint8Array(4),
    uuidSeed: 1,
  };
  const boot: BootState = {
    meta: {
      currentUuid: 0x5eedn << 1n,
      bitmapUuids: Object.fromEntries(ids.map((id) => [id, 0n])),
      historyUuids: [],
      flags: { consistent: true, wasUpToDate: true, crashedPrimary: false },
    },
    bitmaps: {},
    alExtents: [],
  };
  const s = createEngine(cfg, boot).state;
  s.role = 'Primary';
  for (const p of s.peers.values()) {
    p.conn = 'Connected';
    p.settled = true;
    p.repl = 'Established';
    p.disk = 'UpToDate';
    p.role = 'Secondary';
  }
  for (let e = 0; e < 64; e++) s.al.add(e);
  if (brokenInvariant(s) !== null) throw new Error('the benchmark state breaks an invariant');
  return s;
}

function run(s: EngineState, n: number): number {
  let broken = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) if (brokenInvariant(s) !== null) broken++;
  const dt = performance.now() - t0;
  if (broken !== 0) throw new Error('unreachable');
  return dt;
}

for (const peers of [1, 31]) {
  const s = primaryWith(peers);
  run(s, calls / 10);
  const best = Math.min(run(s, calls), run(s, calls), run(s, calls));
  console.log(
    `live invariants, ${peers} peer${peers > 1 ? 's' : ''}: ${((best * 1e6) / calls).toFixed(1)} ns per step`,
  );
}
