import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { silentLogger } from "../../src/logging.js";
import { createClusterNode } from "../../src/runtime/clusterNode.js";
import type { HistoryRecord } from "../../src/runtime/history.js";
import { NodeFactory, ONE_GROUPING } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { leadersInEtcd } from "../support/invariants.js";
import { waitUntil } from "../support/waitUntil.js";

describe("campaign turns: a grouping's seats are filled by about one campaign each", () => {
  let etcd: EtcdCluster;
  let factory: NodeFactory;
  let records: HistoryRecord[];

  beforeEach(async () => {
    etcd = await startEtcd();
    records = [];
    factory = new NodeFactory({
      endpoints: etcd.endpoints,
      config: ONE_GROUPING,
      history: (r) => records.push(r),
    });
  });

  afterEach(async () => {
    await factory.stopAll();
    await etcd.stop();
  });

  const campaigns = () => records.filter((r) => r.kind === "leader" && r.action === "campaign");

  test("nine nodes started at once seat a primary and a backup with a few campaigns, not one per node per seat", async () => {
    const nodes = await factory.startMany(9);
    const client = etcd.client();
    await waitUntil("both seats held", async () => {
      const [grouping] = await leadersInEtcd(client, factory.layout);
      return grouping?.primary !== undefined && grouping.backup !== undefined;
    });
    await waitUntil("every node in a role", () =>
      nodes.every((n) => ["primary", "backup", "follower"].includes(n.role)),
    );
    const sent = campaigns();
    // Without turns every member that sees a seat vacant runs for it: 17 or more for two seats.
    expect(sent.length, JSON.stringify(sent.map((r) => r.node))).toBeLessThanOrEqual(6);
    expect(sent.filter((r) => r.kind === "leader" && r.outcome === "ok")).toHaveLength(2);
    client.close();
  });

  test("members of lower ID that never run do not keep the seats empty: the next ones run after their turn", async () => {
    // Three member keys of the lowest IDs under a live lease of a process that is no node.
    const client = etcd.client();
    const lease = client.lease(30, { autoKeepAlive: true });
    const leaseId = await lease.grant();
    for (const id of [0, 1, 2]) {
      await client
        .put(factory.layout.keys.memberKey(factory.layout.nodeGroup(id), id))
        .value(JSON.stringify({ id, name: `ghost-${id}`, address: "127.0.0.1:1" }))
        .lease(leaseId)
        .exec();
    }
    for (let i = 0; i < 3; i++) await client.put(factory.layout.keys.idKey).value("3");
    const node = createClusterNode({
      cluster: factory.layout,
      settings: factory.settings("late"),
      logger: silentLogger(),
      history: (r) => records.push(r),
    });
    factory.nodes.push(node);
    await node.start();
    expect(node.id).toBeGreaterThanOrEqual(3);
    await waitUntil("the node to take the primary seat", () => node.role === "primary");
    await lease.revoke();
    client.close();
  });
});
