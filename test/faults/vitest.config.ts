import { defineConfig } from "vitest/config";

/** The fault suite (`npm run test:faults`): real processes, real etcd members, minutes long. */
export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    globalSetup: ["test/faults/globalSetup.ts"],
    testTimeout: 15 * 60_000,
    hookTimeout: 2 * 60_000,
    teardownTimeout: 60_000,
    maxWorkers: 1,
    fileParallelism: false,
  },
});
