import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ClusterConfig,
  ConfigError,
  loadClusterConfig,
  parseClusterConfig,
  parseClusterConfigYaml,
} from "../../src/config/index.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";

/** The seed's values (test/support/clusterNodes.ts), valid by definition. */
const VALID: ClusterConfig = { ...SEED_CONFIG };
const FIELDS = Object.keys(VALID) as (keyof ClusterConfig)[];
const NUMERIC_FIELDS = ["groups", "group_size", "reads", "writes"] as const;

let dir: string;
let counter = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "rdeebee-config-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(text: string): string {
  const path = join(dir, `config-${++counter}.yaml`);
  writeFileSync(path, text);
  return path;
}

function yamlOf(value: Record<string, unknown>): string {
  return yaml.dump(value);
}

/** Loads `text` from a temp file and returns the ConfigError it must raise, checked to name the file. */
function loadError(text: string): ConfigError {
  const path = writeConfig(text);
  return errorOf(() => loadClusterConfig(path), path);
}

function errorOf(f: () => unknown, source: string): ConfigError {
  let caught: unknown;
  try {
    f();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  const err = caught as ConfigError;
  expect(err.name).toBe("ConfigError");
  expect(err.source).toBe(source);
  expect(err.message).toContain(source);
  expect(err.problems.length).toBeGreaterThan(0);
  for (const p of err.problems) expect(err.message).toContain(p);
  return err;
}

function withField(field: string, value: unknown): Record<string, unknown> {
  return { ...VALID, [field]: value };
}

function without(field: string): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...VALID };
  delete copy[field];
  return copy;
}

describe("valid configs", () => {
  it("loads a valid file", () => {
    expect(loadClusterConfig(writeConfig(yamlOf(VALID)))).toEqual(VALID);
  });

  it("accepts writes == group_size and a single group", () => {
    const config = { ...VALID, groups: 1, group_size: 1, reads: 1, writes: 1 };
    expect(parseClusterConfig(config, "inline")).toEqual(config);
  });

  it("reads numbers as numbers and quoted strings as strings", () => {
    const text =
      'dbname: "X"\ngroups: 4\ngroup_size: 2\nreads: 3\nwrites: 1\nid_key: ids\nfailover_id_key_prefix: fo\n';
    expect(parseClusterConfigYaml(text, "inline")).toEqual({
      dbname: "X",
      groups: 4,
      group_size: 2,
      reads: 3,
      writes: 1,
      id_key: "ids",
      failover_id_key_prefix: "fo",
    });
  });
});

describe("bad configs: each problem names the field and the file", () => {
  it.each(FIELDS)("missing %s", (field) => {
    const err = loadError(yamlOf(without(field)));
    expect(err.problems).toEqual([`${field}: missing required field`]);
    expect(err.message).toContain(field);
  });

  it("wrong type: a string for groups is a type error, not a missing field", () => {
    const err = loadError(yamlOf(withField("groups", "10")));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^groups: /);
    expect(err.problems[0]).toContain("must be a number");
    expect(err.message).not.toContain("missing");
  });

  it.each([
    ["groups", true],
    ["group_size", null],
    ["reads", [1, 2]],
    ["writes", { a: 1 }],
  ])("wrong type: %s = %j", (field, value) => {
    const err = loadError(yamlOf(withField(field, value)));
    expect(err.problems).toEqual([`${field}: must be a number`]);
  });

  it.each([
    ["dbname", 42],
    ["id_key", true],
    ["failover_id_key_prefix", null],
  ])("wrong type: %s = %j", (field, value) => {
    const err = loadError(yamlOf(withField(field, value)));
    expect(err.problems).toEqual([`${field}: must be a string`]);
  });

  it.each(NUMERIC_FIELDS.flatMap((f) => [0, -1, -10].map((v) => [f, v] as const)))(
    "%s = %d",
    (field, value) => {
      const err = loadError(yamlOf(withField(field, value)));
      expect(err.problems).toContain(`${field}: must be > 0`);
      expect(err.message).toContain(field);
    },
  );

  it.each(NUMERIC_FIELDS.map((f) => [f, 1.5] as const))("%s = %d is not an integer", (field, value) => {
    const err = loadError(yamlOf(withField(field, value)));
    expect(err.problems).toEqual([`${field}: must be an integer`]);
  });

  it("groups: .inf is not a valid number", () => {
    const err = loadError(yamlOf(VALID).replace("groups: 10", "groups: .inf"));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^groups: /);
    expect(err.problems[0]).not.toContain("missing");
  });

  it("writes > group_size", () => {
    const err = loadError(yamlOf({ ...VALID, group_size: 3, writes: 4 }));
    expect(err.problems).toEqual(["writes: must be <= group_size"]);
    expect(err.message).toContain("writes");
    expect(err.message).toContain("group_size");
  });

  it("unknown key", () => {
    const err = loadError(yamlOf({ ...VALID, read: 3 }));
    expect(err.problems).toEqual(["read: unknown field"]);
  });

  it("several unknown keys are each named", () => {
    const err = loadError(yamlOf({ ...VALID, foo: 1, bar: 2 }));
    expect(err.problems.join("\n")).toContain("foo: unknown field");
    expect(err.problems.join("\n")).toContain("bar: unknown field");
  });

  it.each([
    ["empty", ""],
    ["containing '/'", "a/b"],
    ["containing a space", "a b"],
    ["containing a tab", "a\tb"],
  ])("key string %s", (_, value) => {
    for (const field of ["dbname", "id_key", "failover_id_key_prefix"]) {
      const err = loadError(yamlOf(withField(field, value)));
      for (const p of err.problems) expect(p).toMatch(new RegExp(`^${field}: must not`));
    }
  });

  it("id_key equal to failover_id_key_prefix", () => {
    const err = loadError(yamlOf({ ...VALID, id_key: "same", failover_id_key_prefix: "same" }));
    expect(err.problems).toEqual(["failover_id_key_prefix: must differ from id_key"]);
  });

  it.each([
    ["id_key", "leader-RDeeBee-group-0-1"],
    ["id_key", "member-RDeeBee-group-1"],
    ["failover_id_key_prefix", "member-RDeeBee-group-1"],
    ["failover_id_key_prefix", "election-RDeeBee-group-0-leader-1"],
  ])("%s = %s would collide with a derived key name", (field, value) => {
    const err = loadError(yamlOf(withField(field, value)));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(new RegExp(`^${field}: must not start with`));
  });

  it("accepts names that only look alike for another dbname", () => {
    const config = { ...VALID, id_key: "leader-Other-group-0-1" };
    expect(parseClusterConfig(config, "inline")).toEqual(config);
  });

  it("reports several problems together", () => {
    const err = loadError(yamlOf({ ...without("dbname"), groups: 0, reads: "x", extra: 1 }));
    const all = err.problems.join("\n");
    expect(err.problems.length).toBeGreaterThanOrEqual(4);
    for (const name of ["dbname", "groups", "reads", "extra"]) expect(all).toContain(`${name}:`);
    for (const name of ["dbname", "groups", "reads", "extra"]) expect(err.message).toContain(name);
  });
});

