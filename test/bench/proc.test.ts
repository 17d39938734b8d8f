// CPU and peak-RSS accounting from /proc: the parsers against tricky real-format lines, the tree
// walk against a fake /proc, and the whole thing against real processes this test spawns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  clockTicksPerSec,
  cpuSecondsBetween,
  cpuTicksByPid,
  descendants,
  measureProcesses,
  parseProcStat,
  parseVmHwmBytes,
  parseVmRssBytes,
  peakRssBytes,
  realProcFs,
  resetPeakRss,
  type ProcFs,
} from '../../bench/proc.js';

const statLine = (
  pid: number,
  comm: string,
  ppid: number,
  u: number,
  s: number,
  cu: number,
  cs: number,
) =>
  `${pid} (${comm}) S ${ppid} ${pid} ${pid} 0 -1 4194560 1000 0 0 0 ${u} ${s} ${cu} ${cs} 20 0 4 0 100 123456 789 18446744073709551615\n`;

test('parseProcStat finds fields after a comm with spaces and parentheses', () => {
  const st = parseProcStat(statLine(4242, 'qemu (x) y', 1, 150, 30, 7, 3));
  assert.deepEqual(st, {
    pid: 4242,
    comm: 'qemu (x) y',
    state: 'S',
    ppid: 1,
    utimeTicks: 150,
    stimeTicks: 30,
    cutimeTicks: 7,
    cstimeTicks: 3,
  });
  assert.equal(parseProcStat(''), null);
  assert.equal(parseProcStat('12 (x) S 1 2'), null);
  assert.equal(parseProcStat('garbage without parens'), null);
});

test('parseVmRssBytes and parseVmHwmBytes read kB and convert to bytes', () => {
  assert.equal(parseVmRssBytes('VmHWM:\t 9 kB\nVmRSS:\t    6000 kB\n'), 6000 * 1024);
  assert.equal(
    parseVmHwmBytes('Name:\tnbdkit\nVmPeak:\t  9000 kB\nVmHWM:\t    6768 kB\nVmRSS:\t 6000 kB\n'),
    6768 * 1024,
  );
  assert.equal(parseVmHwmBytes('Name:\tkthreadd\n'), null);
});

function fakeFs(files: Record<string, string>): ProcFs & { writes: string[] } {
  const writes: string[] = [];
  return {
    writes,
    read: (p) => files[p] ?? null,
    list: (p) => {
      const prefix = p.endsWith('/') ? p : `${p}/`;
      const names = new Set<string>();
      for (const k of Object.keys(files))
        if (k.startsWith(prefix)) names.add(k.slice(prefix.length).split('/')[0] as string);
      return [...names];
    },
    write: (p, t) => {
      writes.push(`${p}=${t}`);
      return p in files || p.endsWith('clear_refs');
    },
  };
}

test('a process tree (children of every thread, recursively) is summed once per process', () => {
  const fs = fakeFs({
    '/proc/10/task/10/children': '11 ',
    '/proc/10/task/12/children': '13 11',
    '/proc/11/task/11/children': '14',
    '/proc/13/task/13/children': '',
    '/proc/14/task/14/children': '',
    '/proc/10/stat': statLine(10, 'd', 1, 100, 50, 5, 5),
    '/proc/11/stat': statLine(11, 'w', 10, 10, 0, 0, 0),
    '/proc/13/stat': statLine(13, 'w', 10, 1, 1, 0, 0),
    '/proc/14/stat': statLine(14, 'g', 11, 3, 0, 0, 0),
    '/proc/10/status': 'VmHWM:\t100 kB\n',
    '/proc/11/status': 'VmHWM:\t20 kB\n',
    '/proc/14/status': 'VmHWM:\t1 kB\n',
  });
  assert.deepEqual(descendants(fs, 10).sort(), [11, 13, 14]);
  const t = cpuTicksByPid(fs, [10]);
  assert.deepEqual(
    [...t.entries()].sort((a, b) => a[0] - b[0]),
    [
      [10, 160],
      [11, 10],
      [13, 2],
      [14, 3],
    ],
  );
  assert.equal(peakRssBytes(fs, [10]), 121 * 1024);
  assert.equal(resetPeakRss(fs, [10]), true);
  assert.deepEqual(fs.writes.sort(), [
    '/proc/10/clear_refs=5',
    '/proc/11/clear_refs=5',
    '/proc/13/clear_refs=5',
    '/proc/14/clear_refs=5',
  ]);
});

test('cpuSecondsBetween: deltas per process, newcomers in full, leavers ignored', () => {
  const before = new Map([
    [1, 100],
    [2, 50],
    [3, 10],
  ]);
  const after = new Map([
    [1, 150],
    [2, 50],
    [4, 25],
  ]);
  assert.equal(cpuSecondsBetween(before, after, 100), 0.75);
});

test('real /proc: CPU of a child and of the grandchild it reaped, and peak RSS', async () => {
  // Each process spins until it has used 300 ms of its own CPU, however busy the machine is;
  // the grandchild exits first and is reaped, so its time must show up through cutime.
  const spin =
    'const u=()=>{const c=process.cpuUsage();return (c.user+c.system)/1000};' +
    'const s=u(); while (u()-s < 300) {}';
  const grand = `process.stdin.once('data',()=>{${spin}; process.exit(0)})`;
  const script =
    `const {spawn}=require('node:child_process');` +
    `const g=spawn(process.execPath,['-e',${JSON.stringify(grand)}],{stdio:['pipe','inherit','inherit']});` +
    `const big=Buffer.alloc(64<<20,1);` +
    `process.stdin.once('data',()=>{g.stdin.write('go\\n'); ${spin};` +
    ` g.on('exit',()=>{console.log('done '+big.length); setInterval(()=>{},1000)})});` +
    `console.log('ready');`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const pid = child.pid;
  assert.ok(pid !== undefined);
  const exited = once(child, 'exit');
  try {
    await once(child.stdout, 'data');
    assert.equal(descendants(realProcFs, pid).length, 1, 'grandchild visible');
    const m = await measureProcesses(
      realProcFs,
      () => [pid],
      async () => {
        const done = once(child.stdout, 'data');
        child.stdin.write('go\n');
        await done;
      },
    );
    assert.ok(m.cpuSeconds >= 0.55, `cpu ${m.cpuSeconds}`);
    assert.ok(m.cpuSeconds <= 2 * m.seconds + 0.05, `cpu ${m.cpuSeconds} wall ${m.seconds}`);
    assert.ok(m.peakRssBytes >= 64 * 2 ** 20, `rss ${m.peakRssBytes}`);
    assert.ok(m.rssSamplesBytes.every((b) => b > 0));
    assert.equal(clockTicksPerSec() > 0, true);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
});
