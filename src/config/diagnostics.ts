// Located diagnostics: formatting, the error that carries them all, and did-you-mean.
import { ConfigError } from '../util/errors.js';
import type { ConfigDiagnostic } from './types.js';

export function formatDiagnostic(d: ConfigDiagnostic): string {
  const { file, line, column } = d.location;
  let s = `${file}:${line}:${column}: ${d.severity}: ${d.message}`;
  if (d.expected !== undefined) s += ` (expected ${d.expected})`;
  if (d.suggestion !== undefined) s += `; did you mean '${d.suggestion}'?`;
  return s;
}

/** The configuration has errors: the message lists every one, `diagnostics` holds them. */
export class ConfigFileError extends ConfigError {
  constructor(readonly diagnostics: readonly ConfigDiagnostic[]) {
    const errors = sortDiagnostics(diagnostics.filter((d) => d.severity === 'error'));
    super(
      `${errors.length} error${errors.length === 1 ? '' : 's'} in the configuration:\n` +
        errors.map(formatDiagnostic).join('\n'),
    );
  }
}

/** By file (in order of first appearance), then line and column: the order a user reads. */
export function sortDiagnostics(ds: readonly ConfigDiagnostic[]): ConfigDiagnostic[] {
  const fileOrder = new Map<string, number>();
  for (const d of ds)
    if (!fileOrder.has(d.location.file)) fileOrder.set(d.location.file, fileOrder.size);
  return [...ds].sort(
    (a, b) =>
      (fileOrder.get(a.location.file) ?? 0) - (fileOrder.get(b.location.file) ?? 0) ||
      a.location.line - b.location.line ||
      a.location.column - b.location.column,
  );
}

/** Levenshtein distance, bounded: stops counting past `limit`. */
export function editDistance(a: string, b: string, limit = 3): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const v = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
      cur.push(v);
      rowMin = Math.min(rowMin, v);
    }
    if (rowMin > limit) return limit + 1;
    prev = cur;
  }
  return prev[b.length] ?? limit + 1;
}

/** The closest candidate to a misspelt word, if one is close enough to be a likely typo. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const limit = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  let best: string | undefined;
  let bestD = limit + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase(), limit);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  if (best === undefined) {
    // A prefix or a dropped dash (`pingtimeout`) is a typo too.
    best = candidates.find((c) => c.replace(/-/g, '') === word.replace(/-/g, '').toLowerCase());
  }
  return best;
}
