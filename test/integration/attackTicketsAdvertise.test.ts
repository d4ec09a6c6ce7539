import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { ClusterStore, connectEtcd } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { crashNode } from "../../src/runtime/testing.js";
import { NodeFactory, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

/** One grouping, one group of three: the cluster is full with three nodes. */
const FULL_AT_THREE = { ...SEED_CONFIG, groups: 1, group_size: 3, reads: 1 };
const LAYOUT = new ClusterLayout(FULL_AT_THREE);
const KEYS = LAYOUT.keys;
/** Generous: a slot is advertised within milliseconds of the member key's deletion (TTL 2 s). */
const REFILL_WAIT_MS = 20_000;

/**
 * The primaries advertise failed slots below the ID high-water mark. Under tickets that mark is
 * `id_key`'s version, but the prefix view's entries carry no version (`KeyEntry` has none), so
 * `GroupingViews.missingSlots$` computes a high-water mark of 0 and advertises nothing: a failed
 * slot is never offered again, and a full cluster never replaces a dead member.
 */
describe("failed slots under tickets are advertised and refilled", () => {
  let etcd: EtcdCluster;
  let factory: NodeFactory;
  let proxy: TcpProxy | undefined;
  beforeEach(async () => {
    etcd = await startEtcd();
    factory = new NodeFactory({ endpoints: etcd.endpoints, config: FULL_AT_THREE, leaseTtlSeconds: 2 });
  });
  afterEach(async () => {
    await factory.stopAll();
    await proxy?.close();
    proxy = undefined;
    await etcd.stop();
  });

  const memberIds = async () =>
    (await etcd.client().getAll().prefix(KEYS.allMembersPrefix).keys())
      .map((k) => Number(k.split("/").pop()))
      .sort((a, b) => a - b);

  // BUG (critical): missingSlots$ reads id_key's version from the prefix view, which has none
  // (groupingViews.ts versionOf → 0), so no slot is ever advertised and the newcomer waits for ever.
  test.fails("a full cluster replaces a crashed member: its slot is advertised and a newcomer claims it", async () => {
    const [a, b, c] = await factory.startMany(3);
    await waitUntil("a primary", () => factory.live().some((n) => n.role === "primary"));
    const victim = [a, b, c].find((n) => n?.role !== "primary" && n?.role !== "backup") ?? c;
    const lostId = victim?.id;
    crashNode(victim);
    const newcomer = factory.create("newcomer");
    const started = newcomer.start();
    started.catch(() => undefined); // rejected by the stop in afterEach when the slot never comes
    await waitUntil(
      "the newcomer to hold the crashed member's slot",
      () => newcomer.id === lostId,
      REFILL_WAIT_MS,
    );
    await started;
    expect(await memberIds()).toEqual([0, 1, 2]);
  });

  // BUG (critical, same cause): a ticket whose reply was lost is burnt, as takeTicket's comment
  // says, "a gap that the primaries advertise as a failed slot and a later node fills"; nobody
  // advertises it, so in a full cluster the gap stays empty and a newcomer waits for ever.
  test.fails("a ticket whose reply was lost leaves a gap that is advertised and filled", async () => {
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    const client = connectEtcd([proxy.endpoint]);
    try {
      const lease = String(await etcd.client().lease(60, { autoKeepAlive: false }).grant());
      const store = new ClusterStore(client, LAYOUT, silentLogger(), { callTimeoutMs: 2_000 });
      proxy.setMode("drop-reply", { match: KEYS.idKey });
      await expect(
        store.allocateFreshId({ name: "unlucky", address: "127.0.0.1:1" }, lease),
      ).rejects.toThrow();
      expect(proxy.repliesDropped).toBe(1);
      // etcd applied the put: ticket 0 is burnt and slot 0 has no member.
      const counter = (await etcd.client().get(KEYS.idKey).exec()).kvs[0];
      expect(Number(counter?.version)).toBe(1);
      await etcd.client().leaseClient.leaseRevoke({ ID: lease });
    } finally {
      client.close();
    }
    await factory.startMany(2); // tickets 1 and 2: the cluster is full, slot 0 is the gap
    expect(await memberIds()).toEqual([1, 2]);
    const newcomer = factory.create("newcomer");
    const started = newcomer.start();
    started.catch(() => undefined); // rejected by the stop in afterEach when the slot never comes
    await waitUntil("the newcomer to fill the gap", () => newcomer.id === 0, REFILL_WAIT_MS);
    await started;
    expect(await memberIds()).toEqual([0, 1, 2]);
  });
});
