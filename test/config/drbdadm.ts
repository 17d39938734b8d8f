// Runs the real drbdadm (drbd-utils) as an oracle: in a private UTS+network namespace whose
// hostname is a host of the file and whose loopback carries the test addresses, as
// /work/shared/probes/FINDINGS.md §1 describes. Also a tiny XML reader for `drbdadm dump-xml`.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerEnv } from '../support/peers.js';

/** Addresses every namespace gets (documentation ranges only, never the host's own). */
const TEST_ADDRESSES = [
  '127.0.0.2/32',
  '127.0.0.3/32',
  '127.0.0.4/32',
  'fdaa::1/128',
  'fdaa::2/128',
  'fdaa::3/128',
  'fdaa::4/128',
  '203.0.113.1/32',
  '203.0.113.2/32',
  '203.0.113.3/32',
  '198.51.100.1/32',
  '198.51.100.2/32',
  '198.51.100.3/32',
];

export interface DrbdadmResult {
  readonly status: number;
  readonly stdout: string;
  /** stderr without drbdadm's "modinfo" noise (no kernel module on this machine). */
  readonly stderr: string;
}

/** `drbdadm -c FILE ARGS...` as host `hostname` with the test addresses present. */
export function drbdadm(file: string, hostname: string, args: readonly string[]): DrbdadmResult {
  const script = [
    'hostname "$1" && ip link set lo up || exit 99',
    `for a in ${TEST_ADDRESSES.join(' ')}; do ip addr add "$a" dev lo 2>/dev/null; done`,
    'shift; exec drbdadm "$@"',
  ].join('\n');
  const r = spawnSync(
    'unshare',
    ['-u', '-n', 'sh', '-c', script, 'sh', hostname, '-c', file, ...args],
    {
      encoding: 'utf8',
      env: peerEnv(),
      timeout: 20_000,
    },
  );
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: clean(r.stderr ?? '') };
}

export interface DrbdadmJob {
  readonly file: string;
  readonly hostname: string;
  readonly args: readonly string[];
}

/**
 * Many `drbdadm -c FILE ARGS...` runs, in a few namespaces run side by side (one process spawn
 * per namespace, which keeps the parity test fast as the corpus grows): the hostname is set
 * before each run. Results are in the order of `jobs`.
 */
export async function drbdadmBatch(
  jobs: readonly DrbdadmJob[],
  parallel = 3,
): Promise<DrbdadmResult[]> {
  for (const j of jobs) {
    for (const v of [j.hostname, j.file, ...j.args]) {
      if (/\s/.test(v)) throw new Error(`drbdadmBatch: whitespace in '${v}'`);
    }
  }
  const size = Math.max(1, Math.ceil(jobs.length / parallel));
  const chunks: DrbdadmJob[][] = [];
  for (let i = 0; i < jobs.length; i += size) chunks.push(jobs.slice(i, i + size));
  return (await Promise.all(chunks.map((c) => batchInOneNamespace(c)))).flat();
}

async function batchInOneNamespace(jobs: readonly DrbdadmJob[]): Promise<DrbdadmResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-drbdadm-'));
  try {
    const script = [
      'ip link set lo up || exit 99',
      `for a in ${TEST_ADDRESSES.join(' ')}; do ip addr add "$a" dev lo 2>/dev/null; done`,
      'd="$1"; i=0',
      // Each job is three lines of the jobs file: hostname, file, arguments (space-separated).
      'while IFS= read -r h && IFS= read -r f && IFS= read -r a; do',
      '  if hostname "$h" 2>"$d/$i.err"; then',
      '    drbdadm -c "$f" $a >"$d/$i.out" 2>"$d/$i.err"; echo $? >"$d/$i.rc"',
      '  else : >"$d/$i.out"; echo 99 >"$d/$i.rc"; fi',
      '  i=$((i+1))',
      'done <"$d/jobs"',
    ].join('\n');
    writeFileSync(
      join(dir, 'jobs'),
      jobs.map((j) => `${j.hostname}\n${j.file}\n${j.args.join(' ')}\n`).join(''),
    );
    const child = spawn('unshare', ['-u', '-n', 'sh', '-c', script, 'sh', dir], {
      env: peerEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 20_000 + 2_000 * jobs.length,
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    const [code, signal] = (await once(child, 'close')) as [number | null, string | null];
    if (code !== 0) throw new Error(`drbdadm batch failed (${code ?? signal}): ${stderr}`);
    return jobs.map((_, i) => {
      const read = (ext: string): string => readFileSync(join(dir, `${i}.${ext}`), 'utf8');
      return { status: Number(read('rc').trim()), stdout: read('out'), stderr: clean(read('err')) };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function clean(stderr: string): string {
  return stderr
    .split('\n')
    .filter((l) => !/modinfo/.test(l))
    .join('\n')
    .trim();
}

/** Whether this process may create namespaces (root); drbdadm's oracle needs it. */
export function canUnshare(): boolean {
  const r = spawnSync('unshare', ['-u', '-n', 'true'], { env: peerEnv() });
  return r.status === 0;
}

export interface XmlNode {
  readonly name: string;
  readonly attrs: Record<string, string>;
  readonly children: XmlNode[];
  text: string;
}

/** Reads the small, regular XML drbdadm writes (no CDATA, no comments, entities &lt; &gt; &amp; &quot;). */
export function parseXml(xml: string): XmlNode {
  const root: XmlNode = { name: '#root', attrs: {}, children: [], text: '' };
  const stack: XmlNode[] = [root];
  const re = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[\w.-]+="[^"]*")*)\s*(\/?)>|([^<]+)/g;
  for (let m = re.exec(xml); m !== null; m = re.exec(xml)) {
    const top = stack[stack.length - 1] as XmlNode;
    if (m[5] !== undefined) {
      top.text += unescape(m[5]);
      continue;
    }
    if (m[1] === '/') {
      stack.pop();
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of (m[3] ?? '').matchAll(/([\w.-]+)="([^"]*)"/g))
      attrs[a[1] as string] = unescape(a[2] ?? '');
    const node: XmlNode = { name: m[2] as string, attrs, children: [], text: '' };
    top.children.push(node);
    if (m[4] !== '/') stack.push(node);
  }
  return root;
}

function unescape(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&');
}

export function child(n: XmlNode, name: string): XmlNode | undefined {
  return n.children.find((c) => c.name === name);
}

export function kids(n: XmlNode, name: string): XmlNode[] {
  return n.children.filter((c) => c.name === name);
}
