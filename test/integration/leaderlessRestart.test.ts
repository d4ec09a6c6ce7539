import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterStore } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { crashNode } from "../../src/runtime/testing.js";
import { NodeFactory, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

/** A cluster of one slot: its one node is its primary, and a newcomer finds it full while that node's lease lives. */
const ONE_SLOT = { ...SEED_CONFIG, groups: 1, group_size: 1, reads: 1, writes: 1 };

describe("a newcomer that found a full cluster whose leaders are dead", () => {
  let etcd: EtcdCluster;
  let factory: NodeFactory;

  beforeEach(async () => {
    etcd = await startEtcd();
    factory = new NodeFactory({ endpoints: etcd.endpoints, config: ONE_SLOT, leaseTtlSeconds: 2 });
  });

  afterEach(async () => {
    await factory.stopAll();
    await etcd.stop();
  });

  test("takes a slot once the dead leaders' leases expire, though nobody is left to advertise it", async () => {
    const [old] = await factory.startMany(1);
    if (old === undefined) throw new Error("no node");
    await waitUntil("the node to be primary", () => old.role === "primary");
    // A crash (no revoke, no watchdog): its member and leader keys live for another TTL.
    crashNode(old);
    const newcomer = factory.create("newcomer");
    const started = newcomer.start({ timeoutMs: 30_000 });
    await waitUntil("the newcomer to wait for an advertisement", () => newcomer.role === "bootstrapping");
    const client = etcd.client();
    const leaders = await client.getAll().prefix(factory.layout.keys.allLeadersPrefix).keys();
    expect(
      leaders.length,
      "the dead primary's key is still there when the newcomer starts waiting",
    ).toBeGreaterThan(0);
    client.close();

    const status = await started;
    expect(status.id).toBe(0);
    await waitUntil("the newcomer to lead", () => newcomer.role === "primary");
  });

  test("a leader key without a lease (poisoned, it never expires) does not count as a leader: the free slot is claimed", async () => {
    const client = etcd.client();
    const layout = factory.layout;
    await client.put(layout.keys.idKey).value(String(layout.capacity));
    await client.put(layout.keys.leaderKey(0, 1)).value("garbage");
    const lease = await client.lease(30, { autoKeepAlive: false }).grant();
    const store = new ClusterStore(client, layout, silentLogger(), { callTimeoutMs: 5_000 });
    const record = { name: "newcomer", address: "127.0.0.1:1" };
    expect(await store.allocateFreshId(record, lease)).toEqual({ kind: "allocated", id: 0 });

    // A leader key bound to a lease leads (its holder may be alive): the cluster stays full.
    await client.delete().key(layout.keys.memberKey(0, 0));
    await client.put(layout.keys.leaderKey(0, 2)).value("garbage").lease(lease);
    const other = await client.lease(30, { autoKeepAlive: false }).grant();
    expect(await store.allocateFreshId(record, other)).toEqual({ kind: "full" });
    client.close();
  });
});
