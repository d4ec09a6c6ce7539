import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { ClusterLayout, ConfigError } from "../../src/config/index.js";
import { currentBootId } from "../../src/processLiveness.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { StateDirLockedError } from "../../src/runtime/stateDir.js";
import { crashNode } from "../../src/runtime/testing.js";
import { TestProcess } from "../../src/testing/testProcess.js";
import { CLI_BIN, cliEnv, ensureBuilt, runCli } from "../support/cli.js";
import {
  type EtcdWithNodes,
  ONE_GROUPING,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

const LAYOUT = new ClusterLayout(ONE_GROUPING);

describe("a node with a state directory", () => {
  let env: EtcdWithNodes;
  let dir: string;
  const logs = recordingLogger();
  beforeEach(async () => {
    logs.records.length = 0;
    dir = await mkdtemp(join(tmpdir(), "sticky-restart-"));
    env = await startEtcdWithNodes({ config: ONE_GROUPING, leaseTtlSeconds: 2, logger: logs.logger });
  });
  afterEach(async () => {
    await stopEtcdWithNodes(env);
    await rm(dir, { recursive: true, force: true });
  });

  /** A node of the factory's etcd keeping its ID in `dir`, stopped with the others at the end. */
  const withStateDir = (name: string): ClusterNode => {
    const node = createClusterNode({
      cluster: LAYOUT,
      settings: { ...env.factory.settings(name), stateDir: dir },
      logger: logs.logger,
    });
    env.factory.nodes.push(node);
    return node;
  };

  test("keeps its ID across a restart, written before start() resolves; the lock is held until stop", async () => {
    await env.factory.startMany(2);
    const first = withStateDir("kept");
    const joined = await first.start();
    expect(joined).toMatchObject({ id: 2, joinedVia: "fresh" });
    expect(joined.previousId).toBeUndefined();
    expect(await readFile(join(dir, "node-id"), "utf8")).toBe(`2 ${joined.leaseId} ${currentBootId()}\n`);

    expect(() => withStateDir("second")).toThrow(StateDirLockedError);
    expect(() => withStateDir("second")).toThrow(`${dir} is locked by process ${process.pid}`);

    // Slot 0 freed below it: a node that did not remember its ID would claim it (advertised) or a fresh one.
    await env.factory.nodes.find((n) => n.status.id === 0)?.stop();
    await first.stop();
    expect(await readdir(dir)).toEqual(["node-id"]);

    const restarted = await withStateDir("kept").start();
    expect(restarted).toMatchObject({
      id: 2,
      group: LAYOUT.nodeGroup(2),
      previousId: 2,
      joinedVia: "reclaimed",
    });
    expect(logs.records.some((r) => r.message === "took back the previous node ID" && r.id === 2)).toBe(true);
  }, 90_000);

  test("after a crash in this process, a new node on the directory revokes the crashed lease and keeps the ID", async () => {
    await env.factory.startMany(1);
    const crashed = withStateDir("crashing");
    expect((await crashed.start()).id).toBe(1);
    crashNode(crashed);
    const next = withStateDir("crashing");
    expect(await next.start({ timeoutMs: 30_000 })).toMatchObject({ id: 1, joinedVia: "reclaimed" });
    expect(
      logs.records.some((r) => r.message.startsWith("revoked the lease of this node's previous process")),
    ).toBe(true);
  }, 60_000);

  test("an ID file from another host or boot (a copied directory) never revokes the lease stored in it", async () => {
    const [live] = await env.factory.startMany(2);
    const liveId = live?.status.id ?? -1;
    const liveLease = live?.status.leaseId;
    // As if the directory were copied from the host where that node runs: its ID, its lease, another boot.
    await writeFile(join(dir, "node-id"), `${liveId} ${liveLease} 00000000-0000-4000-8000-000000000000\n`);
    const clone = await withStateDir("clone").start({ timeoutMs: 30_000 });
    expect(clone.id).not.toBe(liveId);
    expect(clone.previousId).toBe(liveId);
    const held = (await env.client.get(LAYOUT.keys.memberKey(LAYOUT.nodeGroup(liveId), liveId)).exec())
      .kvs[0];
    expect(String(held?.lease)).toBe(liveLease);
    expect(live?.status.id).toBe(liveId);
    expect(
      logs.records.some((r) => r.message.startsWith("revoked the lease of this node's previous process")),
    ).toBe(false);
  }, 60_000);

  test("an ID file that holds no node ID refuses the node, naming the file, and leaves no lock", async () => {
    await writeFile(join(dir, "node-id"), "x1\n");
    expect(() => withStateDir("garbled")).toThrow(ConfigError);
    expect(() => withStateDir("garbled")).toThrow(`${join(dir, "node-id")}: not a node ID`);
    expect(await readdir(dir)).toEqual(["node-id"]);
  });

  test("a stored ID outside the layout is not reclaimed: the node joins with another and says so", async () => {
    await writeFile(join(dir, "node-id"), `${LAYOUT.capacity + 990}\n`);
    const status = await withStateDir("moved").start({ timeoutMs: 30_000 });
    expect(status).toMatchObject({ id: 0, previousId: LAYOUT.capacity + 990, joinedVia: "fresh" });
    expect(logs.records.some((r) => r.message.startsWith("previous node ID is outside"))).toBe(true);
    expect((await readFile(join(dir, "node-id"), "utf8")).split(" ")[0]).toBe("0");
  }, 60_000);
});

describe("rdeebee-cluster node --state-dir", () => {
  let env: EtcdWithNodes;
  let dir: string;
  const spawned: TestProcess[] = [];
  beforeAll(ensureBuilt);
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "sticky-cli-"));
    env = await startEtcdWithNodes({ config: ONE_GROUPING });
  });
  afterEach(async () => {
    await Promise.all(spawned.splice(0).map((child) => child.stop()));
    await stopEtcdWithNodes(env);
    await rm(dir, { recursive: true, force: true });
  });

  const nodeArgs = (name: string) => [
    "node",
    "--etcd",
    env.etcd.endpoints.join(","),
    "--node",
    name,
    "--lease-ttl",
    "2",
    "--state-dir",
    dir,
  ];

  test("a second process on a locked directory exits 2 naming the directory and the holder's pid", async () => {
    const holder = new TestProcess(process.execPath, [CLI_BIN, ...nodeArgs("holder"), "--no-watchdog"], {
      env: cliEnv(),
    });
    spawned.push(holder);
    await waitUntil(
      "the first node a member",
      () => holder.lines.some((l) => l.message === "transition" && String(l.to).startsWith("member")),
      30_000,
    );
    const refused = runCli(nodeArgs("intruder"));
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(`--state-dir (STATE_DIR): state directory ${dir} is locked by process`);
    expect(refused.stderr).toContain(String(holder.pid));
    // serve has bound its HTTP port by then: it must close it and exit, not hang.
    const refusedServe = runCli(["serve", ...nodeArgs("intruder").slice(1), "--port", "0"]);
    expect(refusedServe.status).toBe(2);
    expect(refusedServe.stderr).toContain(`state directory ${dir} is locked by process ${holder.pid}`);
    expect((await readFile(join(dir, "node-id"), "utf8")).split(" ")[0]).toBe("0");
  }, 60_000);

  test("kill -9, then a new process on the same directory: the stale lock is taken over and the ID kept", async () => {
    await env.factory.startMany(1);
    const memberLine = (p: TestProcess) =>
      p.lines.find((l) => l.message === "transition" && l.joinedVia !== undefined);
    const first = new TestProcess(process.execPath, [CLI_BIN, ...nodeArgs("restarted"), "--no-watchdog"], {
      env: cliEnv(),
    });
    spawned.push(first);
    const joined = await waitUntil("the first process a member", () => memberLine(first), 30_000);
    expect(joined).toMatchObject({ id: 1, joinedVia: "fresh" });
    await first.kill9();
    // Its member key lives on under its lease (no watchdog): the new process revokes that lease.
    const oldKey = await env.client.get(LAYOUT.keys.memberKey(LAYOUT.nodeGroup(1), 1)).exec();
    expect(oldKey.kvs).toHaveLength(1);

    const second = new TestProcess(process.execPath, [CLI_BIN, ...nodeArgs("restarted"), "--no-watchdog"], {
      env: cliEnv(),
    });
    spawned.push(second);
    const rejoined = await waitUntil("the new process a member", () => memberLine(second), 30_000);
    expect(rejoined).toMatchObject({ id: 1, joinedVia: "reclaimed", previousId: 1 });
    expect(
      second.lines.some(
        (l) => l.message === "revoked the lease of this node's previous process, which is gone",
      ),
    ).toBe(true);
    const members = (await env.client.getAll().prefix(LAYOUT.keys.allMembersPrefix).exec()).kvs;
    expect(
      members.filter((kv) => kv.key.toString() === LAYOUT.keys.memberKey(LAYOUT.nodeGroup(1), 1)),
    ).toHaveLength(1);
    expect(String(oldKey.kvs[0]?.lease)).not.toBe(
      String(members.find((kv) => kv.key.toString().endsWith("/1"))?.lease),
    );
  }, 90_000);

  test("an ID file that holds no node ID exits 2 naming the file", async () => {
    await writeFile(join(dir, "node-id"), "{}");
    const refused = runCli(nodeArgs("garbled"));
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(`${join(dir, "node-id")}: not a node ID`);
  }, 60_000);
});
