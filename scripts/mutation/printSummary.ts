/**
 * Prints the per-area scores and every surviving mutant of the last `npm run test:mutation`, from
 * Stryker's JSON report and the known-equivalent list in docs/mutation.md. Exit 1 when an area is
 * below its goal. Run alone: `node dist/scripts/mutation/printSummary.js`.
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { loadEquivalents } from "./equivalents.js";
import { loadMutationReport, mutantsOf } from "./report.js";
import { formatSummary, summarize } from "./summary.js";

export const REPORT_FILE = join("reports", "mutation", "mutation.json");
export const EQUIVALENTS_FILE = join("docs", "mutation.md");

/** Prints the summary for the repo at `root`; returns the exit code. */
export function printMutationSummary(root = process.cwd()): number {
  const mutants = mutantsOf(loadMutationReport(join(root, REPORT_FILE)));
  const summary = summarize(mutants, loadEquivalents(join(root, EQUIVALENTS_FILE)));
  console.log(formatSummary(summary));
  const below = summary.areas.filter((area) => !area.goalMet);
  if (below.length === 0) return 0;
  console.log(
    `Below goal: ${below.map((a) => `${a.area.name} ${a.scoreWithoutEquivalents.toFixed(1)}% < ${a.area.goal}%`).join(", ")}`,
  );
  return 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.exitCode = printMutationSummary();
  } catch (error) {
    console.error((error as Error).message);
    process.exitCode = 1;
  }
}
