import { type Area, areaOf } from "./areas.js";
import {
  classifySurvivors,
  type EquivalentEntry,
  type MatchedEquivalent,
  sameMutation,
} from "./equivalents.js";
import type { Mutant, MutantStatus } from "./report.js";

export interface AreaScore {
  readonly area: Area;
  readonly counts: Readonly<Record<MutantStatus, number>>;
  /** Killed + timed out: the mutants some test detected. */
  readonly detected: number;
  /** Detected + survived + not covered: the mutants that ran (or could have). */
  readonly valid: number;
  /** Survivors and uncovered mutants that docs/mutation.md lists as equivalent. */
  readonly equivalent: number;
  /** detected / valid, in percent: Stryker's own score. */
  readonly score: number;
  /** detected / (valid − equivalent), in percent: the score the goal is judged on. */
  readonly scoreWithoutEquivalents: number;
  readonly goalMet: boolean;
}

export interface MutationSummary {
  readonly areas: AreaScore[];
  /** Survived and not explained by a listed equivalent, by file and line. */
  readonly survivors: Mutant[];
  /** Never executed by any test, and not listed as equivalent. */
  readonly noCoverage: Mutant[];
  readonly equivalents: MatchedEquivalent[];
  /** Listed entries whose mutant some test now detects. */
  readonly killedEquivalents: EquivalentEntry[];
  /** Listed entries for a mutated file with no such mutant in this run: the code changed, or a line range was mutated. */
  readonly missingEquivalents: EquivalentEntry[];
  readonly timedOut: number;
}

function emptyCounts(): Record<MutantStatus, number> {
  return {
    Killed: 0,
    Survived: 0,
    NoCoverage: 0,
    CompileError: 0,
    RuntimeError: 0,
    Timeout: 0,
    Ignored: 0,
    Pending: 0,
  };
}

function percent(part: number, whole: number): number {
  return whole === 0 ? 100 : (100 * part) / whole;
}

export function summarize(mutants: readonly Mutant[], entries: readonly EquivalentEntry[]): MutationSummary {
  // A mutant no test executes can be equivalent too (a message in a throw that cannot be reached).
  const undetected = mutants.filter(
    (mutant) => mutant.status === "Survived" || mutant.status === "NoCoverage",
  );
  const classified = classifySurvivors(undetected, entries, new Set(mutants.map((mutant) => mutant.file)));
  const byArea = new Map<string, { area: Area; counts: Record<MutantStatus, number>; equivalent: number }>();
  const entryFor = (mutant: Mutant) => {
    const area = areaOf(mutant.file);
    let entry = byArea.get(area.name);
    if (entry === undefined) {
      entry = { area, counts: emptyCounts(), equivalent: 0 };
      byArea.set(area.name, entry);
    }
    return entry;
  };
  for (const mutant of mutants) entryFor(mutant).counts[mutant.status]++;
  for (const { mutant } of classified.equivalents) entryFor(mutant).equivalent++;
  const areas = [...byArea.values()].map(({ area, counts, equivalent }): AreaScore => {
    const detected = counts.Killed + counts.Timeout;
    const valid = detected + counts.Survived + counts.NoCoverage;
    const scoreWithoutEquivalents = percent(detected, valid - equivalent);
    return {
      area,
      counts,
      detected,
      valid,
      equivalent,
      score: percent(detected, valid),
      scoreWithoutEquivalents,
      goalMet: scoreWithoutEquivalents >= area.goal,
    };
  });
  return {
    areas,
    survivors: classified.survivors.filter((mutant) => mutant.status === "Survived"),
    noCoverage: classified.survivors.filter((mutant) => mutant.status === "NoCoverage"),
    equivalents: classified.equivalents,
    killedEquivalents: classified.unmatched.filter((entry) => mutants.some((m) => sameMutation(m, entry))),
    missingEquivalents: classified.unmatched.filter((entry) => !mutants.some((m) => sameMutation(m, entry))),
    timedOut: mutants.filter((mutant) => mutant.status === "Timeout").length,
  };
}

