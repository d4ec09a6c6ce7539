// `npm run test:mutation`: StrykerJS over the cluster's core, with the vitest runner and the default
// suite's tests less those listed in test/mutation/testSets.ts. docs/mutation.md explains it.

/** The areas a full run mutates; MUTATION_AREAS=machines,config (comma-separated) runs only some. */
const AREAS = {
  etcd: "src/etcd/**/*.ts",
  runtime: "src/runtime/**/*.ts",
  machines: "machines/**/*.ts",
  config: "src/config/**/*.ts",
};

function mutateGlobs() {
  const asked = (process.env.MUTATION_AREAS ?? "")
    .split(",")
    .map((area) => area.trim())
    .filter((area) => area !== "");
  if (asked.length === 0) return Object.values(AREAS);
  return asked.map((area) => {
    const glob = AREAS[area];
    if (glob === undefined) {
      throw new Error(
        `MUTATION_AREAS: unknown area "${area}"; known areas: ${Object.keys(AREAS).join(", ")}`,
      );
    }
    return glob;
  });
}

/**
 * MUTATION_TESTS=pure runs only the tests that need no etcd (test/mutation/testSets.ts), the fast way
 * to score machines/ and src/config/; MUTATION_TESTS=etcd adds the tests that drive src/etcd directly
 * against etcd, the affordable way to score src/etcd; MUTATION_TESTS=store only those that call the
 * ClusterStore directly, for its transactions (clusterStore.ts, handoff.ts, fencing.ts);
 * MUTATION_TESTS=views only those that drive prefix views directly (prefixView.ts, prefixLists.ts).
 * Unset, every test related to a mutated file runs.
 */
const VITEST_CONFIGS = {
  all: "test/mutation/vitest.config.ts",
  pure: "test/mutation/vitest.pure.config.ts",
  etcd: "test/mutation/vitest.etcd.config.ts",
  store: "test/mutation/vitest.store.config.ts",
  views: "test/mutation/vitest.views.config.ts",
};

function vitestConfigFile() {
  const set = process.env.MUTATION_TESTS || "all";
  const file = VITEST_CONFIGS[set];
  if (file === undefined) {
    throw new Error(
      `MUTATION_TESTS: unknown test set "${set}"; known sets: ${Object.keys(VITEST_CONFIGS).join(", ")}`,
    );
  }
  return file;
}

function positiveInteger(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`${name}: expected a positive integer, got "${text}"`);
  return value;
}

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  // Stryker's vitest runner, plus: a test file that fails outside its tests fails the run.
  testRunner: "vitest-strict",
  plugins: ["@stryker-mutator/vitest-runner", "./scripts/mutation/strictVitestRunner.mjs"],
  vitest: { configFile: vitestConfigFile(), related: true },
  // Each mutant runs only the tests that executed its code in the dry run.
  coverageAnalysis: "perTest",
  mutate: mutateGlobs(),
  // Two cores, shared with other test runs; integration tests wait on lease expiry and must not starve.
  concurrency: positiveInteger("MUTATION_CONCURRENCY", 1),
  // A mutant's limit is its tests' dry-run time × factor + timeoutMS. Tests wait on lease expiry and
  // etcd start-up, so a loaded machine needs slack; a timed-out mutant counts as detected, and the
  // summary prints how many mutants were only detected by timing out.
  timeoutFactor: 2,
  timeoutMS: 20_000,
  // A long integration dry run must not be cut short.
  dryRunTimeoutMinutes: 30,
  reporters: [process.stdout.isTTY ? "progress" : "progress-append-only", "json", "html"],
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  htmlReporter: { fileName: "reports/mutation/mutation.html" },
  incrementalFile: "reports/mutation/stryker-incremental.json",
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
  ignorePatterns: ["dist", "coverage", "reports", "bench/results", "test/faults/results", ".rdeebee-local"],
};
