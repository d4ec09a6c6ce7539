import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { CLI_BIN, cliEnv, ensureBuilt, isProcessAlive, PACKAGE_ROOT, runCli } from "../support/cli.js";
import { waitUntil } from "../support/waitUntil.js";

const NODES = 3;
const ROW = /^│\s*(local-\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*\d+\s*│\s*(\w+)\s*│/;

interface Screen {
  nodePids: number[];
  roles: string[];
  etcdPid: number | undefined;
  dataDir: string | undefined;
}

/** The last complete screen `local` printed (it prints one per change when stdin is not a TTY). */
function lastScreen(output: string): Screen | undefined {
  const start = output.lastIndexOf("rdeebee-cluster local ·");
  const end = output.indexOf("stdin is not a terminal", start);
  if (start < 0 || end < 0) return undefined;
  const text = output.slice(start, end);
  const rows = text.split("\n").flatMap((line) => {
    const m = ROW.exec(line.trim());
    return m ? [{ pid: Number(m[2]), role: m[4] ?? "" }] : [];
  });
  return {
    nodePids: rows.map((r) => r.pid),
    roles: rows.map((r) => r.role),
    etcdPid: Number(/etcd http:\/\/\S+ \(pid (\d+)\)/.exec(text)?.[1]) || undefined,
    dataDir: /etcd data dir: (\S+)/.exec(text)?.[1],
  };
}

/** The pids of `parent`'s children whose command line contains `text`. */
function childPids(parent: number, text: string): number[] {
  const ps = spawnSync("ps", ["-eo", "pid=,ppid=,args="], { encoding: "utf8" }).stdout;
  return ps.split("\n").flatMap((line) => {
    const [pid, ppid, ...args] = line.trim().split(/\s+/);
    return Number(ppid) === parent && args.join(" ").includes(text) ? [Number(pid)] : [];
  });
}

describe("rdeebee-cluster local killed with SIGKILL", () => {
  let local: ChildProcess | undefined;
  let inspectDir: string | undefined;
  const started = { pids: new Set<number>(), dataDir: undefined as string | undefined };

  beforeAll(ensureBuilt);

  afterEach(() => {
    local?.kill("SIGKILL");
    for (const pid of started.pids) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
    if (started.dataDir) rmSync(started.dataDir, { recursive: true, force: true });
    if (inspectDir) rmSync(inspectDir, { recursive: true, force: true });
  });

  test("leaves no node, no etcd, no reaper and no temporary directory behind; its recordings feed timeline", async () => {
    inspectDir = mkdtempSync(join(tmpdir(), "rdeebee-local-inspect-"));
    const args = ["local", "--nodes", String(NODES), "--lease-ttl", "2", "--inspect-dir", inspectDir];
    local = spawn(process.execPath, [CLI_BIN, ...args], {
      cwd: PACKAGE_ROOT,
      env: cliEnv({ NO_COLOR: "1" }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    local.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
    });
    const localPid = local.pid as number;

    const formed = await waitUntil(
      "every node with an ID, a primary and a backup",
      () => {
        const s = lastScreen(output);
        return s &&
          s.nodePids.length === NODES &&
          s.etcdPid &&
          s.roles.includes("primary") &&
          s.roles.includes("backup")
          ? s
          : undefined;
      },
      60_000,
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nlocal printed:\n${output.slice(-4_000)}`);
    });
    const reaperPids = childPids(localPid, "reaper.js");
    expect(reaperPids).toHaveLength(1);
    const pids = [...formed.nodePids, formed.etcdPid as number, ...reaperPids];
    for (const pid of pids) started.pids.add(pid);
    started.dataDir = formed.dataDir;
    expect(formed.dataDir).toMatch(/rdeebee-local-/);
    expect(existsSync(formed.dataDir ?? "")).toBe(true);
    for (const pid of pids) expect(isProcessAlive(pid), `pid ${pid}`).toBe(true);

    local.kill("SIGKILL");
    await waitUntil(
      "the nodes, the etcd and the reaper gone, and the data dir removed",
      () => pids.every((pid) => !isProcessAlive(pid)) && !existsSync(formed.dataDir ?? ""),
      60_000,
      100,
    ).catch((err: Error) => {
      const alive = pids.filter(isProcessAlive);
      throw new Error(
        `${err.message}; alive: ${alive.join(", ") || "none"}; dir kept: ${existsSync(formed.dataDir ?? "")}`,
      );
    });

    const recordings = readdirSync(inspectDir).sort();
    expect(recordings).toEqual(["local-1.jsonl", "local-2.jsonl", "local-3.jsonl"]);
    const timeline = runCli(["timeline", ...recordings.map((file) => join(inspectDir as string, file))]);
    expect(timeline.status, timeline.stderr).toBe(0);
    expect(timeline.stdout).toMatch(/local-\d.*primary/);
    expect(timeline.stdout).toMatch(/local-\d.*backup/);
  }, 180_000);
});
