import { defineConfig, mergeConfig } from "vitest/config";
import baseConfig from "../../vitest.config.js";
import { EXCLUDED_FROM_MUTATION } from "./testSets.js";

/**
 * The default suite's config for Stryker's vitest runner (`npm run test:mutation`), less the test
 * files listed in testSets.ts. The runner itself forces one worker thread per Stryker process.
 */
export default mergeConfig(
  baseConfig,
  defineConfig({
    test: {
      exclude: EXCLUDED_FROM_MUTATION.map((excluded) => excluded.glob),
    },
  }),
);
