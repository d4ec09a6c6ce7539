import { defineConfig } from "vitest/config";
import { PURE_TESTS } from "./testSets.js";
import mutationConfig from "./vitest.config.js";

/** MUTATION_TESTS=pure: the mutation config with only the tests that need no etcd. */
export default defineConfig({
  ...mutationConfig,
  test: { ...mutationConfig.test, include: [...PURE_TESTS] },
});
