import { join } from "node:path";
import { expect, test } from "vitest";
import { ConfigError, nodeSettings, resolveNodeSettings } from "../../src/config/index.js";

test("--state-dir, then STATE_DIR, resolved to an absolute path; none by default", () => {
  expect(resolveNodeSettings({ stateDir: "state" }, {}).stateDir).toBe(join(process.cwd(), "state"));
  expect(resolveNodeSettings({}, { STATE_DIR: "/var/lib/db/node" }).stateDir).toBe("/var/lib/db/node");
  expect(resolveNodeSettings({ stateDir: "/a" }, { STATE_DIR: "/b" }).stateDir).toBe("/a");
  expect(resolveNodeSettings({}, {})).not.toHaveProperty("stateDir");
  expect(nodeSettings({ stateDir: "state" }).stateDir).toBe(join(process.cwd(), "state"));
  expect(nodeSettings({})).not.toHaveProperty("stateDir");
});

test("an empty or non-string state directory is refused, naming the flag, variable or option", () => {
  expect(() => resolveNodeSettings({ stateDir: " " }, {})).toThrow(
    "--state-dir: state directory must be a directory path, got an empty one",
  );
  expect(() => resolveNodeSettings({}, { STATE_DIR: "a\0b" })).toThrow(
    "STATE_DIR: state directory must not contain a NUL character",
  );
  expect(() => nodeSettings({ stateDir: "" })).toThrow(ConfigError);
  expect(() => nodeSettings({ stateDir: "" })).toThrow("stateDir: must be a directory path");
  expect(() => nodeSettings({ stateDir: 7 as unknown as string })).toThrow(
    "stateDir: must be a string, got 7",
  );
});
