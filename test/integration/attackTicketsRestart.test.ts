import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { crashNode } from "../../src/runtime/testing.js";
import { NodeFactory, SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

/** One grouping, one group of three: the cluster is full with three nodes. */
const FULL_AT_THREE = { ...SEED_CONFIG, groups: 1, group_size: 3, reads: 1 };
const KEYS = new ClusterLayout(FULL_AT_THREE).keys;
/** Generous: three nodes form in well under a second on an idle machine. */
const FORM_WAIT_MS = 20_000;

/**
 * A whole-cluster restart of a full cluster (every process gone, every lease expired, `id_key` at
 * the capacity): every new node's ticket is at or beyond the capacity, and only a primary
 * advertises free slots, which needs a member. Without its own way out nobody would ever join
 * (a node with a state directory reclaims its stored ID; one without never would): a full cluster
 * with no leader key lets newcomers claim free slots directly.
 */
describe("whole-cluster restart at capacity", () => {
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

  test("new nodes form the cluster again once every member's lease expired", async () => {
    const first = await factory.startMany(3);
    for (const node of first) crashNode(node);
    await waitUntil(
      "every member key to expire with its lease",
      async () => (await etcd.client().getAll().prefix(KEYS.allMembersPrefix).keys()).length === 0,
      FORM_WAIT_MS,
    );
    const again = Array.from({ length: 3 }, (_, i) => factory.create(`restarted-${i}`));
    for (const node of again) node.start().catch(() => undefined); // stopped in afterEach if stuck
    await waitUntil(
      "the restarted nodes to hold IDs",
      () => again.every((n) => n.id !== undefined),
      FORM_WAIT_MS,
    );
    expect(again.map((n) => n.id).sort()).toEqual([0, 1, 2]);
  });
});