const MAX_CODE = 70;

function code(text: string): string {
  return text.length > MAX_CODE ? `${text.slice(0, MAX_CODE - 1)}…` : text;
}

export function mutantLine(mutant: Mutant): string {
  const where = `${mutant.file}:${mutant.line}:${mutant.column}`;
  const loaded = mutant.static ? " (static)" : "";
  return `  ${where}  ${mutant.mutator}${loaded}  ${code(mutant.original)}  →  ${code(mutant.replacement)}`;
}

function fixed(value: number): string {
  return value.toFixed(1).padStart(6);
}

/** The summary as text: a table of areas, then every survivor, uncovered mutant and equivalent. */
export function formatSummary(summary: MutationSummary): string {
  const out: string[] = [];
  out.push(
    "Mutation score by area (detected = killed + timed out; valid = detected + survived + no coverage)",
  );
  out.push(
    "  area          mutants  killed  timeout  survived  no-cov  equiv  errors   score  w/o equiv  goal  met",
  );
  for (const a of summary.areas) {
    const total = Object.values(a.counts).reduce((sum, n) => sum + n, 0);
    const errors = a.counts.CompileError + a.counts.RuntimeError;
    out.push(
      `  ${a.area.name.padEnd(12)}  ${String(total).padStart(7)}  ${String(a.counts.Killed).padStart(6)}  ` +
        `${String(a.counts.Timeout).padStart(7)}  ${String(a.counts.Survived).padStart(8)}  ` +
        `${String(a.counts.NoCoverage).padStart(6)}  ${String(a.equivalent).padStart(5)}  ${String(errors).padStart(6)}  ` +
        `${fixed(a.score)}%  ${fixed(a.scoreWithoutEquivalents)}%  ${String(a.area.goal).padStart(3)}%  ${a.goalMet ? "yes" : "NO"}`,
    );
  }
  out.push("");
  out.push(
    `Surviving mutants (${summary.survivors.length}): file:line:column  mutator  original  →  replacement`,
  );
  for (const mutant of summary.survivors) out.push(mutantLine(mutant));
  out.push("");
  out.push(`Mutants no test executes (${summary.noCoverage.length}):`);
  for (const mutant of summary.noCoverage) out.push(mutantLine(mutant));
  out.push("");
  out.push(
    `Surviving or uncovered mutants listed as equivalent in docs/mutation.md (${summary.equivalents.length}; ` +
      "counted as undetected in 'score', left out of 'w/o equiv' only):",
  );
  for (const { mutant, entry } of summary.equivalents) {
    const moved = mutant.line === entry.line ? "" : ` (listed at line ${entry.line})`;
    out.push(`${mutantLine(mutant)}${moved}\n      why: ${entry.reason}`);
  }
  const entryLine = (entry: EquivalentEntry) =>
    `  docs/mutation.md:${entry.docLine}  ${entry.file}:${entry.line}  ${entry.mutator}  ` +
    `${code(entry.original)}  →  ${code(entry.replacement)}`;
  if (summary.killedEquivalents.length > 0) {
    out.push("");
    out.push(
      `Entries in docs/mutation.md whose mutant is detected now (${summary.killedEquivalents.length}): ` +
        "not equivalent after all, remove them",
    );
    for (const entry of summary.killedEquivalents) out.push(entryLine(entry));
  }
  if (summary.missingEquivalents.length > 0) {
    out.push("");
    out.push(
      `Entries in docs/mutation.md for a mutated file with no such mutant in this run ` +
        `(${summary.missingEquivalents.length}): the code changed (update or remove them), or only part of the file was mutated`,
    );
    for (const entry of summary.missingEquivalents) out.push(entryLine(entry));
  }
  out.push("");
  out.push(
    `${summary.timedOut} mutant(s) were detected only by timing out (counted as detected, as Stryker does).`,
  );
  return out.join("\n");
}
