// Builds bench/native/fabric_bw.c (gcc, -lfabric) into bench/native/build/ (gitignored) on demand:
// only when the binary is missing or older than its source. The binary appears by rename, so two
// processes building at once never run a half-written file. `node dist/bench/native/build.js`
// builds it by hand.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** libfabric's main header; Debian's libfabric-dev ships it. */
export const FABRIC_HEADER = process.env['TANDEM_FABRIC_HEADER'] ?? '/usr/include/rdma/fabric.h';

export type BuildResult =
  { ok: true; binary: string; built: boolean } | { ok: false; error: string };

/** The repository root: the first ancestor of this file that holds bench/native/fabric_bw.c. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'bench', 'native', 'fabric_bw.c'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('bench/native/fabric_bw.c not found above ' + import.meta.url);
    dir = up;
  }
}

export function fabricBwPaths(): { source: string; binary: string } {
  const native = join(repoRoot(), 'bench', 'native');
  return { source: join(native, 'fabric_bw.c'), binary: join(native, 'build', 'fabric_bw') };
}

function haveCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Returns the fabric_bw binary, compiling it first when it is missing or stale. */
export function buildFabricBw(): BuildResult {
  const { source, binary } = fabricBwPaths();
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(source).mtimeMs)
    return { ok: true, binary, built: false };
  if (!haveCommand('gcc')) return { ok: false, error: 'gcc not found: apt-get install gcc' };
  if (!existsSync(FABRIC_HEADER))
    return { ok: false, error: `no ${FABRIC_HEADER}: apt-get install libfabric-dev` };
  mkdirSync(dirname(binary), { recursive: true });
  const tmp = `${binary}.${process.pid}.tmp`;
  try {
    execFileSync(
      'gcc',
      ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-Werror', '-o', tmp, source, '-lfabric'],
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 },
    );
    renameSync(tmp, binary);
  } catch (e) {
    rmSync(tmp, { force: true });
    const err = e as { stderr?: Buffer; message: string };
    const detail = err.stderr?.toString().trim() || err.message;
    return { ok: false, error: `gcc ${source} -lfabric failed: ${detail}` };
  }
  return { ok: true, binary, built: true };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = buildFabricBw();
  if (r.ok) console.log(`fabric_bw: ${r.built ? 'built' : 'up to date'}: ${r.binary}`);
  else {
    console.error(`fabric_bw: ${r.error}`);
    process.exitCode = 1;
  }
}
