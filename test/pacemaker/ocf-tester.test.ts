// The resource agent against resource-agents' ocf-tester, without a cluster: meta-data valid
// against ra-api-1.dtd, validate-all, probes, start/stop twice, monitor after each, promote and
// demote twice, notify, and a probe with the binaries "missing". One node whose peer never
// answers; its disk is made UpToDate beforehand (primary --force once) so promote is allowed.
// Also: validate-all refuses a resource the configuration does not have, and the agent's
// tandemd is gone after the last stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { peerEnv, requirePeers } from '../support/peers.js';
import { sparseFile, withTempDir } from '../support/tmp.js';
import { AGENT_PATH, REPO_ROOT } from '../support/pacemaker.js';

interface Run {
  readonly code: number;
  readonly output: string;
}

function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(
      cmd,
      args,
      { env: { ...peerEnv(), ...env }, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        done({ code, output: stdout + stderr });
      },
    );
  });
}

test('ocf:tandem:tandem passes ocf-tester', async (t) => {
  if (!requirePeers(t, 'resource-agents', 'ocf-tester')) return;
  if (!requirePeers(t, 'libxml2-utils', 'xmllint')) return;
  await withTempDir('ocf', async (dir) => {
    // ocf-tester runs meta-data as nobody: the agent and its directory must be world-readable.
    await chmod(dir, 0o755);
    const agent = join(dir, 'tandem-agent');
    await copyFile(AGENT_PATH, agent);
    await chmod(agent, 0o755);
    const tandem = join(dir, 'tandem');
    const tandemd = join(dir, 'tandemd');
    for (const [path, main] of [
      [tandem, 'dist/src/cli/main.js'],
      [tandemd, 'dist/src/daemon/main.js'],
    ] as const) {
      await writeFile(path, `#!/bin/sh\nexec ${process.execPath} ${join(REPO_ROOT, main)} "$@"\n`);
      await chmod(path, 0o755);
    }
    const node = `ocf${randomBytes(3).toString('hex')}`;
    const config = join(dir, 'tandem.conf');
    const control = join(dir, 'control.sock');
    await sparseFile(join(dir, 'disk.img'), 64 * 1024 * 1024);
    await writeFile(
      config,
      `resource r0 {
  on ${node} { node-id 0; address 127.0.0.1:1; device "nbd+unix:///r0?socket=${dir}/nbd.sock"; disk ${dir}/disk.img; meta-disk internal; }
  on nowhere { node-id 1; address 127.0.0.1:2; device "nbd+unix:///r0?socket=${dir}/nbd2.sock"; disk ${dir}/other.img; meta-disk internal; }
}
`,
    );
    const cli = (...args: string[]): Promise<Run> =>
      run(tandem, ['--config', config, '--node', node, '--control', control, ...args]);
    const ok = async (...args: string[]): Promise<void> => {
      const r = await cli(...args);
      assert.equal(r.code, 0, `tandem ${args.join(' ')}: ${r.output}`);
    };

    // An UpToDate disk: the lone node's data becomes the generation, as after an initial sync.
    await ok('create-md', 'r0');
    const d = spawn(tandemd, ['--config', config, '--node', node, '--control', control], {
      stdio: 'ignore',
    });
    const exited = new Promise((r) => d.once('exit', r));
    try {
      for (let i = 0; (await cli('status')).code === 3; i++) {
        assert.ok(i < 200, 'tandemd answers on its control socket');
        await new Promise((r) => setTimeout(r, 100));
      }
      await ok('up', 'r0');
      await ok('primary', '--force', 'r0');
      await ok('secondary', 'r0');
    } finally {
      d.kill('SIGTERM');
      await exited;
    }

    const params: [string, string][] = [
      ['resource', 'r0'],
      ['config', config],
      ['node', node],
      ['control', control],
      ['tandem', tandem],
      ['tandemd', tandemd],
      ['log', join(dir, 'tandemd.log')],
    ];
    const args = (res: string): string[] => [
      '-n',
      'tdm',
      ...params.flatMap(([k, v]) => ['-o', `${k}=${k === 'resource' ? res : v}`]),
      agent,
    ];
    const env = { HA_RSCTMP: dir };
    const pidFile = join(dir, `tandemd-${node}.pid`);
    try {
      const r = await run('ocf-tester', args('r0'), env);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /passed all tests/);
      await assert.rejects(readFile(pidFile), 'the last stop ended the tandemd it started');

      // A resource the configuration does not have is a configuration error (6), found by
      // validate-all before anything starts.
      const bad = await run(agent, ['validate-all'], {
        ...env,
        OCF_ROOT: '/usr/lib/ocf',
        ...Object.fromEntries(params.map(([k, v]) => [`OCF_RESKEY_${k}`, v])),
        OCF_RESKEY_resource: 'r9',
      });
      assert.equal(bad.code, 6, bad.output);
    } finally {
      // Whatever failed, no tandemd of this test outlives it.
      const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
});
