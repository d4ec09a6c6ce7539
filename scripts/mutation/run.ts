/**
 * `npm run test:mutation [-- stryker options]`: runs StrykerJS (stryker.config.mjs) with the given
 * options passed through (e.g. `--mutate "machines/**\/*.ts"`, `--incremental`, `--concurrency 2`),
 * then prints the summary of printSummary.ts. Exit: Stryker's own code when it fails, else the summary's.
 */
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { printMutationSummary, REPORT_FILE } from "./printSummary.js";

const args = process.argv.slice(2);
if (args.some((arg) => arg === "--testFiles" || arg.startsWith("--testFiles=") || arg === "-t")) {
  console.error(
    "--testFiles is refused: with it StrykerJS 9.6.1 switches static mutants on only after the modules are " +
      "loaded, so they survive untested. Use MUTATION_TESTS=pure (test/mutation/testSets.ts) instead.",
  );
  process.exit(2);
}
const root = process.cwd();
const stryker = join(root, "node_modules", ".bin", "stryker");

// A report left from an earlier run must not be summarized as this run's.
rmSync(join(root, REPORT_FILE), { force: true });
const started = performance.now();
const run = spawnSync(stryker, ["run", "stryker.config.mjs", ...args], {
  cwd: root,
  stdio: "inherit",
});
const minutes = (performance.now() - started) / 60_000;
if (run.error !== undefined) {
  console.error(`cannot run ${stryker}: ${run.error.message} (npm ci installs it)`);
  process.exitCode = 1;
} else if (run.status !== 0) {
  console.error(`stryker exited with ${run.status ?? run.signal} after ${minutes.toFixed(1)} min`);
  process.exitCode = run.status ?? 1;
} else {
  console.log(`\nstryker took ${minutes.toFixed(1)} min\n`);
  try {
    process.exitCode = printMutationSummary(root);
  } catch (error) {
    console.error((error as Error).message);
    process.exitCode = 1;
  }
}
