import { readFileSync } from "node:fs";
import { z } from "zod";

/** Stryker's mutant statuses (mutation-testing-report-schema). */
export const MUTANT_STATUSES = [
  "Killed",
  "Survived",
  "NoCoverage",
  "CompileError",
  "RuntimeError",
  "Timeout",
  "Ignored",
  "Pending",
] as const;
export type MutantStatus = (typeof MUTANT_STATUSES)[number];

/** One mutant of Stryker's JSON report, with the source text it replaces. */
export interface Mutant {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly mutator: string;
  /** The mutated source text, whitespace collapsed. */
  readonly original: string;
  /** What Stryker put in its place, whitespace collapsed. */
  readonly replacement: string;
  readonly status: MutantStatus;
  /** Ran at module load (e.g. a machine's config object), so every related test ran for it. */
  readonly static: boolean;
}

const position = z.object({ line: z.number().int().positive(), column: z.number().int().positive() });

const reportSchema = z.object({
  files: z.record(
    z.string(),
    z.object({
      source: z.string(),
      mutants: z.array(
        z.object({
          mutatorName: z.string(),
          replacement: z.string().optional(),
          status: z.enum(MUTANT_STATUSES),
          static: z.boolean().optional(),
          location: z.object({ start: position, end: position }),
        }),
      ),
    }),
  ),
});

export type MutationReport = z.infer<typeof reportSchema>;

export function collapseWhitespace(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** The text between two 1-based (line, column) positions, end exclusive. */
function sourceBetween(
  lines: readonly string[],
  start: z.infer<typeof position>,
  end: z.infer<typeof position>,
): string {
  if (start.line === end.line) {
    return (lines[start.line - 1] ?? "").slice(start.column - 1, end.column - 1);
  }
  const first = (lines[start.line - 1] ?? "").slice(start.column - 1);
  const middle = lines.slice(start.line, end.line - 1);
  const last = (lines[end.line - 1] ?? "").slice(0, end.column - 1);
  return [first, ...middle, last].join("\n");
}

/** Every mutant of a parsed report, sorted by file, then position. */
export function mutantsOf(report: MutationReport): Mutant[] {
  const mutants: Mutant[] = [];
  for (const [file, result] of Object.entries(report.files)) {
    const lines = result.source.split("\n");
    for (const mutant of result.mutants) {
      mutants.push({
        file: file.replaceAll("\\", "/"),
        line: mutant.location.start.line,
        column: mutant.location.start.column,
        mutator: mutant.mutatorName,
        original: collapseWhitespace(sourceBetween(lines, mutant.location.start, mutant.location.end)),
        replacement: collapseWhitespace(mutant.replacement ?? ""),
        status: mutant.status,
        static: mutant.static ?? false,
      });
    }
  }
  return mutants.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
}

/** Reads Stryker's JSON report; a missing or malformed file fails with an error naming it. */
export function loadMutationReport(path: string): MutationReport {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new Error(
      `${path}: cannot read Stryker's JSON report (${(error as Error).message}); run npm run test:mutation`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${path}: not JSON (${(error as Error).message})`);
  }
  const parsed = reportSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `${path}: not a Stryker JSON report: ${issue?.path.join(".") || "(root)"}: ${issue?.message}`,
    );
  }
  return parsed.data;
}
