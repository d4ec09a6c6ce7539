/**
 * `rdeebee-cluster timeline`, run in-process through `main`: bad input is refused naming the file
 * (exit 2, no stack trace); recordings of real node processes, one killed with -9, show the killed
 * node as vanished at its last event and the stopped one as stopped.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { CliProcess } from "../../src/cli/local/cliProcess.js";
import { main } from "../../src/cli/main.js";
import { ClusterLayout, loadClusterConfig } from "../../src/config/index.js";
import { readClusterStatus } from "../../src/runtime/clusterStatus.js";
import { ensureBuilt, PACKAGE_ROOT } from "../support/cli.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

const CONFIG = join(PACKAGE_ROOT, "config.yaml");

/** Runs the CLI in-process; returns its exit code, what it printed and what it wrote to stderr. */
async function timeline(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  let err = "";
  const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
    err += String(chunk);
    return true;
  });
  try {
    const code = await main(["node", "rdeebee-cluster", "timeline", ...args], (t) => out.push(t));
    return { code, out: out.join("\n"), err };
  } finally {
    spy.mockRestore();
  }
}

const record = (fields: Record<string, unknown>) =>
  JSON.stringify({
    t: 1_000,
    node: "n-1",
    type: "@xstate.snapshot",
    actor: "node",
    rootId: "x:0",
    ...fields,
  });

/** A minimal recording: a node that connected, joined as follower and stopped. */
const STOPPED_RUN = [
  record({ type: "@xstate.actor" }),
  record({ t: 1_000, value: "connecting", context: {}, status: "active" }),
  record({ t: 1_100, value: { member: "follower" }, context: { id: 4 }, status: "active" }),
  record({ t: 1_200, value: "stopped", context: { id: 4 }, status: "done" }),
].join("\n");

describe("timeline refuses what is not a recording", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "rdeebee-timeline-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const refused = async (args: string[], names: string, reason: RegExp) => {
    const result = await timeline(...args);
    expect(result.code, result.err).toBe(2);
    expect(result.err).toContain(names);
    expect(result.err).toMatch(reason);
    expect(result.err).not.toMatch(/\n\s+at /);
    expect(result.out).toBe("");
  };

  test("a missing file", async () => {
    await refused([join(dir, "nope.jsonl")], join(dir, "nope.jsonl"), /no such file/);
  });

  test("an empty file, and one with only blank lines", async () => {
    writeFileSync(join(dir, "empty.jsonl"), "");
    await refused([join(dir, "empty.jsonl")], join(dir, "empty.jsonl"), /empty: no inspection records/);
    writeFileSync(join(dir, "blank.jsonl"), "\n\n  \n");
    await refused([join(dir, "blank.jsonl")], join(dir, "blank.jsonl"), /empty/);
  });

  test("garbage: not JSON, or JSON that is not an inspection record, naming the line", async () => {
    writeFileSync(join(dir, "garbage.jsonl"), "\u0000\u0001garbage\nmore");
    await refused([join(dir, "garbage.jsonl")], `${join(dir, "garbage.jsonl")}:1`, /not JSON/);
    writeFileSync(join(dir, "other.jsonl"), `${record({})}\n{"level":"info","message":"transition"}\n`);
    await refused([join(dir, "other.jsonl")], `${join(dir, "other.jsonl")}:2`, /not an inspection record/);
  });

  test("one bad file among good ones is named, and nothing is printed", async () => {
    writeFileSync(join(dir, "good.jsonl"), STOPPED_RUN);
    writeFileSync(join(dir, "bad.jsonl"), "nope\n");
    await refused([join(dir, "good.jsonl"), join(dir, "bad.jsonl")], join(dir, "bad.jsonl"), /not JSON/);
  });

  test("an --html path in a missing directory, before anything is printed", async () => {
    writeFileSync(join(dir, "good.jsonl"), STOPPED_RUN);
    const page = join(dir, "missing", "t.html");
    await refused([join(dir, "good.jsonl"), "--html", page], `--html ${page}`, /does not exist/);
  });

  test("a directory without recordings", async () => {
    mkdirSync(join(dir, "sub"));
    await refused([join(dir, "sub")], join(dir, "sub"), /no \.jsonl recordings/);
  });

  test("a torn last line (a process killed mid-write) is not refused", async () => {
    writeFileSync(join(dir, "torn.jsonl"), `${STOPPED_RUN}\n{"t":12`);
    const result = await timeline(join(dir, "torn.jsonl"));
    expect(result.code, result.err).toBe(0);
    expect(result.out).toMatch(/n-1\s+follower -> stopped/);
  });

  test("a node restarted into the same file without a stop: its first run is marked vanished at its last event", async () => {
    const secondRun = STOPPED_RUN.split("\n").map((line) => {
      const r = JSON.parse(line) as { t: number };
      return JSON.stringify({ ...r, t: r.t + 5_000 });
    });
    const killedRun = STOPPED_RUN.split("\n").slice(0, 3);
    writeFileSync(join(dir, "n-1.jsonl"), [...killedRun, ...secondRun].join("\n"));
    const result = await timeline(join(dir, "n-1.jsonl"));
    expect(result.code, result.err).toBe(0);
    const lines = result.out.split("\n");
    expect(lines[2]).toMatch(/^\s+\+0\.100s\s+n-1\s+vanished, last seen as follower .*id 4$/);
    expect(lines[3]).toMatch(/^\s+\+5\.000s\s+n-1\s+- -> connecting/);
    expect(lines.at(-1)).toMatch(/follower -> stopped/);
    expect(lines.filter((l) => l.includes("vanished"))).toHaveLength(1);
  });

  test("a recording without a node machine snapshot says so instead of printing a blank line", async () => {
    writeFileSync(join(dir, "actors.jsonl"), record({ type: "@xstate.actor" }));
    const result = await timeline(join(dir, "actors.jsonl"));
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/no role transitions/);
  });
});

