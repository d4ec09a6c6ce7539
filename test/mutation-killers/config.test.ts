/**
 * Rules of src/config that mutation testing found unchecked (see docs/mutation.md): each test names
 * the rule and fails when it is broken.
 */
import { describe, expect, test } from "vitest";
import {
  ClusterLayout,
  ConfigError,
  keepaliveIntervalProblem,
  parseClusterConfig,
  parseClusterConfigYaml,
  resolveEtcdEndpoints,
  resolveNodeSettings,
} from "../../src/config/index.js";
import { parseHostPort } from "../../src/config/nodeSettings.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";

const NO_ENV = {};

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("ConfigError's message", () => {
  test("one problem stays on the source's line; several go one per indented line", () => {
    expect(new ConfigError("config.yaml", ["groups: too big"]).message).toBe("config.yaml: groups: too big");
    expect(new ConfigError("config.yaml", ["a: bad", "b: bad"]).message).toBe(
      "config.yaml:\n  a: bad\n  b: bad",
    );
  });
});

describe("config.yaml", () => {
  test("is read with YAML's core schema: a name that looks like a date stays a string", () => {
    const yaml = Object.entries({ ...SEED_CONFIG, dbname: "2024-01-02" })
      .map(([key, value]) => `${key}: ${value}`)
      .join("\n");
    expect(parseClusterConfigYaml(yaml, "config.yaml").dbname).toBe("2024-01-02");
  });

  test("several unknown fields are named in one problem, separated by '; '", () => {
    expect(problemsOf(() => parseClusterConfig({ ...SEED_CONFIG, colour: 1, size: 2 }, "c.yaml"))).toEqual([
      "colour: unknown field; size: unknown field",
    ]);
  });
});

describe("the keepalive interval", () => {
  test("a fraction of a millisecond is refused", () => {
    expect(keepaliveIntervalProblem(1500.5, 5)).toBe("must be a whole number of milliseconds");
    expect(keepaliveIntervalProblem(1500, 5)).toBeUndefined();
  });
});

describe("node settings", () => {
  test("spaces around a number of seconds are ignored", () => {
    expect(resolveNodeSettings({ leaseTtl: " 7 ", refreshInterval: " 2 " }, NO_ENV)).toMatchObject({
      leaseTtlSeconds: 7,
      keepaliveIntervalMs: 2000,
    });
  });

  test("an etcd endpoint with a query is refused, and the problem names it trimmed", () => {
    expect(problemsOf(() => resolveNodeSettings({ etcd: "127.0.0.1:2379?x=1" }, NO_ENV))).toEqual([
      '--etcd: malformed endpoint "127.0.0.1:2379?x=1"',
    ]);
    expect(problemsOf(() => resolveNodeSettings({ etcd: "127.0.0.1:2379, nope " }, NO_ENV))).toEqual([
      '--etcd: malformed endpoint "nope"',
    ]);
  });

  test("a port with a space before or after it is refused", () => {
    for (const address of ["127.0.0.1: 7000", "127.0.0.1:7000 "]) {
      expect(problemsOf(() => resolveNodeSettings({ address }, NO_ENV))).toEqual([
        `--address: address must be host:port, got "${address}"`,
      ]);
    }
  });

  test("an address without a colon is refused", () => {
    expect(problemsOf(() => resolveNodeSettings({ address: "7000" }, NO_ENV))).toEqual([
      '--address: address must be host:port, got "7000"',
    ]);
  });

  test("host:port splits at the last colon, IPv6 in brackets", () => {
    expect(parseHostPort("db-1.example:7000")).toEqual({ host: "db-1.example", port: 7000 });
    expect(parseHostPort("[::1]:7000")).toEqual({ host: "[::1]", port: 7000 });
  });

  test("the etcd endpoints alone: the flag, else ETCD, each with its scheme", () => {
    expect(resolveEtcdEndpoints("127.0.0.1:2379,https://10.0.0.2:2379", NO_ENV)).toEqual([
      "http://127.0.0.1:2379",
      "https://10.0.0.2:2379",
    ]);
    expect(resolveEtcdEndpoints(undefined, { ETCD: "10.0.0.3:2379" })).toEqual(["http://10.0.0.3:2379"]);
  });
});

describe("a layout built in code", () => {
  test("checks its config like a file, naming the source 'cluster config' and the field", () => {
    expect(() => new ClusterLayout({ ...SEED_CONFIG, groups: 0 })).toThrow(/^cluster config: groups: /);
  });
});

describe("the layout refuses what is outside it, naming the valid range", () => {
  const layout = new ClusterLayout({ ...SEED_CONFIG, groups: 5, group_size: 10, reads: 2 });

  test("node IDs", () => {
    expect(() => layout.nodeGroup(50)).toThrow(new RangeError("node ID 50 is outside 0..49"));
  });

  test("groups", () => {
    expect(() => layout.groupingOf(5)).toThrow(new RangeError("group 5 is outside 0..4"));
  });

  test("groupings: negative, fractional and past the last", () => {
    expect(() => layout.groupsOf(-1)).toThrow(new RangeError("grouping -1 is outside 0..2"));
    expect(() => layout.groupsOf(0.5)).toThrow(new RangeError("grouping 0.5 is outside 0..2"));
    expect(() => layout.groupsOf(3)).toThrow(new RangeError("grouping 3 is outside 0..2"));
    expect(layout.groupsOf(2)).toEqual([4]);
  });
});
