import type { SpawnSyncReturns } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, runCli } from "../support/cli.js";

const VALID_YAML = [
  'dbname: "RDeeBee"',
  "groups: 10",
  "group_size: 3",
  "reads: 3",
  "writes: 2",
  'id_key: "id_key"',
  'failover_id_key_prefix: "failover_id"',
  "",
].join("\n");

/** Runs the built CLI; leading arguments that start with "--max-" go to node itself. */
function cli(...args: string[]): SpawnSyncReturns<string> {
  return cliWithEnv({}, ...args);
}

function cliWithEnv(env: Record<string, string>, ...args: string[]): SpawnSyncReturns<string> {
  const nodeFlags = args.filter((a) => a.startsWith("--max-"));
  return runCli(
    args.filter((a) => !a.startsWith("--max-")),
    { env, nodeFlags },
  );
}

let dir: string;

beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "rdeebee-cli-"));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe("rdeebee-cluster layout (seed config.yaml)", () => {
  it("--json prints the derived layout", () => {
    const r = cli("layout", "--json");
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const d = JSON.parse(r.stdout);
    expect(d.groupings).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]);
    expect(d.groupNodeIds).toHaveLength(10);
    for (let g = 0; g < 10; g++) expect(d.groupNodeIds[g]).toEqual({ first: 3 * g, last: 3 * g + 2 });
    expect(d.leaderKeys).toHaveLength(4);
    expect(d.leaderKeys[0]).toEqual(["leader-RDeeBee-group-0-1", "leader-RDeeBee-group-0-2"]);
    expect(d.electionPrefixes).toHaveLength(4);
    expect(d.electionPrefixes[3]).toEqual([
      "election-RDeeBee-group-3-leader-1/",
      "election-RDeeBee-group-3-leader-2/",
    ]);
  });

  it("--config selects another file", () => {
    const path = writeConfig("small.yaml", VALID_YAML.replace("groups: 10", "groups: 4"));
    for (const flag of ["--config", "-c"]) {
      const r = cli("layout", "--json", flag, path);
      expect(r.status).toBe(0);
      const d = JSON.parse(r.stdout);
      expect(d.groupings).toEqual([[0, 1, 2], [3]]);
      expect(d.groupNodeIds).toEqual([0, 1, 2, 3].map((g) => ({ first: 3 * g, last: 3 * g + 2 })));
    }
  });

  it("plain output names every grouping and its groups", () => {
    const r = cli("layout");
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("grouping 0: groups [0, 1, 2]");
    expect(r.stdout).toContain("grouping 1: groups [3, 4, 5]");
    expect(r.stdout).toContain("grouping 2: groups [6, 7, 8]");
    expect(r.stdout).toContain("grouping 3: groups [9]");
    expect(r.stdout).not.toContain("grouping 4");
    expect(r.stdout).toContain("leader-RDeeBee-group-3-2");
    expect(r.stdout).toContain("member-RDeeBee-group-9/");
    expect(r.stdout).toContain("group 9: node IDs 27..29");
  });
});

/** The seed config with other sizes (writes 1, so that any group_size is allowed). */
const sized = (sizes: { groups: number; group_size: number; reads: number }) =>
  VALID_YAML.replace("groups: 10", `groups: ${sizes.groups}`)
    .replace("group_size: 3", `group_size: ${sizes.group_size}`)
    .replace("reads: 3", `reads: ${sizes.reads}`)
    .replace("writes: 2", "writes: 1");

describe("rdeebee-cluster layout at the size bounds", () => {
  // A heap far below what one entry per node ID would take (1,000,000 IDs): the layout's cost is per group.
  const SMALL_HEAP = "--max-old-space-size=48";

  it.each([
    { groups: 10_000, group_size: 100, reads: 100 },
    { groups: 1_000, group_size: 1_000, reads: 100 },
  ])("the maximum capacity %j prints per-group ID ranges in a small heap", (sizes) => {
    const path = writeConfig(`max-${sizes.groups}.yaml`, sized(sizes));
    const json = cli(SMALL_HEAP, "layout", "--json", "--config", path);
    expect(json.stderr).toBe("");
    expect(json.status).toBe(0);
    const d = JSON.parse(json.stdout);
    expect(d.capacity).toBe(1_000_000);
    expect(d.groupNodeIds).toHaveLength(sizes.groups);
    expect(d.groupNodeIds.at(-1)).toEqual({ first: 1_000_000 - sizes.group_size, last: 999_999 });
    expect(Object.keys(d)).not.toContain("nodeGroup");
    // Pretty-printed, about 15 lines of at most 40 bytes per group; one entry per ID would be 1,000,000 lines.
    expect(json.stdout.length).toBeLessThan(sizes.groups * 15 * 40);

    const text = cli(SMALL_HEAP, "layout", "--config", path);
    expect(text.status).toBe(0);
    const lines = text.stdout.trimEnd().split("\n");
    // Two header lines, three per grouping, one per group.
    expect(lines).toHaveLength(2 + 3 * (sizes.groups / sizes.reads) + sizes.groups);
    expect(text.stdout).toContain(
      `group ${sizes.groups - 1}: node IDs ${1_000_000 - sizes.group_size}..999999`,
    );
  });

  it.each([
    ["groups", { groups: 100_000_000, group_size: 3, reads: 3 }, "groups: must be <= 10,000"],
    ["group_size", { groups: 10, group_size: 100_000_000, reads: 3 }, "group_size: must be <= 1,000"],
    ["reads", { groups: 10, group_size: 3, reads: 101 }, "reads: must be <= 100"],
    [
      "capacity",
      { groups: 10_000, group_size: 101, reads: 3 },
      "groups × group_size: must be at most 1,000,000 node IDs",
    ],
  ])("%s beyond its bound exits 2 naming the field, in a small heap", (name, sizes, message) => {
    const path = writeConfig(`too-big-${name}.yaml`, sized(sizes));
    for (const json of [[], ["--json"]]) {
      const r = cli(SMALL_HEAP, "layout", ...json, "--config", path);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(path);
      expect(r.stderr).toContain(message);
    }
  });
});

