import { appendFileSync, existsSync, readFileSync } from "node:fs";

declare module "vitest" {
  export interface ProvidedContext {
    faultRowsFile: string;
  }
}

/** One line of the summary table: a fault, its trials, the checker's verdict and the timings. */
export interface FaultRow {
  fault: string;
  trials: number;
  checkerOk: boolean;
  violations: number;
  /** What the checker went through: etcd revisions replayed and leader actions in the histories. */
  revisions: number;
  leaderActions: number;
  /** Trials in which the primary key moved to another node. */
  primaryChanged: number;
  /** Per trial with a new primary: fault injected → new primary key seen by the observer. */
  failoverMs: number[];
  /** Per primary change: primary key deleted → new primary key put (etcd revisions, observer time). */
  gapMs: number[];
  note?: string;
}

/** Nearest-rank percentile of `values`; undefined when empty. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

function spread(values: readonly number[]): string {
  if (values.length === 0) return "—";
  const [p50, p99, max] = [50, 99, 100].map((p) => Math.round(percentile(values, p) ?? 0));
  return `${p50} / ${p99} / ${max}`;
}

export function appendRow(file: string, row: FaultRow): void {
  appendFileSync(file, `${JSON.stringify(row)}\n`);
}

export function readRows(file: string): FaultRow[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as FaultRow);
}

/** The rows as a plain-text table, with a legend. */
export function formatSummary(rows: readonly FaultRow[], runtimeMs: number): string {
  const header = [
    "fault",
    "trials",
    "checker",
    "revs/actions",
    "primary moved",
    "failover p50/p99/max ms",
    "key gap p50/p99/max ms",
    "note",
  ];
  const body = rows.map((r) => [
    r.fault,
    String(r.trials),
    r.checkerOk ? "ok" : `FAIL (${r.violations})`,
    `${r.revisions}/${r.leaderActions}`,
    `${r.primaryChanged}/${r.trials}`,
    spread(r.failoverMs),
    spread(r.gapMs),
    r.note ?? "",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i]?.length ?? 0)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 1 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [
    `Fault summary (lease TTL 2 s, 3-member etcd, one grouping unless noted), total ${(runtimeMs / 1000).toFixed(0)} s`,
    line(header),
    line(widths.map((w) => "-".repeat(w))),
    ...body.map(line),
    "revs/actions: etcd revisions the checker replayed / leader actions in the node histories it checked.",
    "failover: fault injected -> new primary key seen by the observer (trials where the primary moved).",
    "key gap: primary key deleted -> next primary key put, observer receive times (etcd revisions).",
  ].join("\n");
}
