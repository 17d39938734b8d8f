// The systemd units in contrib/systemd: `systemd-analyze verify` accepts them (with ExecStart
// pointing at this build, since verify checks that the commands exist), they are hardened, and
// their command lines, expanded as systemd expands them, really run a resource's life: the
// start waits for tandemd's control socket, adjust brings the resource up, reload adjusts, stop
// takes it down, SIGTERM stops the daemon cleanly. Pins a unit whose shell line loses its `$`
// to systemd's own expansion, or that names a command Tandem does not have.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_JS, DAEMON_JS, LocalCluster } from '../../src/cli/local-cluster.js';
import type { ResourceStatus } from '../../src/daemon/status.js';
import { peerEnv, requirePeers } from '../support/peers.js';

const UNITS_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../contrib/systemd');
const UNITS = ['tandemd.service', 'tandem@.service'] as const;
/** Where the shipped units expect the commands (`npm install -g` on Debian). */
const BIN_DIR = '/usr/local/bin/';

interface Run {
  readonly code: number | null;
  readonly out: string;
}

function run(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { ...opts, env: opts.env ?? peerEnv() }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/** A temp dir with the units, their commands pointing at wrappers that run this build. */
async function installUnits(): Promise<{ dir: string; units: Map<string, string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-systemd-'));
  for (const [name, js] of [
    ['tandem', CLI_JS],
    ['tandemd', DAEMON_JS],
  ] as const) {
    const p = join(dir, name);
    await writeFile(
      p,
      `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(js)} "$@"\n`,
    );
    await chmod(p, 0o755);
  }
  const units = new Map<string, string>();
  for (const u of UNITS) {
    const text = await readFile(join(UNITS_DIR, u), 'utf8');
    assert.ok(text.includes(`${BIN_DIR}tandem`), `${u} names its commands under ${BIN_DIR}`);
    const local = text.replaceAll(BIN_DIR, `${dir}/`);
    units.set(u, local);
    await writeFile(join(dir, u), local);
  }
  return { dir, units };
}

/** `systemd-analyze verify` in `dir`: any output at all (an unknown key is only a warning) fails. */
function verify(dir: string, ...units: string[]): Promise<Run> {
  return run('systemd-analyze', ['verify', '--man=no', ...units.map((u) => `./${u}`)], {
    cwd: dir,
  });
}

test('systemd-analyze verify accepts tandemd.service and tandem@.service; they are hardened', async (t) => {
  if (!requirePeers(t, 'systemd', 'systemd-analyze')) return;
  const { dir, units } = await installUnits();
  try {
    const ok = await verify(dir, 'tandemd.service', 'tandem@r0.service');
    assert.equal(ok.code, 0, ok.out);
    assert.equal(ok.out.trim(), '', ok.out);
    // The check can fail: a misspelt key and a missing command are both reported.
    await writeFile(
      join(dir, 'broken.service'),
      units
        .get('tandemd.service')!
        .replace('NoNewPrivileges=', 'NoNewPrivilege=')
        .replace(`${dir}/tandemd`, `${dir}/nonexistent`),
    );
    const broken = await verify(dir, 'broken.service');
    assert.match(broken.out, /Unknown key 'NoNewPrivilege'/);
    assert.match(broken.out, /nonexistent is not executable/);
    assert.notEqual(broken.code, 0);

    for (const [u, text] of units) {
      for (const line of [
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
        'PrivateTmp=yes',
        'ProtectHome=yes',
      ])
        assert.ok(text.includes(`\n${line}\n`), `${u} has ${line}`);
    }
    const daemon = units.get('tandemd.service')!;
    assert.match(daemon, /\nExecReload=\S+\/tandem .*adjust all\n/);
    assert.match(units.get('tandem@.service')!, /\nExecReload=\S+\/tandem .*adjust %I\n/);
    const sec = await run('systemd-analyze', [
      'security',
      '--offline=true',
      '--no-pager',
      join(dir, 'tandemd.service'),
    ]);
    const level = /Overall exposure level for tandemd\.service: ([\d.]+)/.exec(sec.out);
    assert.ok(level !== null, sec.out);
    // systemd's scale: 10 is unprotected; a root daemon opening block devices lands near 4.
    assert.ok(Number(level[1]) < 5, `exposure ${level[1]}:\n${sec.out}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** The Exec*= lines of a unit, by key, in order. */
function execLines(unit: string, key: string): string[] {
  return unit
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

/**
 * An Exec line as systemd turns it into argv: words split on blanks with '…' and "…" quoting,
 * %I/%i and %% specifiers, `$$` a literal dollar, `${VAR}` in place, and an unquoted `$VAR`
 * word split into words (systemd.service(5), "Command lines").
 */
function systemdArgv(
  line: string,
  env: Readonly<Record<string, string>>,
  instance: string,
): string[] {
  const words: { text: string; quoted: boolean }[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === ' ') i++;
    if (i >= line.length) break;
    let text = '';
    let quoted = false;
    while (i < line.length && line[i] !== ' ') {
      const q = line[i];
      if (q === "'" || q === '"') {
        const end = line.indexOf(q, i + 1);
        assert.ok(end > i, `unterminated quote in ${line}`);
        text += line.slice(i + 1, end);
        quoted = true;
        i = end + 1;
      } else {
        text += q;
        i++;
      }
    }
    words.push({ text, quoted });
  }
  const DOLLAR = '\u0000';
  return words.flatMap(({ text, quoted }) => {
    let w = text
      .replaceAll('%%', '\u0001')
      .replaceAll('%I', instance)
      .replaceAll('%i', instance)
      .replaceAll('\u0001', '%');
    w = w.replaceAll('$$', DOLLAR);
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(w);
    if (whole !== null && !quoted)
      return (env[whole[1]!] ?? '').split(/\s+/).filter((x) => x !== '');
    w = w.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
      (_m, a?: string, b?: string) => env[a ?? b ?? ''] ?? '',
    );
    return [w.replaceAll(DOLLAR, '$')];
  });
}

test("the units' command lines run a resource: wait for tandemd, adjust up, reload, down, SIGTERM", async () => {
  const { dir, units } = await installUnits();
  const c = await LocalCluster.create({ nodes: ['alice', 'bob'], diskBytes: 16 * 1024 * 1024 });
  const daemonUnit = units.get('tandemd.service')!;
  const resUnit = units.get('tandem@.service')!;
  // What /etc/default/tandem would hold on alice; the units' own Environment= gives TANDEM_CONFIG.
  const env: Record<string, string> = {
    TANDEM_CONFIG: c.configPath,
    TANDEM_NODE: 'alice',
    TANDEM_CONTROL: c.node('alice').controlPath,
    TANDEMD_OPTS: '--log-level info',
  };
  const procEnv = { ...peerEnv(), ...env };
  const exec = async (line: string): Promise<Run> => {
    const [cmd, ...args] = systemdArgv(line, env, c.resource);
    return run(cmd!, args, { env: procEnv });
  };
  const status = async (): Promise<ResourceStatus> => {
    const r = await run(process.execPath, [CLI_JS, 'status', c.resource, '--json'], {
      env: procEnv,
    });
    assert.equal(r.code, 0, r.out);
    return (JSON.parse(r.out) as ResourceStatus[])[0]!;
  };
  let daemon: ReturnType<typeof spawn> | null = null;
  try {
    await c.tandem('alice', 'create-md', c.resource);
    // ExecStartPre first, as at boot when tandemd is still starting: it must wait for it.
    const [pre] = execLines(resUnit, 'ExecStartPre');
    const waiting = exec(pre!);
    const [start] = execLines(daemonUnit, 'ExecStart');
    const [cmd, ...args] = systemdArgv(start!, env, '');
    assert.ok(args.includes('--log-level'), `TANDEMD_OPTS reaches tandemd: ${args.join(' ')}`);
    daemon = spawn(cmd!, args, { env: procEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    daemon.stderr?.on('data', (b: Buffer) => (log += b.toString()));
    const waited = await waiting;
    assert.equal(waited.code, 0, `ExecStartPre: ${waited.out}\n${log}`);

    for (const line of execLines(resUnit, 'ExecStart')) {
      const r = await exec(line);
      assert.equal(r.code, 0, `ExecStart ${line}: ${r.out}\n${log}`);
    }
    assert.equal((await status()).up, true);
    for (const line of [
      ...execLines(resUnit, 'ExecReload'),
      ...execLines(daemonUnit, 'ExecReload'),
    ]) {
      const r = await exec(line);
      assert.equal(r.code, 0, `ExecReload ${line}: ${r.out}\n${log}`);
    }
    assert.equal((await status()).up, true);
    for (const line of execLines(resUnit, 'ExecStop')) {
      const r = await exec(line);
      assert.equal(r.code, 0, `ExecStop ${line}: ${r.out}\n${log}`);
    }
    assert.equal((await status()).up, false);
    const d = daemon;
    const exited = new Promise<number | null>((r) => d.once('exit', (code) => r(code)));
    d.kill('SIGTERM');
    assert.equal(await exited, 0, log);
    daemon = null;
  } finally {
    if (daemon !== null && daemon.exitCode === null) daemon.kill('SIGKILL');
    await c.destroy();
    await rm(dir, { recursive: true, force: true });
  }
});