describe("node settings beyond their bounds exit 2 naming the flag or variable", () => {
  const cases: [args: string[], env: Record<string, string>, message: string][] = [
    [
      ["--lease-ttl", "3000000"],
      {},
      '--lease-ttl: lease TTL must be at most 3,600 s (one hour), got "3000000"',
    ],
    [["--lease-ttl", "10000000000"], {}, "--lease-ttl: lease TTL must be at most 3,600 s"],
    [["--lease-ttl", "3601"], {}, "--lease-ttl: lease TTL must be at most 3,600 s"],
    [[], { LEASE_TTL: "3000000" }, "LEASE_TTL: lease TTL must be at most 3,600 s"],
    [
      ["--refresh-interval", "0.05"],
      {},
      "--refresh-interval: keepalive interval (0.05 s) must be at least 0.1 s",
    ],
    [
      [],
      { REFRESH_INTERVAL: "0.001" },
      "REFRESH_INTERVAL: keepalive interval (0.001 s) must be at least 0.1 s",
    ],
    [["--lease-ttl", "3600", "--refresh-interval", "3600"], {}, "must be below the lease TTL (3600 s)"],
  ];

  it.each(["node", "serve"])("%s", (command) => {
    for (const [args, env, message] of cases) {
      // An etcd nobody listens on: the settings are refused before any connection is tried.
      const r = cliWithEnv(env, command, "--etcd", "127.0.0.1:1", ...args);
      expect(r.status, `${command} ${args.join(" ")} ${JSON.stringify(env)}`).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).not.toContain("TimeoutOverflowWarning");
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

describe("rdeebee-cluster layout with a bad config", () => {
  const cases: [name: string, text: string, mentions: string[]][] = [
    ["missing-field.yaml", VALID_YAML.replace("reads: 3\n", ""), ["reads", "missing"]],
    ["wrong-type.yaml", VALID_YAML.replace("groups: 10", 'groups: "10"'), ["groups", "must be a number"]],
    ["zero.yaml", VALID_YAML.replace("group_size: 3", "group_size: 0"), ["group_size", "> 0"]],
    ["negative.yaml", VALID_YAML.replace("groups: 10", "groups: -2"), ["groups", "> 0"]],
    ["non-integer.yaml", VALID_YAML.replace("reads: 3", "reads: 1.5"), ["reads", "integer"]],
    ["writes-too-big.yaml", VALID_YAML.replace("writes: 2", "writes: 4"), ["writes", "group_size"]],
    ["unknown-key.yaml", `${VALID_YAML}group_count: 3\n`, ["group_count", "unknown"]],
    ["not-yaml.yaml", "groups: [1,", ["not valid YAML"]],
    ["scalar.yaml", "just a string\n", ["mapping"]],
    ["list.yaml", "- 1\n- 2\n", ["mapping"]],
    ["empty.yaml", "", ["empty"]],
  ];

  it.each(cases)(
    "%s exits 2, names the file and the field, prints nothing on stdout",
    (name, text, mentions) => {
      const path = writeConfig(name, text);
      const r = cli("layout", "--config", path);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(path);
      for (const m of mentions) expect(r.stderr).toContain(m);
      expect(r.stderr).not.toMatch(/\n\s+at /); // a clear message, not a stack trace
    },
  );

  it("--json does not print anything on stdout for a bad config either", () => {
    const path = writeConfig("bad-json.yaml", VALID_YAML.replace("writes: 2", "writes: 9"));
    const r = cli("layout", "--json", "--config", path);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("writes");
  });

  it("a missing file exits 2 and names the path", () => {
    const path = join(dir, "no-such-file.yaml");
    const r = cli("layout", "--config", path);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(path);
    expect(r.stderr).toContain("ENOENT");
  });

  it("a directory instead of a file exits 2", () => {
    const r = cli("layout", "--config", dir);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(dir);
  });
});

describe("rdeebee-cluster usage errors", () => {
  it("an unknown command exits non-zero", () => {
    const r = cli("no-such-command");
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("no-such-command");
  });

  it("an unknown flag exits non-zero", () => {
    const r = cli("layout", "--no-such-flag");
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("--no-such-flag");
  });

  it("--config without a value exits non-zero", () => {
    const r = cli("layout", "--config");
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe("");
  });

  it("--help exits 0", () => {
    const r = cli("layout", "--help");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("--config");
  });
});