describe("size bounds: each refusal names the field and the limit", () => {
  it.each([
    ["groups", 10_001, "groups: must be <= 10,000"],
    ["groups", 100_000_000, "groups: must be <= 10,000"],
    ["group_size", 1_001, "group_size: must be <= 1,000"],
    ["group_size", 100_000_000, "group_size: must be <= 1,000"],
    ["reads", 101, "reads: must be <= 100"],
  ] as const)("%s = %d", (field, value, problem) => {
    const err = loadError(yamlOf({ ...VALID, [field]: value, writes: 1 }));
    expect(err.problems).toEqual([problem]);
  });

  it("groups × group_size above 1,000,000 node IDs is refused, naming both fields", () => {
    const err = loadError(yamlOf({ ...VALID, groups: 10_000, group_size: 101 }));
    expect(err.problems).toEqual(["groups × group_size: must be at most 1,000,000 node IDs, got 1,010,000"]);
  });

  it("a huge YAML number (1e9) is a bound violation, not a hang", () => {
    const err = loadError(yamlOf(VALID).replace("groups: 10", "groups: 1e9"));
    expect(err.problems).toEqual(["groups: must be <= 10,000"]);
  });

  it.each([
    { groups: 10_000, group_size: 100, reads: 100 },
    { groups: 1_000, group_size: 1_000, reads: 100 },
    { groups: 10_000, group_size: 1, reads: 1 },
  ])("accepts the limits themselves: %j", (sizes) => {
    const config = { ...VALID, ...sizes, writes: 1 };
    expect(parseClusterConfig(config, "inline")).toEqual(config);
  });
});

describe("files that are not a config mapping", () => {
  it("not YAML at all", () => {
    const err = loadError("groups: [1,");
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^not valid YAML: /);
  });

  it("a duplicated key is not valid YAML", () => {
    const err = loadError(`${yamlOf(VALID)}groups: 11\n`);
    expect(err.problems[0]).toMatch(/^not valid YAML: .*duplicate/);
  });

  it.each([
    ["a scalar string", "hello"],
    ["a number", "42"],
    ["a list", "- 1\n- 2\n"],
    ["a list of mappings", "- groups: 1\n"],
  ])("%s instead of a mapping", (_, text) => {
    const err = loadError(text);
    expect(err.problems).toEqual(["(root): must be a mapping of the cluster settings"]);
  });

  it.each([
    ["an empty file", ""],
    ["whitespace only", "  \n\n"],
    ["comments only", "# nothing here\n"],
    ["an explicit null", "~\n"],
  ])("%s", (_, text) => {
    const err = loadError(text);
    expect(err.problems).toEqual(["file is empty"]);
  });

  it("a missing file", () => {
    const path = join(dir, "does-not-exist.yaml");
    const err = errorOf(() => loadClusterConfig(path), path);
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^cannot read file: ENOENT/);
  });

  it("a directory instead of a file", () => {
    const path = join(dir, "a-directory");
    mkdirSync(path);
    const err = errorOf(() => loadClusterConfig(path), path);
    expect(err.problems[0]).toMatch(/^cannot read file: EISDIR/);
  });

  it("names the given source for text and values parsed in memory", () => {
    errorOf(() => parseClusterConfigYaml("groups: [1,", "<stdin>"), "<stdin>");
    const err = errorOf(() => parseClusterConfig(without("reads"), "--config-json"), "--config-json");
    expect(err.problems).toEqual(["reads: missing required field"]);
  });
});
