import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { crashNode } from "../../src/runtime/testing.js";
import {
  type NodeFactory,
  SEED_CONFIG,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { leadershipSettled, leadersInEtcd } from "../support/invariants.js";
import { waitUntil } from "../support/waitUntil.js";

/** Two groupings of two groups of two: a capacity of eight node IDs. */
const SMALL = { ...SEED_CONFIG, groups: 4, group_size: 2, reads: 2 };
const TTL_SECONDS = 2;

describe("every grouping gets its seats back", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory;

  beforeEach(async () => {
    ({ etcd, client, factory } = await startEtcdWithNodes({ config: SMALL, leaseTtlSeconds: TTL_SECONDS }));
  });

  afterEach(() => stopEtcdWithNodes({ etcd, factory }));

  test("a grouping whose members all died is refilled by newcomers in a full cluster", async () => {
    const nodes = await factory.startMany(8);
    await waitUntil("both groupings seated", () => leadershipSettled(client, factory.layout, nodes), 30_000);
    const grouping0 = nodes.filter((n) => n.status.grouping === 0);
    expect(grouping0.map((n) => n.id).sort()).toEqual([0, 1, 2, 3]);
    for (const node of grouping0) crashNode(node);

    // The cluster is full: newcomers can only take advertised slots, and no member of grouping 0
    // is left to advertise them.
    const newcomers = Array.from({ length: 4 }, (_, i) => factory.create(`newcomer-${i}`));
    await Promise.all(newcomers.map((n) => n.start()));
    expect(newcomers.map((n) => n.id).sort()).toEqual([0, 1, 2, 3]);
    const live = factory.live();
    await waitUntil("grouping 0 seated again", () => leadershipSettled(client, factory.layout, live), 30_000);
    const leaders = await leadersInEtcd(client, factory.layout);
    expect(newcomers.map((n) => n.id)).toContain(leaders[0]?.primary);
    expect(newcomers.map((n) => n.id)).toContain(leaders[0]?.backup);
    const memberKeys = await client.getAll().prefix(factory.layout.keys.allMembersPrefix).keys();
    expect(memberKeys).toHaveLength(8);
  }, 90_000);

  test("a poisoned primary key with no lease is removed by the grouping's other leader", async () => {
    const primaryKey = factory.layout.keys.leaderKey(0, 1);
    await client.put(primaryKey).value("{not json");
    const nodes = await factory.startMany(4);
    await waitUntil(
      "grouping 0 seated by nodes",
      () => leadershipSettled(client, factory.layout, nodes),
      30_000,
    );
    const leaders = await leadersInEtcd(client, factory.layout);
    expect(nodes.map((n) => n.id)).toContain(leaders[0]?.primary);
    expect(await client.get(primaryKey).string()).not.toBe("{not json");
  }, 90_000);

  test("a poisoned primary key kept alive by a lease is left to its lease", async () => {
    const primaryKey = factory.layout.keys.leaderKey(0, 1);
    const foreign = client.lease(TTL_SECONDS * 5);
    await foreign.put(primaryKey).value("{not json");
    const nodes = await factory.startMany(4);
    await waitUntil("a backup for grouping 0", () => client.get(factory.layout.keys.leaderKey(0, 2)).json());
    // Several re-read intervals: the key is reported, never deleted, while its lease lives.
    await new Promise((r) => setTimeout(r, TTL_SECONDS * 3 * 1000));
    expect(await client.get(primaryKey).string()).toBe("{not json");
    await foreign.revoke();
    await waitUntil(
      "grouping 0 seated once the lease is gone",
      () => leadershipSettled(client, factory.layout, nodes),
      30_000,
    );
  }, 90_000);

  test("a node whose member key is deleted under its live lease renews: one member key, under its new lease", async () => {
    const [node] = await factory.startMany(1);
    const before = node?.status;
    if (before?.id === undefined || before.leaseId === undefined) throw new Error("node did not join");
    await client.delete().key(factory.layout.keys.memberKey(before.group ?? 0, before.id));
    const after = await waitUntil("a new session with a member key", () => {
      const status = node?.status;
      return status?.leaseId !== before.leaseId && status?.id !== undefined ? status : undefined;
    });
    const members = await client.getAll().prefix(factory.layout.keys.allMembersPrefix).exec();
    expect(members.kvs.map((kv) => String(kv.lease))).toEqual([after.leaseId]);
  }, 60_000);
});