describe("timeline of real node processes, one killed with -9", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let dir: string;
  const spawned: CliProcess[] = [];

  beforeAll(ensureBuilt);

  beforeEach(async () => {
    etcd = await startEtcd({ name: "timeline" });
    client = etcd.client();
    dir = mkdtempSync(join(tmpdir(), "rdeebee-timeline-"));
  });

  afterEach(async () => {
    for (const child of spawned) child.signal("SIGKILL");
    await Promise.all(spawned.map((child) => child.exited));
    spawned.length = 0;
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the killed primary vanishes at its last event, its backup reads backup -> primary, the stopped node stops", async () => {
    const layout = new ClusterLayout(loadClusterConfig(CONFIG));
    const names = ["tl-1", "tl-2", "tl-3"];
    const byName = new Map<string, CliProcess>();
    // Each node's role as its own log says.
    const roles = new Map<string, unknown>();
    for (const name of names) {
      const child = new CliProcess(
        [
          "node",
          ...["--etcd", etcd.endpoints[0] ?? "", "--node", name, "--lease-ttl", "2", "--config", CONFIG],
          ...["--inspect-file", join(dir, `${name}.jsonl`)],
        ],
        { onLine: (line) => line.message === "transition" && roles.set(name, line.role) },
      );
      spawned.push(child);
      byName.set(name, child);
    }
    const leaders = await waitUntil(
      "a primary, a backup and three members",
      async () => {
        const s = await readClusterStatus(client, layout);
        const g = s.groupings[0];
        const members = s.groups.flatMap((group) => group.members).length;
        const primary = g?.primary?.name;
        const backup = g?.backup?.name;
        if (!primary || !backup || members !== 3) return undefined;
        // etcd shows a won seat before the node has taken the reply: wait for the nodes' own word.
        return roles.get(primary) === "primary" && roles.get(backup) === "backup"
          ? { primary, backup }
          : undefined;
      },
      60_000,
    );
    const follower = names.find((n) => n !== leaders.primary && n !== leaders.backup) ?? "";
    byName.get(leaders.primary)?.signal("SIGKILL");
    await waitUntil(
      "the backup promoted",
      async () => (await readClusterStatus(client, layout)).groupings[0]?.primary?.name === leaders.backup,
      60_000,
    );
    for (const name of [leaders.backup, follower]) {
      byName.get(name)?.signal("SIGTERM");
      expect((await byName.get(name)?.exited)?.code).toBe(0);
    }

    const page = join(dir, "timeline.html");
    const result = await timeline(...names.map((n) => join(dir, `${n}.jsonl`)), "--html", page);
    expect(result.code, result.err).toBe(0);
    const lines = result.out.split("\n");
    const killedLast = lines.filter((l) => l.includes(leaders.primary)).at(-1);
    expect(killedLast).toMatch(new RegExp(`${leaders.primary}\\s+vanished, last seen as primary`));
    expect(lines.some((l) => new RegExp(`${leaders.backup}\\s+backup -> primary`).test(l))).toBe(true);
    expect(lines.some((l) => l.includes(leaders.backup) && l.includes("candidate -> primary"))).toBe(false);
    for (const name of [leaders.backup, follower]) {
      expect(lines.filter((l) => l.includes(name)).at(-1)).toMatch(/-> stopped/);
      expect(lines.some((l) => l.includes(name) && l.includes("vanished"))).toBe(false);
    }
    const html = readFileSync(page, "utf8");
    expect(html).toContain(`data-node="${leaders.primary}" data-role="vanished"`);

    // The same recordings, as a directory (what `local --inspect-dir DIR` leaves behind).
    const fromDir = await timeline(dir);
    expect(fromDir.code, fromDir.err).toBe(0);
    expect(fromDir.out).toBe(lines.slice(0, -1).join("\n"));
  });
});
