import { defineConfig } from "vitest/config";
import { VIEW_TESTS } from "./testSets.js";
import mutationConfig from "./vitest.config.js";

/** MUTATION_TESTS=views: the mutation config with only the tests that drive prefix views directly (and the pure ones). */
export default defineConfig({
  ...mutationConfig,
  test: { ...mutationConfig.test, include: [...VIEW_TESTS] },
});
