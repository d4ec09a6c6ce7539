import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { freePort } from "../../src/cli/local/etcdMember.js";
import { ClusterLayout, loadClusterConfig, NODE_SETTINGS_ENV } from "../../src/config/index.js";
import { type ClusterStatus, readClusterStatus } from "../../src/runtime/clusterStatus.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin", "rdeebee-cluster.js");
const CONFIG = join(ROOT, "config.yaml");
const TTL_SECONDS = 2;
const layout = new ClusterLayout(loadClusterConfig(CONFIG));

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of [...Object.values(NODE_SETTINGS_ENV), "LOG_LEVEL"]) delete env[name];
  return env;
}

interface NodeProcess {
  name: string;
  child: ChildProcess;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const spawned = new Set<ChildProcess>();

function startNode(endpoint: string, name: string): NodeProcess {
  const args = [BIN, "node", "--etcd", endpoint, "--node", name, "--lease-ttl", String(TTL_SECONDS)];
  const child = spawn(process.execPath, [...args, "--config", CONFIG], {
    cwd: ROOT,
    env: cleanEnv(),
    stdio: ["ignore", "ignore", "pipe"],
  });
  spawned.add(child);
  let text = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    text += chunk;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return { name, child, stderr: () => text, exit };
}

function cli(...args: string[]) {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 30_000,
    env: cleanEnv(),
  });
  if (result.error) throw result.error;
  return result;
}

function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist", "src", "cli", "main.js"))) {
    const build = spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, encoding: "utf8" });
    if (!existsSync(join(ROOT, "dist", "src", "cli", "main.js")))
      throw new Error(`build failed:\n${build.stdout}${build.stderr}`);
  }
});

afterEach(() => {
  for (const child of spawned) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, "SIGKILL");
    }
  }
  spawned.clear();
});

describe("rdeebee-cluster node processes against a real etcd", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let nodes: NodeProcess[];

  beforeEach(async () => {
    etcd = await startEtcd({ name: "node-process" });
    client = etcd.client();
    nodes = ["p-1", "p-2", "p-3"].map((name) => startNode(etcd.endpoints[0] ?? "", name));
  });

  afterEach(async () => {
    await etcd.stop();
  });

  const byName = (name: string | undefined) => nodes.find((n) => n.name === name);

  /** Waits until grouping 0 has a primary and a backup and all three nodes are members. */
  async function formed(): Promise<{ status: ClusterStatus; primary: NodeProcess; backup: NodeProcess }> {
    const status = await waitUntil("a primary, a backup and three members", async () => {
      const s = await readClusterStatus(client, layout);
      const g = s.groupings[0];
      const members = s.groups.flatMap((group) => group.members).length;
      return g?.primary?.name && g.backup?.name && members === 3 ? s : undefined;
    });
    const primary = byName(status.groupings[0]?.primary?.name);
    const backup = byName(status.groupings[0]?.backup?.name);
    if (!primary || !backup) throw new Error("leaders are not among the spawned nodes");
    return { status, primary, backup };
  }

  /** Like waitUntil, but a timeout also shows the cluster as etcd sees it and each node's last log lines. */
  async function waitFor<T>(
    what: string,
    check: () => Promise<T | undefined>,
    timeoutMs: number,
  ): Promise<T> {
    try {
      return await waitUntil(what, check, timeoutMs);
    } catch (err) {
      const status = await readClusterStatus(client, layout).then(JSON.stringify, String);
      const logs = nodes.map((n) => `--- ${n.name}\n${n.stderr().trim().split("\n").slice(-8).join("\n")}`);
      throw new Error([String(err), `status: ${status}`, ...logs].join("\n"));
    }
  }

  const memberIdOf = (status: ClusterStatus, name: string) =>
    status.groups.flatMap((g) => g.members).find((m) => m.name === name)?.id;

  test("kill -9 of the primary's process: the backup becomes primary and a new backup is elected", async () => {
    const { primary, backup } = await formed();
    process.kill(primary.child.pid ?? -1, "SIGKILL");
    expect(await primary.exit).toEqual({ code: null, signal: "SIGKILL" });

    const after = await waitFor(
      "the backup promoted and the third node elected backup",
      async () => {
        const s = await readClusterStatus(client, layout);
        const g = s.groupings[0];
        return g?.primary?.name === backup.name && g.backup?.name && g.backup.name !== primary.name
          ? s
          : undefined;
      },
      TTL_SECONDS * 15_000,
    );
    const third = nodes.find((n) => n !== primary && n !== backup);
    expect(after.groupings[0]?.backup?.name).toBe(third?.name);
    expect(backup.stderr()).toMatch(/"message":"transition".*"role":"primary"/);
  });

  test("kill -9 of the primary's process: the promoted primary advertises the dead member's slot", async () => {
    const { status, primary } = await formed();
    const deadId = memberIdOf(status, primary.name);
    expect(deadId).toBeDefined();
    process.kill(primary.child.pid ?? -1, "SIGKILL");
    const ad = await waitFor(
      `the crashed primary's slot ${deadId} under failover_id/`,
      async () => (await client.get(layout.keys.failoverKey(deadId ?? -1)).json()) ?? undefined,
      TTL_SECONDS * 15_000,
    );
    expect(ad).toMatchObject({ id: deadId, group: layout.nodeGroup(deadId ?? 0) });
  });

  test("kill -9 of a follower's process: the primary advertises its slot", async () => {
    const { status, primary, backup } = await formed();
    const follower = nodes.find((n) => n !== primary && n !== backup);
    const deadId = memberIdOf(status, follower?.name ?? "");
    process.kill(follower?.child.pid ?? -1, "SIGKILL");
    const ad = await waitFor(
      `the follower's slot ${deadId} under failover_id/`,
      async () => (await client.get(layout.keys.failoverKey(deadId ?? -1)).json()) ?? undefined,
      TTL_SECONDS * 15_000,
    );
    expect(ad).toMatchObject({ id: deadId, group: layout.nodeGroup(deadId ?? 0) });
  });

  test("SIGTERM: the node leaves gracefully, exits 0 within a few seconds, and its member key is gone", async () => {
    const { status, backup } = await formed();
    const id = memberIdOf(status, backup.name) ?? -1;
    const memberKey = layout.keys.memberKey(layout.nodeGroup(id), id);
    expect(await client.get(memberKey).string()).not.toBeNull();

    const sentAt = Date.now();
    process.kill(backup.child.pid ?? -1, "SIGTERM");
    expect(await backup.exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - sentAt).toBeLessThan(5_000);
    expect(await client.get(memberKey).string()).toBeNull();
    expect(backup.stderr()).toContain('"message":"node stopped"');
    expect(isAlive(backup.child.pid)).toBe(false);
  });
});

describe("rdeebee-cluster node: bad input and an unreachable etcd", () => {
  test.each([
    ["--lease-ttl", "1", /--lease-ttl: lease TTL must be at least 2 s/],
    ["--refresh-interval", "9", /--refresh-interval: keepalive interval \(9 s\) must be below the lease TTL/],
    ["--etcd", "ftp://x", /--etcd: malformed endpoint "ftp:\/\/x"/],
  ])("%s %s exits 2 naming the flag", (flag, value, message) => {
    const r = cli("node", flag, value);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  test("an etcd nobody listens on exits 3 with 'cannot reach etcd'", async () => {
    const port = await freePort();
    const r = cli("node", "--etcd", `http://127.0.0.1:${port}`, "--lease-ttl", "2");
    expect(r.status).toBe(3);
    expect(r.stderr).toContain("cannot reach etcd");
    expect(r.stderr).toContain(`127.0.0.1:${port}`);
  });
});
