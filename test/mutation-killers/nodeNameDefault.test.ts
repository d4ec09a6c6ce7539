import { expect, test, vi } from "vitest";
import { ConfigError, resolveNodeSettings } from "../../src/config/index.js";

// The default node name is `<hostname>-<pid>`; a host name with a space makes it invalid.
vi.mock("node:os", async (importOriginal) => ({
  ...(await importOriginal<typeof import("node:os")>()),
  hostname: () => "bad host",
}));

test("a default node name that is not valid is refused, naming 'node' as its source", () => {
  let problems: readonly string[] = [];
  try {
    resolveNodeSettings({}, {});
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems = error.problems;
  }
  expect(problems).toEqual(["node: node name must be 1-128 letters, digits, '.', '_' or '-'"]);
});
