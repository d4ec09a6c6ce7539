import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { firstValueFrom } from "rxjs";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { crashNode } from "../../src/runtime/testing.js";
import { createMetrics, type ServerMetrics } from "../../src/server/metrics.js";
import { NodeFactory, ONE_GROUPING } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";
import { waitUntil } from "../support/waitUntil.js";

/** Long enough that the stalled backup keeps its session through the stall. */
const TTL_SECONDS = 6;
/** How long the backup does not see the primary key go: the gap every other node should measure. */
const STALL_MS = 2_000;
/**
 * How far a node's measurement may be from the test's: both see the same two etcd events, each
 * through its own watch, so they differ by delivery delays, not by seconds. Generous for a loaded machine.
 */
const AGREEMENT_SECONDS = 0.5;

interface Histogram {
  sum: number;
  count: number;
}

/** `_sum` and `_count` of a histogram without labels, from the Prometheus text. */
function histogramOf(text: string, name: string): Histogram {
  const sample = (suffix: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}${suffix} `));
    return line === undefined ? Number.NaN : Number(line.split(" ")[1]);
  };
  return { sum: sample("_sum"), count: sample("_count") };
}

describe("failover metrics agree with the test's own view of the primary key", () => {
  const env = proxiedEtcdPerTest();
  let nodes: ClusterNode[];
  let metrics: ServerMetrics[];

  beforeEach(() => {
    nodes = [];
    metrics = [];
  });

  afterEach(async () => {
    env.proxy.setMode("pass");
    for (const m of metrics) m.close();
    await Promise.all(nodes.map((n) => n.stop().catch(() => crashNode(n))));
  });

  function started(name: string, endpoint: string): ClusterNode {
    const factory = new NodeFactory({
      endpoints: [endpoint],
      config: ONE_GROUPING,
      leaseTtlSeconds: TTL_SECONDS,
      keepaliveIntervalMs: 500,
    });
    const node = createClusterNode({
      cluster: factory.layout,
      settings: factory.settings(name),
      logger: silentLogger(),
    });
    nodes.push(node);
    metrics.push(createMetrics(node));
    return node;
  }

  test("a follower's fault-to-new-primary and primary-key-gap match the gap the test watched; the stalled backup's span starts only when it sees the key go", async () => {
    const endpoint = env.etcd.endpoints[0] ?? "";
    const primary = started("primary", endpoint);
    await primary.start();
    await waitUntil("the first node to be primary", () => primary.role === "primary");
    const backup = started("backup", env.proxy.endpoint);
    await backup.start();
    await waitUntil("the node behind the proxy to be backup", () => backup.role === "backup");
    const follower = started("follower", endpoint);
    await follower.start();
    const [, backupMetrics, followerMetrics] = metrics as [ServerMetrics, ServerMetrics, ServerMetrics];
    await waitUntil("the follower to see both leaders", async () => {
      const leaders = await firstValueFrom(follower.leaders$);
      return leaders?.primary?.record?.id === primary.id && leaders?.backup?.record?.id === backup.id;
    });

    const primaryKey = primary.layout.keys.leaderKey(0, 1);
    const seen: { deleted?: number; put?: number } = {};
    const watcher = await env.direct.watch().key(primaryKey).create();
    watcher.on("delete", () => {
      seen.deleted ??= performance.now();
    });
    watcher.on("put", () => {
      if (seen.deleted !== undefined) seen.put ??= performance.now();
    });
    let promotedAt: number | undefined;
    const promotion = backup.role$.subscribe((role) => {
      if (role === "primary") promotedAt ??= performance.now();
    });
    try {
      env.proxy.setMode("stall-downstream");
      await env.direct.leaseClient.leaseRevoke({ ID: primary.status.leaseId ?? "" });
      await waitUntil("the test to see the primary key deleted", () => seen.deleted !== undefined);
      await sleep(STALL_MS);
      const releasedAt = performance.now();
      env.proxy.setMode("pass");
      const promoted = await waitUntil("the backup to be promoted", () => promotedAt);
      const backupSpan = (promoted - releasedAt) / 1000;
      const put = await waitUntil("the test to see the new primary key", () => seen.put);
      const watchedGap = (put - (seen.deleted ?? put)) / 1000;

      const recorded = await waitUntil("the follower to record both spans", async () => {
        const text = await followerMetrics.text();
        const fault = histogramOf(text, "rdeebee_fault_to_new_primary_seconds");
        const gap = histogramOf(text, "rdeebee_primary_key_gap_seconds");
        return fault.count === 1 && gap.count === 1 && { fault: fault.sum, gap: gap.sum };
      });
      expect(
        Math.abs(recorded.gap - watchedGap),
        `gap ${recorded.gap} s, watched ${watchedGap} s`,
      ).toBeLessThan(AGREEMENT_SECONDS);
      expect(
        Math.abs(recorded.fault - watchedGap),
        `fault to new primary ${recorded.fault} s, watched ${watchedGap} s`,
      ).toBeLessThan(AGREEMENT_SECONDS);

      // The backup saw the key go only once the stall ended, and the new primary was itself.
      const backupFault = histogramOf(await backupMetrics.text(), "rdeebee_fault_to_new_primary_seconds");
      expect(backupFault.count).toBe(1);
      expect(
        Math.abs(backupFault.sum - backupSpan),
        `backup's fault to new primary ${backupFault.sum} s, release to its promotion ${backupSpan} s`,
      ).toBeLessThan(AGREEMENT_SECONDS);
    } finally {
      promotion.unsubscribe();
      await watcher.cancel();
    }
  });
});
