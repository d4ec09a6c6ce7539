import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterStore } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { crashNode } from "../../src/runtime/testing.js";
import { NodeFactory, ONE_SLOT } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

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

  test("a poisoned leader key (no lease, it never expires) does not keep a cluster whose every member died from forming again", async () => {
    const [old] = await factory.startMany(1);
    if (old === undefined) throw new Error("no node");
    await waitUntil("the node to be primary", () => old.role === "primary");
    const client = etcd.client();
    // Garbage in the backup seat, without a lease (as `status` reports a poisoned leader key).
    await client.put(factory.layout.keys.leaderKey(0, 2)).value("not a node record");
    crashNode(old);
    const newcomer = factory.create("newcomer");
    const started = newcomer.start({ timeoutMs: 30_000 });
    await waitUntil("the dead node's member key to expire", async () => {
      const members = await client.getAll().prefix(factory.layout.keys.allMembersPrefix).keys();
      return members.length === 0;
    });
    client.close();
    expect((await started).id).toBe(0);
  }, 60_000);

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
