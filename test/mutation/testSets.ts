/**
 * Which test files `npm run test:mutation` runs. EXCLUDED_FROM_MUTATION: never, each with the reason. Stryker mutates a
 * copy of the sources in its sandbox and activates one mutant at a time inside the test worker, so
 * a test only sees a mutant when it runs the mutated module in that worker.
 */
export interface ExcludedTests {
  readonly glob: string;
  readonly reason: string;
}

export const EXCLUDED_FROM_MUTATION: readonly ExcludedTests[] = [
  {
    glob: "test/faults/**",
    reason:
      "the fault suite has its own config (npm run test:faults), runs node processes from dist/ and takes ~10 min",
  },
  {
    glob: "test/integration/cliLayout.test.ts",
    reason: "runs the built CLI (dist/src/cli/main.js) as a process: it never sees a mutant",
  },
  {
    glob: "test/integration/nodeProcess.test.ts",
    reason: "runs node processes of the built CLI (dist/): they never see a mutant",
  },
  {
    glob: "test/integration/localCommand.test.ts",
    reason: "runs the built `local` command (dist/) in tmux: it never sees a mutant",
  },
  {
    glob: "test/unit/visualizations.test.ts",
    reason:
      "compares diagrams generated from the machines with the checked-in files, so it fails for every change " +
      "to a machine's shape, right or wrong: it would count as killing mutants that no behaviour test catches",
  },
];

/**
 * MUTATION_TESTS=pure: only the tests that need no etcd, the fast way to score machines/ and
 * src/config/. Chosen through vitest's `include` (vitest.pure.config.ts), not Stryker's `testFiles`:
 * with `testFiles`, StrykerJS 9.6.1 switches static mutants on only after the modules are loaded, so
 * every mutant of a machine's config object survives untested.
 */
export const PURE_TESTS: readonly string[] = [
  "test/machines/**/*.test.ts",
  "test/model/clusterPaths.test.ts",
  "test/unit/**/*.test.ts",
  "test/mutation-killers/**/*.test.ts",
];

/**
 * MUTATION_TESTS=etcd: the tests that drive src/etcd directly against a real etcd, plus the pure
 * ones, the affordable way to score src/etcd. The node-level integration tests (formation,
 * failover, server, CLI commands) reach src/etcd too, but each runs several nodes for tens of
 * seconds; a mutant of a file they import would run them all. A mutant these tests miss may still
 * be caught by those; a run with the full set says.
 */
export const ETCD_TESTS: readonly string[] = [
  ...PURE_TESTS,
  "test/integration/clusterStore.test.ts",
  "test/integration/session.test.ts",
  "test/integration/sessionDeadline*.test.ts",
  "test/integration/fencedWrite*.test.ts",
  "test/integration/leaseDeadline.test.ts",
  "test/integration/prefixView.test.ts",
  "test/integration/watchStream.test.ts",
  "test/integration/etcd3Pins.test.ts",
  "test/integration/etcd3RetryPins.test.ts",
  "test/integration/seatLiveness.test.ts",
  "test/integration/badValues.test.ts",
];

/**
 * MUTATION_TESTS=store: the pure tests plus the integration files that call `ClusterStore` (and the
 * handoff and fencing it runs) or `reclaimId` directly against a real etcd, without nodes, so that each finishes
 * under load. Left out of this set: the node-level tests that reach the store through a node
 * (`badValues`, `seatLiveness`, `attackTickets{Advertise,OwnKey,Restart,Spin}`, `handoffNode`), the
 * ones that never call it (`etcd3RetryPins`, `session*`, `watchStream`, `prefixView`), and
 * `attackTicketsRace` (a randomized run of twelve rounds: the ticket rules it checks are each
 * checked by a file kept here, and it would run for every mutant of the allocation path).
 */
export const STORE_TESTS: readonly string[] = [
  ...PURE_TESTS,
  "test/integration/clusterStore.test.ts",
  "test/integration/clusterStoreMutants*.test.ts",
  "test/integration/idClaimsMutants.test.ts",
  "test/integration/idTickets.test.ts",
  "test/integration/attackTicketsChecker.test.ts",
  "test/integration/attackTicketsIdKey.test.ts",
  "test/integration/attackTicketsLateClaim.test.ts",
  "test/integration/handoff.test.ts",
  "test/integration/attackHandoffTokenOnly.test.ts",
  "test/integration/fencedWriteMarkers.test.ts",
];

/**
 * MUTATION_TESTS=views: the pure tests plus the integration files that drive prefix views and their
 * batched lists (`watchPrefix`, `PrefixLists`) directly against a real etcd, without nodes, the
 * affordable way to score `prefixView.ts` and `prefixLists.ts`.
 */
export const VIEW_TESTS: readonly string[] = [
  ...PURE_TESTS,
  "test/integration/prefixView.test.ts",
  "test/integration/prefixLists.test.ts",
  "test/integration/attackBatchedLists.test.ts",
];
