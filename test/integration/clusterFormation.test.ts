import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { crashNode } from "../../src/runtime/testing.js";
import { NodeFactory, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { leadershipSettled, leadersInEtcd, membersInEtcd } from "../support/invariants.js";
import { waitUntil } from "../support/waitUntil.js";

describe("cluster formation against a real etcd", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory | undefined;

  beforeEach(async () => {
    etcd = await startEtcd();
    client = etcd.client();
  });

  afterEach(async () => {
    await factory?.stopAll();
    factory = undefined;
    await etcd.stop();
  });

  test("the seed config with 30 nodes: one primary and one backup per grouping, full groups, IDs 0..29", async () => {
    factory = new NodeFactory({ endpoints: etcd.endpoints });
    const nodes = await factory.startMany(30);
    const f = factory;
    await waitUntil("every grouping to have a primary and a backup", () =>
      leadershipSettled(client, f.layout, nodes),
    );

    expect(nodes.map((n) => n.id).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(
      Array.from({ length: 30 }, (_, i) => i),
    );
    const leaders = await leadersInEtcd(client, factory.layout);
    expect(leaders).toHaveLength(4);
    for (const { grouping, primary, backup } of leaders) {
      expect(primary, `grouping ${grouping} primary`).toBeDefined();
      expect(backup, `grouping ${grouping} backup`).toBeDefined();
      expect(primary).not.toBe(backup);
      expect(factory.layout.groupingOfNode(primary ?? -1)).toBe(grouping);
      expect(factory.layout.groupingOfNode(backup ?? -1)).toBe(grouping);
    }
    const members = await membersInEtcd(client, factory.layout);
    for (const [group, ids] of members) expect(ids, `group ${group}`).toEqual(factory.layout.slotsOf(group));
    for (const node of nodes) expect(node.status.group).toBe(factory.layout.nodeGroup(node.id ?? -1));
  });

  test("50 nodes bootstrapping at once get 50 distinct IDs", async () => {
    factory = new NodeFactory({ endpoints: etcd.endpoints, config: { ...SEED_CONFIG, groups: 20 } });
    const nodes = await factory.startMany(50);
    const ids = nodes.map((n) => n.id);
    expect(new Set(ids).size).toBe(50);
    expect([...ids].sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(await client.get("id_key").string()).toBe("50");
  });

  test("a node started when every slot is taken waits, then takes a slot that fails", async () => {
    factory = new NodeFactory({ endpoints: etcd.endpoints, config: { ...SEED_CONFIG, groups: 1, reads: 1 } });
    const nodes = await factory.startMany(3);
    const f = factory;
    await waitUntil("a primary and a backup", () => leadershipSettled(client, f.layout, nodes));
    const late = factory.create("late");
    const joined = late.start();
    await waitUntil("the late node to wait for a slot", () => late.role === "bootstrapping");
    const follower = nodes.find((n) => n.role === "follower");
    expect(follower).toBeDefined();
    const lostId = follower?.id;
    crashNode(follower);
    const status = await joined;
    expect(status.id).toBe(lostId);
  });
});
