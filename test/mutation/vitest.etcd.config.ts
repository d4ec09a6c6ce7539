import { defineConfig } from "vitest/config";
import { ETCD_TESTS } from "./testSets.js";
import mutationConfig from "./vitest.config.js";

/** MUTATION_TESTS=etcd: the mutation config with only the tests that drive src/etcd directly (and the pure ones). */
export default defineConfig({
  ...mutationConfig,
  test: { ...mutationConfig.test, include: [...ETCD_TESTS] },
});
