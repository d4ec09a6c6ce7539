import { defineConfig } from "vitest/config";
import { STORE_TESTS } from "./testSets.js";
import mutationConfig from "./vitest.config.js";

/** MUTATION_TESTS=store: the mutation config with only the tests that call `ClusterStore` directly (and the pure ones). */
export default defineConfig({
  ...mutationConfig,
  test: { ...mutationConfig.test, include: [...STORE_TESTS] },
});
