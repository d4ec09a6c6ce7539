import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { scrape, total } from "../../bench/scale/etcdMetrics.js";
import { ClusterLayout } from "../../src/config/index.js";
import { NodeFactory, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";

/** One grouping, one group of three: the cluster is full with three nodes. */
const FULL_AT_THREE = { ...SEED_CONFIG, groups: 1, group_size: 3, reads: 1 };
const KEYS = new ClusterLayout(FULL_AT_THREE).keys;
/** How long the waiting newcomer is watched; nothing changes in etcd meanwhile. */
const WATCHED_MS = 5_000;
/**
 * Reads etcd may serve in that window: the three members' view re-lists (once per TTL each) and a
 * waiting node's backed-off wakes come to about 50; the loop makes thousands.
 */
const MAX_READS_WHILE_WAITING = 200;

/**
 * A newcomer of a full cluster waits for an advertisement. It is woken by any key under the
 * advertisement prefix, including one it cannot claim (a stale advertisement "is harmless ... stays
 * until claimed"). Once the claim found nothing, `allocateFreshId` took a ticket (a put on `id_key`)
 * and the new view's first list woke it again at once: 426 and 615 tickets and 1,460 and 3,710 reads
 * in 5 s by one waiting node. Now a tried advertisement wakes it only after a backoff, and a full
 * high-water mark costs no ticket.
 */
describe("a newcomer waiting on a full cluster", () => {
  let etcd: EtcdCluster;
  let factory: NodeFactory;
  beforeEach(async () => {
    etcd = await startEtcd();
    factory = new NodeFactory({ endpoints: etcd.endpoints, config: FULL_AT_THREE, leaseTtlSeconds: 2 });
  });
  afterEach(async () => {
    await factory.stopAll();
    await etcd.stop();
  });

  const ticketsTaken = async () => Number((await etcd.client().get(KEYS.idKey).exec()).kvs[0]?.version ?? 0);
  /** Ranges and transactions: the views' lists go to etcd as read-only transactions. */
  const readsServed = async () => {
    const metrics = await scrape(etcd.endpoints[0] ?? "");
    return (
      total(metrics, "grpc_server_handled_total", { grpc_method: "Range" }) +
      total(metrics, "grpc_server_handled_total", { grpc_method: "Txn" })
    );
  };

  const unclaimable: [string, string, (live: number) => string][] = [
    [
      "an advertisement of a live member's slot",
      "",
      (live) => JSON.stringify({ id: live, group: 0, advertisedBy: live, token: 1 }),
    ],
    ["a key under the advertisement prefix that names no slot", "not-a-slot", () => "junk"],
  ];
  for (const [what, suffix, value] of unclaimable) {
    // Once a loop without backoff, taking a ticket (an etcd write) on every turn.
    test(`does not loop taking tickets while ${what} stays`, async () => {
      await factory.startMany(3);
      const live = 1;
      await etcd
        .client()
        .put(suffix ? `${KEYS.failoverPrefix}${suffix}` : KEYS.failoverKey(live))
        .value(value(live));
      const before = await ticketsTaken();
      const newcomer = factory.create("newcomer");
      newcomer.start().catch(() => undefined); // never identified: stopped in afterEach
      // It learns the cluster is full (from id_key, without a ticket once the mark is at the capacity).
      await sleep(1_000);
      const readsBefore = await readsServed();
      await sleep(WATCHED_MS);
      const reads = (await readsServed()) - readsBefore;
      const burnt = (await ticketsTaken()) - before;
      expect(newcomer.id).toBeUndefined();
      // Nothing changed after it found the cluster full: no ticket is worth taking.
      expect(burnt).toBeLessThanOrEqual(2);
      expect(reads).toBeLessThanOrEqual(MAX_READS_WHILE_WAITING);
    });
  }
});
