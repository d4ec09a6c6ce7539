import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterStore, FenceLostError, type FencingToken } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode, NotPrimaryError } from "../../src/runtime/clusterNode.js";
import type { HistoryRecord } from "../../src/runtime/history.js";
import { crashNode } from "../../src/runtime/testing.js";
import {
  type NodeFactory,
  ONE_GROUPING,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { crashFollowerUntilAdvertised, leadershipSettled, leadersInEtcd } from "../support/invariants.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

const TTL_SECONDS = 2;

const monoNow = () => process.hrtime.bigint();
const monoOf = (r: HistoryRecord) => BigInt(r.mono);
/** The node acted as primary: it tried a promotion, or its role was primary. */
const actsAsPrimary = (r: HistoryRecord) =>
  (r.kind === "leader" && r.action === "promote") || (r.kind === "transition" && r.role === "primary");

describe("failover against a real etcd", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory;

  beforeEach(async () => {
    ({ etcd, client, factory } = await startEtcdWithNodes({
      config: ONE_GROUPING,
      leaseTtlSeconds: TTL_SECONDS,
    }));
  });

  afterEach(() => stopEtcdWithNodes({ etcd, factory }));

  async function formed(
    n: number,
  ): Promise<{ nodes: ClusterNode[]; primary: ClusterNode; backup: ClusterNode }> {
    const nodes = await factory.startMany(n);
    await waitUntil("a primary and a backup", () => leadershipSettled(client, factory.layout, nodes));
    const primary = nodes.find((x) => x.role === "primary");
    const backup = nodes.find((x) => x.role === "backup");
    if (!primary || !backup) throw new Error("no leaders");
    return { nodes, primary, backup };
  }

  test("graceful stop of the primary: the backup is primary and a new backup is elected", async () => {
    const { nodes, primary, backup } = await formed(6);
    const primaryId = primary.id;
    await primary.stop();
    await waitUntil("the backup to become primary", () => backup.role === "primary");
    await waitUntil("a new backup", () => leadershipSettled(client, factory.layout, nodes));
    const [leaders] = await leadersInEtcd(client, factory.layout);
    expect(leaders?.primary).toBe(backup.id);
    expect(leaders?.backup).not.toBe(backup.id);
    expect(leaders?.backup).not.toBe(primaryId);
    // The stopped primary left nothing behind: no member key, no leader key, no lease.
    expect(await client.get(factory.layout.keys.memberKey(0, primaryId ?? -1)).string()).toBeNull();
    expect((await client.getAll().prefix("leader-").keys()).length).toBe(2);
  });

  /** Nodes that record their history, started one after the other so that the first is primary. */
  async function recordedLeaders(
    n: number,
    endpointsOf: (index: number) => string[] = () => etcd.endpoints,
  ): Promise<{ nodes: ClusterNode[]; histories: HistoryRecord[][] }> {
    const histories: HistoryRecord[][] = [];
    const nodes: ClusterNode[] = [];
    for (let i = 0; i < n; i++) {
      const records: HistoryRecord[] = [];
      const node = createClusterNode({
        cluster: factory.layout,
        settings: { ...factory.settings(`recorded-${i}`), etcdEndpoints: endpointsOf(i) },
        logger: silentLogger(),
        history: (record) => records.push(record),
      });
      factory.nodes.push(node);
      histories.push(records);
      nodes.push(node);
      await node.start();
      if (i === 0) await waitUntil("the first node to be primary", () => node.role === "primary");
    }
    await waitUntil("a primary and a backup", () => leadershipSettled(client, factory.layout, nodes));
    expect(nodes[0]?.role).toBe("primary");
    return { nodes, histories };
  }

  /** Revision and local time at which etcd's deletion of the primary key was seen. */
  async function watchPrimaryDeletion(): Promise<() => { revision: number; seenAt: bigint } | undefined> {
    let deletion: { revision: number; seenAt: bigint } | undefined;
    const watcher = await client.watch().key(factory.layout.keys.leaderKey(0, 1)).create();
    watcher.on("delete", (kv) => {
      deletion ??= { revision: Number(kv.mod_revision), seenAt: monoNow() };
      void watcher.cancel();
    });
    return () => deletion;
  }

  /** The successful promotion in `history`; it must come after the primary key's deletion in etcd. */
  function promotionAfter(history: HistoryRecord[], deletionRevision: number) {
    const promotions = history.filter((r) => r.kind === "leader" && r.action === "promote");
    expect(promotions, "one promotion, and it won").toMatchObject([{ outcome: "ok" }]);
    const [promotion] = promotions;
    if (promotion?.kind !== "leader") throw new Error("no promotion");
    expect(promotion.revision, "promoted while the old primary key still existed").toBeGreaterThan(
      deletionRevision,
    );
    const becamePrimary = history.find((r) => r.kind === "transition" && r.role === "primary");
    expect(becamePrimary && monoOf(becamePrimary)).toBeGreaterThanOrEqual(monoOf(promotion));
    return { promotion, becamePrimary };
  }

  test("crash of the primary: the backup acts as primary only after the old primary key is gone, then a new backup", async () => {
    const { nodes, histories } = await recordedLeaders(6);
    const [old] = nodes;
    const backupIndex = nodes.findIndex((n) => n.role === "backup");
    const backup = nodes[backupIndex];
    const deletion = await watchPrimaryDeletion();
    const crashedAt = monoNow();
    crashNode(old);
    await waitUntil("the backup to become primary", () => backup?.role === "primary", TTL_SECONDS * 10_000);
    await waitUntil("a new backup", () => leadershipSettled(client, factory.layout, nodes));
    const deleted = await waitUntil("the deletion to be seen", deletion);

    histories.forEach((history, i) => {
      if (i === 0) return;
      const early = history.filter((r) => actsAsPrimary(r) && monoOf(r) < crashedAt);
      expect(early, `node ${i} acted as primary while the first primary was alive`).toEqual([]);
      if (i !== backupIndex) expect(history.filter(actsAsPrimary), `node ${i} acted as primary`).toEqual([]);
    });
    promotionAfter(histories[backupIndex] ?? [], deleted.revision);
    // The crashed primary stopped acting at the crash: nothing after it.
    expect((histories[0] ?? []).filter((r) => monoOf(r) >= crashedAt)).toEqual([]);
  });

  test("a primary cut off from etcd: it steps down before the backup is promoted, and the backup waits for the key to go", async () => {
    const proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    try {
      const { nodes, histories } = await recordedLeaders(4, (i) =>
        i === 0 ? [proxy.endpoint] : etcd.endpoints,
      );
      const backupIndex = nodes.findIndex((n) => n.role === "backup");
      const deletion = await watchPrimaryDeletion();
      const cutAt = monoNow();
      proxy.setMode("blackhole");
      await waitUntil(
        "the backup to become primary",
        () => nodes[backupIndex]?.role === "primary",
        TTL_SECONDS * 10_000,
      );
      const deleted = await waitUntil("the deletion to be seen", deletion);

      const old = histories[0] ?? [];
      const { becamePrimary } = promotionAfter(histories[backupIndex] ?? [], deleted.revision);
      const steppedDown = old.find(
        (r) => r.kind === "transition" && r.role !== "primary" && monoOf(r) > cutAt,
      );
      expect(steppedDown, "the old primary never stepped down").toBeDefined();
      expect(monoOf(steppedDown as HistoryRecord)).toBeLessThan(monoOf(becamePrimary as HistoryRecord));
      // While it was primary its local deadline had not passed.
      const lateActs = old.filter(
        (r) => r.kind === "transition" && r.role === "primary" && (r.deadlineMs ?? 0) <= 0,
      );
      expect(lateActs).toEqual([]);
    } finally {
      proxy.setMode("reset");
      proxy.setMode("pass");
      await factory.stopAll();
      await proxy.close();
    }
  });

  // The deletion and the re-creation can reach the backup in one watch response; its view then never
  // shows the seat vacant and it tries no promotion (seen once under CI load). That run proves
  // nothing either way, so the scenario is tried again; the assertions are unchanged.
  test("a backup that saw the primary key go does not take it once it is held again", {
    retry: 2,
  }, async () => {
    const proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    try {
      const { nodes, histories } = await recordedLeaders(2, (i) =>
        i === 1 ? [proxy.endpoint] : etcd.endpoints,
      );
      const [primary, backup] = nodes;
      expect(backup?.role).toBe("backup");
      const primaryKey = factory.layout.keys.leaderKey(0, 1);
      const held = (await client.get(primaryKey).exec()).kvs[0];
      if (!held) throw new Error("no primary key");

      // The backup sees the deletion only after the seat is taken again (here by hand, under the
      // old primary's lease), so its promotion reaches etcd while the primary key exists.
      proxy.setMode("stall-downstream");
      await client.delete().key(primaryKey);
      await client.put(primaryKey).value(held.value).lease(held.lease);
      proxy.setMode("pass");
      await waitUntil("the backup to try a promotion", () =>
        histories[1]?.some((r) => r.kind === "leader" && r.action === "promote"),
      );

      const promotions = (histories[1] ?? []).filter((r) => r.kind === "leader" && r.action === "promote");
      expect(promotions, "the promotion was refused").toMatchObject([{ outcome: "refused" }]);
      const now = (await client.get(primaryKey).exec()).kvs[0];
      expect(now?.lease, "the primary key is still the old primary's").toBe(held.lease);
      expect(primary?.status.leaseId).toBe(held.lease);
    } finally {
      proxy.setMode("reset");
      proxy.setMode("pass");
      await factory.stopAll();
      await proxy.close();
    }
  });

  test("a crashed member's slot is advertised, and a new node takes that same ID and group", async () => {
    const { nodes } = await formed(9);
    const { id: victimId, ad } = await crashFollowerUntilAdvertised(
      nodes,
      client,
      factory.layout,
      TTL_SECONDS * 10_000,
    );
    const adKey = factory.layout.keys.failoverKey(victimId);
    expect(ad).toMatchObject({ id: victimId, group: factory.layout.nodeGroup(victimId) });

    const replacement = factory.create("replacement");
    const status = await replacement.start();
    expect(status.id).toBe(victimId);
    expect(status.group).toBe(factory.layout.nodeGroup(victimId));
    expect(await client.get(adKey).string()).toBeNull();
  });

  test("two new nodes racing for one advertised slot: exactly one wins, the other gets a fresh ID", async () => {
    const { nodes } = await formed(6);
    const { id: victimId } = await crashFollowerUntilAdvertised(nodes, client, factory.layout, 20_000);

    const racers = [factory.create("racer-a"), factory.create("racer-b")];
    const statuses = await Promise.all(racers.map((r) => r.start()));
    const ids = statuses.map((s) => s.id);
    expect(ids.filter((id) => id === victimId)).toHaveLength(1);
    expect(ids).toContain(6);
    expect(await client.get("id_key").string()).toBe("7");
  });

  test("a deposed leader's fenced write fails; the current leader's succeeds", async () => {
    const { primary, backup } = await formed(3);
    const staleFence = primary.fence;
    expect(staleFence).toBeDefined();
    await primary.fencedTxn((c) => [c.put("app/value").value("from first primary")]);

    // Depose the primary behind its back: delete its leader key as an operator would.
    await client.delete().key(factory.layout.keys.leaderKey(0, 1));
    await waitUntil("the backup to take over", () => backup.role === "primary");
    // Whether or not the old primary has noticed yet, a write under its token must be refused.
    const store = new ClusterStore(client, factory.layout, silentLogger());
    await expect(
      store.fencedTxn(staleFence as FencingToken, (c) => [c.put("app/value").value("stale write")]),
    ).rejects.toThrow(FenceLostError);
    await waitUntil("the old primary to notice", () => primary.role !== "primary");
    // Noticed, it may already be the new backup: still no writes as primary.
    await expect(primary.fencedTxn((c) => [c.put("app/value").value("stale write")])).rejects.toThrow(
      NotPrimaryError,
    );
    await backup.fencedTxn((c) => [c.put("app/value").value("from new primary")]);
    expect(await client.get("app/value").string()).toBe("from new primary");
  });
});
