import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";
import {
  type NodeFactory,
  ONE_GROUPING,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { leadershipSettled } from "../support/invariants.js";
import { type LogRecord, recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

describe("bad values found in etcd are logged and ignored", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory;
  let records: LogRecord[];
  let nodes: ClusterNode[];

  beforeEach(async () => {
    const recording = recordingLogger();
    records = recording.records;
    ({ etcd, client, factory } = await startEtcdWithNodes({
      config: ONE_GROUPING,
      logger: recording.logger,
    }));
    nodes = await factory.startMany(3);
    await waitUntil("a primary and a backup", () => leadershipSettled(client, factory.layout, nodes));
  });

  afterEach(() => stopEtcdWithNodes({ etcd, factory }));

  const logged = (message: string) => records.some((r) => r.message.startsWith(message));
  const allAlive = () => nodes.every((n) => n.role !== "stopped");

  test("a leader key that is not JSON is reported, and removed by the other leader when no lease keeps it", async () => {
    const backup = nodes.find((n) => n.role === "backup");
    // Every role it takes, not a poll: it may be backup again before a poll would see it follow.
    const backupRoles: string[] = [];
    const following = backup?.role$.subscribe((role) => backupRoles.push(role));
    const backupKey = factory.layout.keys.leaderKey(0, 2);
    await client.delete().key(backupKey);
    await client.put(backupKey).value("{not json");
    await waitUntil("the report", () => logged("poisoned leader key"));
    await waitUntil("the old backup to step down", () => backupRoles.includes("follower"));
    following?.unsubscribe();
    await waitUntil("a new backup once the primary removed the bad key", () =>
      leadershipSettled(client, factory.layout, nodes),
    );
    expect(await client.get(backupKey).string()).not.toBe("{not json");
    expect(allAlive()).toBe(true);
  });

  test("member keys with bad names or values are ignored by the leaders' views", async () => {
    await client.put(`${factory.layout.keys.membershipPrefix(0)}zzz`).value("{}");
    await client
      .put(factory.layout.keys.memberKey(1, 4))
      .value(JSON.stringify({ id: 999, name: "x", address: "h:1" }));
    await client.put(factory.layout.keys.memberKey(2, 7)).value("x".repeat(100_000));
    await waitUntil(
      "warnings for each",
      () => logged("ignoring member key outside its group's slots") && logged("ignoring bad member value"),
    );
    const primary = nodes.find((n) => n.role === "primary");
    // The view may not have caught up with the last node's registration yet; it must, and stay clean.
    const ids = await waitUntil("the primary's view of all three members", async () => {
      const members = primary && (await firstValue(primary));
      const ids = [...(members?.values() ?? [])].flat().map((m) => m.id);
      return ids.length === 3 && ids;
    });
    expect(ids).toEqual([0, 1, 2]);
    expect(allAlive()).toBe(true);
  });

  test("a failover advertisement with a bad key or for a slot never handed out is not claimed", async () => {
    await client.put(`${factory.layout.keys.failoverPrefix}banana`).value("1");
    await client.put(factory.layout.keys.failoverKey(8)).value("not json");
    const late = factory.create("late");
    const status = await late.start();
    expect(status.id).toBe(3);
    expect(logged("ignoring failover advertisement for a slot never handed out")).toBe(true);
  });

  test("a node ID counter that is not a number is logged and never blocks: the next ticket rewrites it, new nodes join", async () => {
    await client.put("id_key").value("banana");
    const late = factory.create("late");
    const status = await late.start();
    expect(logged("ignoring bad node ID counter")).toBe(true);
    // The garbage put used up a ticket (the key's version counts), so the late node's ID is past it.
    expect(status.id).toBe(4);
    expect(await client.get("id_key").string()).toMatch(/^\d+$/);
    expect(allAlive()).toBe(true);
  });
});

function firstValue(node: ClusterNode) {
  return new Promise<ReadonlyMap<number, readonly { id: number }[]>>((resolve) => {
    const sub = node.members$.subscribe((m) => {
      if (m.size > 0) {
        resolve(m);
        queueMicrotask(() => sub.unsubscribe());
      }
    });
  });
}
