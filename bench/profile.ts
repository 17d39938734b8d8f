#!/usr/bin/env node
// Summarizes V8 .cpuprofile files (from `npm run bench -- --cpu-prof DIR`): self time per
// function and per source file, busiest first, as markdown. Self time is the sum of the sample
// intervals attributed to a function; "(idle)" is time the event loop waited for work.
// Usage: node dist/bench/profile.js FILE.cpuprofile [TOP_N]
import { readFileSync } from 'node:fs';
import { err, ok, type Result } from '../src/util/result.js';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

export interface ProfileRow {
  readonly name: string;
  readonly selfMs: number;
  readonly percent: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly functions: readonly ProfileRow[];
  readonly files: readonly ProfileRow[];
}

function shortUrl(url: string): string {
  if (url === '') return '(native)';
  const i = url.lastIndexOf('/dist/');
  return i >= 0 ? url.slice(i + 6) : url.replace(/^file:\/\//, '');
}

function rows(m: Map<string, number>, totalUs: number, top: number): ProfileRow[] {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({
      name,
      selfMs: us / 1000,
      percent: totalUs > 0 ? (100 * us) / totalUs : 0,
    }));
}

/** Self time per function and per file; an error for a document that is not a CPU profile. */
export function summarizeCpuProfile(doc: unknown, top: number): Result<ProfileSummary, string> {
  const d = doc as { nodes?: unknown; samples?: unknown; timeDeltas?: unknown };
  if (
    typeof d !== 'object' ||
    d === null ||
    !Array.isArray(d.nodes) ||
    !Array.isArray(d.samples) ||
    !Array.isArray(d.timeDeltas) ||
    d.samples.length !== d.timeDeltas.length
  )
    return err('not a V8 CPU profile (nodes, samples, timeDeltas)');
  const frames = new Map<number, CallFrame>();
  for (const n of d.nodes as { id?: unknown; callFrame?: Partial<CallFrame> }[]) {
    if (typeof n.id !== 'number' || typeof n.callFrame !== 'object')
      return err('profile node without id/callFrame');
    frames.set(n.id, {
      functionName: n.callFrame.functionName ?? '',
      url: n.callFrame.url ?? '',
      lineNumber: n.callFrame.lineNumber ?? -1,
    });
  }
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let totalUs = 0;
  const samples = d.samples as unknown[];
  const deltas = d.timeDeltas as unknown[];
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i] is the time before sample i; attributing it to sample i is V8's own reading.
    const us = Math.max(0, Number(deltas[i]));
    const f = frames.get(Number(samples[i]));
    if (f === undefined || !Number.isFinite(us)) continue;
    totalUs += us;
    const file = shortUrl(f.url);
    const fn =
      `${f.functionName || '(anonymous)'} ${f.url === '' ? '' : `${file}:${f.lineNumber + 1}`}`.trim();
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  }
  return ok({
    totalMs: totalUs / 1000,
    functions: rows(byFunction, totalUs, top),
    files: rows(byFile, totalUs, top),
  });
}

export function renderProfileSummary(name: string, s: ProfileSummary): string {
  const table = (title: string, rs: readonly ProfileRow[]): string[] => [
    `| ${title} | self ms | % |`,
    '|---|---|---|',
    ...rs.map((r) => `| \`${r.name}\` | ${r.selfMs.toFixed(1)} | ${r.percent.toFixed(1)} |`),
  ];
  return [
    `### ${name} (${(s.totalMs / 1000).toFixed(2)} s sampled)`,
    '',
    ...table('function', s.functions),
    '',
    ...table('file', s.files),
    '',
  ].join('\n');
}

if (
  process.argv[1] !== undefined &&
  import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\u0000')
) {
  const [file, topText] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: profile FILE.cpuprofile [TOP_N]\n');
    process.exit(2);
  }
  const r = summarizeCpuProfile(
    JSON.parse(readFileSync(file, 'utf8')) as unknown,
    Number(topText ?? 25),
  );
  if (!r.ok) {
    process.stderr.write(`${file}: ${r.error}\n`);
    process.exit(1);
  }
  process.stdout.write(renderProfileSummary(file, r.value));
}
