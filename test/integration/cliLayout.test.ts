import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin", "rdeebee-cluster.js");
const ENTRY = join(ROOT, "dist", "src", "cli", "main.js");

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

function cli(...args: string[]): SpawnSyncReturns<string> {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, NO_COLOR: "1" },
  });
  if (result.error) throw result.error;
  return result;
}

let dir: string;

beforeAll(() => {
  // The test command builds before vitest runs; build here only when run on a fresh checkout.
  if (!existsSync(ENTRY)) {
    const build = spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, encoding: "utf8" });
    if (build.status !== 0) throw new Error(`build failed:\n${build.stdout}${build.stderr}`);
  }
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
    expect(Object.keys(d.nodeGroup)).toHaveLength(30);
    for (let id = 0; id < 30; id++) expect(d.nodeGroup[String(id)]).toBe(Math.floor(id / 3));
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
      expect(Object.keys(d.nodeGroup)).toHaveLength(12);
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
