#!/usr/bin/env node
// Builds the fabric transport's addon (native/) on `npm install`/`npm ci` when libfabric's
// headers are present. It never fails the install: without libfabric-dev the fabric transport
// is simply unavailable, and selecting it says what to install.
import { existsSync } from 'node:fs';
import { spawnSync, execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const header = process.env.TANDEM_FABRIC_HEADER ?? '/usr/include/rdma/fabric.h';

function say(msg) {
  process.stdout.write(`build-native: ${msg}\n`);
}

function nodeGyp() {
  const candidates = [];
  if (process.env.npm_execpath) {
    candidates.push(
      join(
        dirname(process.env.npm_execpath),
        '..',
        'node_modules',
        'node-gyp',
        'bin',
        'node-gyp.js',
      ),
    );
  }
  try {
    const g = execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim();
    candidates.push(join(g, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  } catch {
    // npm not on PATH: only the npm_execpath candidate remains
  }
  return candidates.find((p) => existsSync(p));
}

function main() {
  if (process.env.TANDEM_SKIP_NATIVE === '1') return say('skipped (TANDEM_SKIP_NATIVE=1)');
  if (!existsSync(header)) {
    return say(`fabric transport unavailable: install libfabric-dev (no ${header})`);
  }
  const gyp = nodeGyp();
  if (gyp === undefined)
    return say("fabric transport unavailable: npm's bundled node-gyp not found");
  const args = [gyp, 'rebuild'];
  // Debian's nodejs ships its headers in /usr/include/node: build offline against them.
  if (existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
  const r = spawnSync(process.execPath, args, { cwd: join(root, 'native'), stdio: 'inherit' });
  if (r.status !== 0) {
    return say(
      'fabric transport unavailable: building native/ failed (see above; needs g++, make, python3)',
    );
  }
  say('fabric addon built: native/build/Release/tandem_fabric.node');
}

main();
