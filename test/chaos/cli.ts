// `npm run chaos -- --cycles N --seed S [--faults a,b,...] [--on-io-error pass_on]`: the real-process fault harness
// (harness.ts). Needs root (network namespaces, tmpfs mounts). Exit status: 0 when nothing was
// lost, nothing diverged and nothing got stuck; 1 otherwise; 2 on bad arguments.
import { randomInt } from 'node:crypto';
import { Chaos, ChaosWorld, FAULTS, type Fault } from './harness.js';

function usage(why: string): never {
  console.error(`chaos: ${why}`);
  console.error(
    `usage: chaos [--cycles N] [--seed S] [--faults ${FAULTS.join(',')}] [--plant lost|divergent] [--on-io-error detach|pass_on]`,
  );
  process.exit(2);
}

interface Opts {
  cycles: number;
  seed: number;
  faults: Fault[];
  plant?: 'lost' | 'divergent';
  onIoError?: 'detach' | 'pass_on';
}

function parse(argv: readonly string[]): Opts {
  let plant: Opts['plant'];
  let onIoError: Opts['onIoError'];
  let cycles = 10;
  let seed = randomInt(1, 2 ** 31);
  let faults: Fault[] = [...FAULTS];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    const int = (name: string): number => {
      if (v === undefined || !/^\d+$/.test(v)) usage(`${name} wants a non-negative integer`);
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n > 0xffff_ffff) usage(`${name} ${v} is out of range`);
      i++;
      return n;
    };
    if (a === '--cycles') cycles = int('--cycles');
    else if (a === '--seed') seed = int('--seed');
    else if (a === '--faults') {
      if (v === undefined) usage('--faults wants a comma-separated list');
      faults = v.split(',').map((f) => {
        if (!(FAULTS as readonly string[]).includes(f)) usage(`unknown fault ${f}`);
        return f as Fault;
      });
      i++;
    } else if (a === '--plant') {
      if (v !== 'lost' && v !== 'divergent') usage('--plant wants lost or divergent');
      plant = v;
      i++;
    } else if (a === '--on-io-error') {
      if (v !== 'detach' && v !== 'pass_on') usage('--on-io-error wants detach or pass_on');
      onIoError = v;
      i++;
    } else usage(`unknown argument ${a}`);
  }
  if (cycles < 1) usage('--cycles must be at least 1');
  return {
    cycles,
    seed,
    faults,
    ...(plant === undefined ? {} : { plant }),
    ...(onIoError === undefined ? {} : { onIoError }),
  };
}

const opts = parse(process.argv.slice(2));
if (process.getuid?.() !== 0) {
  console.error('chaos: needs root (network namespaces, tmpfs mounts)');
  process.exit(1);
}

const world = new ChaosWorld();
process.on('exit', () => world.cleanup());
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    console.error(`chaos: ${sig}, cleaning up (seed ${opts.seed})`);
    world.cleanup();
    process.exit(130);
  });
}

const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

try {
  const s = await new Chaos({ ...opts, print }, world).run();
  print(
    `chaos summary: seed ${opts.seed}; cycles ${s.cycles}/${opts.cycles}; acked writes ${s.ackedWrites}; ` +
      `acked blocks checked ${s.checked}; lost ${s.lost}; divergent ${s.divergent}; ` +
      `stuck ${s.stuck}; failed writes ${s.failedWrites}; ${(s.durationMs / 1000).toFixed(0)} s`,
  );
  for (const d of s.details) print(`  ${d}`);
  process.exitCode = s.lost > 0 || s.divergent > 0 || s.stuck > 0 ? 1 : 0;
} catch (e) {
  console.error(`chaos: failed (seed ${opts.seed}):`, e);
  console.error(world.logs());
  process.exitCode = 1;
} finally {
  world.cleanup();
}
