import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";
import { crashNode } from "../../src/runtime/testing.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";
import { ModelCluster, TTL_SECONDS } from "./clusterHarness.js";
import type { ClusterModelEvent } from "./clusterModel.js";
import { clusterModelPaths, type ModelPath } from "./clusterPaths.js";

const SETTLE_MS = TTL_SECONDS * 1000 * 10;

/**
 * Runs every generated path of the cluster model against real nodes and a real three-member etcd,
 * checking after every step: one primary and one backup on different nodes (in etcd and in the
 * nodes' own roles), the primary the model expects, unique IDs, and every missing slot advertised.
 * A monitor checks the safety rules continuously, between steps too.
 */
describe("cluster failover paths from the model, against real etcd and real nodes", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let cluster: ModelCluster;
  let stopWatching: () => Promise<void>;
  let downMember: number | undefined;

  beforeEach(async () => {
    etcd = await startEtcd({ members: 3 });
    client = etcd.client();
    cluster = new ModelCluster(etcd, client);
    stopWatching = await cluster.watchLeaderKeys();
    downMember = undefined;
  });

  afterEach(async () => {
    await stopWatching();
    await cluster.close();
    await etcd.stop();
  });

  /** Waits until the cluster matches the model: size, both seats held (in etcd and in roles), the expected primary. */
  async function settled(
    expected: ModelPath["expected"][number],
    formerPrimary?: ClusterNode,
    formerBackup?: ClusterNode,
  ) {
    const expectedPrimary =
      expected.primaryAfter === "formerBackup"
        ? formerBackup
        : formerPrimary && formerPrimary.role !== "stopped"
          ? formerPrimary
          : undefined;
    // A node may suspend for a moment while etcd elects a new leader; roles must come back as expected.
    await waitUntil(
      `${expected.live} live nodes, one primary (${expectedPrimary?.status.name ?? "any"}) and one backup`,
      async () => {
        const live = cluster.live().filter((n) => n.id !== undefined);
        const primary = cluster.holder("primary");
        const backup = cluster.holder("backup");
        if (live.length !== expected.live || !primary || !backup) return false;
        if (expectedPrimary && primary !== expectedPrimary) return false;
        const seats = (await cluster.status()).groupings[0];
        return seats?.primary?.id === primary.id && seats?.backup?.id === backup.id && primary !== backup;
      },
      SETTLE_MS,
    );

    await waitUntil(
      "every missing slot to be advertised",
      async () => {
        const status = await cluster.status();
        const advertised = new Set(status.advertised.map((a) => a.id));
        return status.groups.every((g) => g.missing.every((id) => advertised.has(id)));
      },
      SETTLE_MS,
    );
  }

  async function apply(
    event: ClusterModelEvent["type"],
    primary: ClusterNode,
    backup: ClusterNode,
  ): Promise<void> {
    switch (event) {
      case "PRIMARY_CRASHES":
        crashNode(primary);
        return;
      case "BACKUP_CRASHES":
        crashNode(backup);
        return;
      case "PRIMARY_STOPS":
        await primary.stop();
        return;
      case "PRIMARY_PAUSES_PAST_TTL": {
        const proxies = cluster.proxiesOf(primary);
        for (const p of proxies) p.setMode("blackhole");
        await waitUntil("the paused primary to suspend", () => primary.role === "suspended", SETTLE_MS);
        await waitUntil("the backup to take over", () => backup.role === "primary", SETTLE_MS);
        await sleep(TTL_SECONDS * 500);
        for (const p of proxies) {
          p.setMode("reset");
          p.setMode("pass");
        }
        return;
      }
      case "NEW_NODE_JOINS":
        await cluster.addNode();
        return;
      case "ETCD_MEMBER_DIES":
        downMember = await etcd.leaderIndex();
        await etcd.members[downMember]?.kill();
        return;
      case "ETCD_MEMBER_RESTARTS":
        if (downMember !== undefined) await etcd.members[downMember]?.restart();
        downMember = undefined;
        return;
    }
  }

  for (const path of clusterModelPaths()) {
    test(path.name, async () => {
      for (let i = 0; i < 3; i++) await cluster.addNode();
      await settled({ live: 3, etcdDown: 0, primaryAfter: "unchanged" });

      for (const [index, event] of path.events.entries()) {
        // A node may still be suspended for a moment after the last step (etcd elects a leader).
        const [primary, backup] = await waitUntil(
          "a primary and a backup before the step",
          () => {
            const p = cluster.holder("primary");
            const b = cluster.holder("backup");
            return p && b && ([p, b] as const);
          },
          SETTLE_MS,
        );
        await apply(event, primary, backup);
        const expected = path.expected[index];
        if (!expected) throw new Error("model gave no expectation");
        await settled(expected, primary, backup);
        expect(cluster.violations, `after ${event}`).toEqual([]);
      }
    });
  }
});
