/** Summary statistics and plain-text tables for the benchmarks. */

export interface Summary {
  n: number;
  min: number;
  mean: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * Nearest-rank percentile of ascending `sorted` samples: the smallest sample such that at least
 * `p` percent of the samples are <= it (rank `ceil(p/100 * n)`, at least 1). NaN when empty.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = Math.min(n, Math.max(1, Math.ceil((p / 100) * n)));
  return sorted[rank - 1] as number;
}

/** n, min, mean, nearest-rank p50 and p99, and max of `samples`; NaN fields when there are none. */
export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  return {
    n,
    min: n === 0 ? Number.NaN : (sorted[0] as number),
    mean: n === 0 ? Number.NaN : sorted.reduce((sum, x) => sum + x, 0) / n,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: n === 0 ? Number.NaN : (sorted[n - 1] as number),
  };
}

/** `ours / baseline`, NaN when either is missing or the baseline is 0. */
export function ratio(ours: number, baseline: number): number {
  return Number.isFinite(ours) && Number.isFinite(baseline) && baseline !== 0 ? ours / baseline : Number.NaN;
}

/** Milliseconds with one decimal, or "—" for NaN. */
export function fmtMs(ms: number): string {
  return Number.isFinite(ms) ? ms.toFixed(1) : "—";
}

/** A ratio with two decimals and an "x", or "—" for NaN. */
export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}x` : "—";
}

/** Rounds to 0.1 ms for JSON output; NaN becomes null. */
export function roundMs(ms: number): number | null {
  return Number.isFinite(ms) ? Math.round(ms * 10) / 10 : null;
}

/**
 * Plain aligned text with a dashed rule under the header. Columns are right-aligned unless
 * `leftAligned` names them (by index); the first column is always left-aligned.
 */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  leftAligned: readonly number[] = [],
): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const left = new Set([0, ...leftAligned]);
  const line = (cells: readonly string[]) =>
    widths
      .map((w, c) => {
        const cell = cells[c] ?? "";
        return left.has(c) ? cell.padEnd(w) : cell.padStart(w);
      })
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}
