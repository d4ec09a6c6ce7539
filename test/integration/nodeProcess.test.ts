import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { CliProcess } from "../../src/cli/local/cliProcess.js";
import { freePort } from "../../src/cli/local/etcdMember.js";
import { ClusterLayout, loadClusterConfig } from "../../src/config/index.js";
import { type ClusterStatus, readClusterStatus } from "../../src/runtime/clusterStatus.js";
import { ensureBuilt, isProcessAlive, PACKAGE_ROOT, runCli } from "../support/cli.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

const CONFIG = join(PACKAGE_ROOT, "config.yaml");
const TTL_SECONDS = 2;
const layout = new ClusterLayout(loadClusterConfig(CONFIG));

interface NodeProcess {
  name: string;
  process: CliProcess;
  stderr: () => string;
}

const spawned = new Set<CliProcess>();

/**
 * These tests kill node processes to exercise failover by lease expiry, so the nodes run without
 * a lease watchdog (its fast path is tested in leaseWatchdog.test.ts).
 */
function startNode(endpoint: string, name: string): NodeProcess {
  let text = "";
  const args = [
    "node",
    "--etcd",
    endpoint,
    "--node",
    name,
    "--lease-ttl",
    String(TTL_SECONDS),
    "--no-watchdog",
  ];
  const child = new CliProcess([...args, "--config", CONFIG], {
    onLine: (_, raw) => {
      text += `${raw}\n`;
    },
  });
  spawned.add(child);
  return { name, process: child, stderr: () => text };
}

beforeAll(ensureBuilt);

afterEach(() => {
  for (const child of spawned) child.signal("SIGKILL");
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
    primary.process.signal("SIGKILL");
    expect(await primary.process.exited).toEqual({ code: null, signal: "SIGKILL" });

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
    expect(primary.stderr()).not.toContain('"message":"lease watchdog started"');
  });

  test("kill -9 of the primary's process: the promoted primary advertises the dead member's slot", async () => {
    const { status, primary } = await formed();
    const deadId = memberIdOf(status, primary.name);
    expect(deadId).toBeDefined();
    primary.process.signal("SIGKILL");
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
    follower?.process.signal("SIGKILL");
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
    backup.process.signal("SIGTERM");
    expect(await backup.process.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - sentAt).toBeLessThan(5_000);
    expect(await client.get(memberKey).string()).toBeNull();
    expect(backup.stderr()).toContain('"message":"node stopped"');
    expect(isProcessAlive(backup.process.pid)).toBe(false);
  });
});

describe("rdeebee-cluster node: bad input and an unreachable etcd", () => {
  test.each([
    ["--lease-ttl", "1", /--lease-ttl: lease TTL must be at least 2 s/],
    ["--refresh-interval", "9", /--refresh-interval: keepalive interval \(9 s\) must be below the lease TTL/],
    ["--etcd", "ftp://x", /--etcd: malformed endpoint "ftp:\/\/x"/],
  ])("%s %s exits 2 naming the flag", (flag, value, message) => {
    const r = runCli(["node", flag, value]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  test("an etcd nobody listens on exits 3 with 'cannot reach etcd'", async () => {
    const port = await freePort();
    const r = runCli(["node", "--etcd", `http://127.0.0.1:${port}`, "--lease-ttl", "2"]);
    expect(r.status).toBe(3);
    expect(r.stderr).toContain("cannot reach etcd");
    expect(r.stderr).toContain(`127.0.0.1:${port}`);
  });
});
