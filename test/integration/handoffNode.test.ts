import type { Etcd3 } from "etcd3";
import { filter, firstValueFrom } from "rxjs";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterStore, FenceLostError } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import type { HistoryRecord } from "../../src/runtime/history.js";
import {
  type NodeFactory,
  ONE_GROUPING,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { leadershipSettled } from "../support/invariants.js";
import { waitUntil } from "../support/waitUntil.js";

interface LeaderEvent {
  revision: number;
  type: "put" | "delete";
  key: string;
  lease: string;
  createRevision: number;
}

describe("a stopping primary hands its office to the backup", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory;

  const histories: HistoryRecord[] = [];

  beforeEach(async () => {
    histories.length = 0;
    ({ etcd, client, factory } = await startEtcdWithNodes({
      config: ONE_GROUPING,
      leaseTtlSeconds: 2,
      history: (record) => histories.push(record),
    }));
  });
  afterEach(() => stopEtcdWithNodes({ etcd, factory }));

  /** Every change to the grouping's leader keys from `fromRevision` on, as etcd ordered them. */
  async function watchLeaderKeys(fromRevision: number) {
    const events: LeaderEvent[] = [];
    const watcher = await client
      .watch()
      .prefix(factory.layout.keys.leaderPrefix(0))
      .startRevision(String(fromRevision))
      .create();
    const record =
      (type: LeaderEvent["type"]) =>
      (kv: { key: Buffer; lease: string; create_revision: string; mod_revision: string }) =>
        events.push({
          revision: Number(kv.mod_revision),
          type,
          key: kv.key.toString(),
          lease: kv.lease,
          createRevision: Number(kv.create_revision),
        });
    watcher.on("put", record("put"));
    watcher.on("delete", record("delete"));
    return { events, cancel: () => watcher.cancel() };
  }

  test("after stop() the backup is primary by one transaction, with the key's token, and the old fence is refused", async () => {
    const nodes = await factory.startMany(2);
    await waitUntil("a primary and a backup", () => leadershipSettled(client, factory.layout, nodes));
    const primary = nodes.find((n) => n.role === "primary");
    const backup = nodes.find((n) => n.role === "backup");
    if (!primary?.status.fence || !backup?.status.fence || !primary.status.leaseId)
      throw new Error("no leaders");
    const oldFence = primary.status.fence;
    const oldLease = primary.status.leaseId;
    const backupLease = backup.status.leaseId;
    // The primary hands off to the backup of its own view; one that has not seen the backup yet resigns.
    await firstValueFrom(primary.leaders$.pipe(filter((l) => l?.backup?.lease === backupLease)));

    const before = Number((await client.get("probe").exec()).header.revision);
    const watch = await watchLeaderKeys(before + 1);
    let changesSeenWhenLeadershipEnded: number | undefined;
    primary.onLeadership({
      started: () => {},
      stopped: () => {
        changesSeenWhenLeadershipEnded ??= watch.events.length;
      },
    });

    await primary.stop();
    await waitUntil("the backup to be primary", () => backup.role === "primary");
    await waitUntil("the handoff seen by the test's watch", () => watch.events.length >= 2);
    await watch.cancel();

    // The term ended before anything changed in etcd.
    expect(changesSeenWhenLeadershipEnded).toBe(0);
    // One revision: the primary key re-bound to the backup's lease, the backup key deleted; never vacant.
    const primaryKey = factory.layout.keys.leaderKey(0, 1);
    const backupKey = factory.layout.keys.leaderKey(0, 2);
    const [handoff] = watch.events;
    expect(new Set(watch.events.map((e) => e.revision)).size).toBe(1);
    expect(watch.events.map(({ type, key }) => ({ type, key }))).toEqual([
      { type: "put", key: primaryKey },
      { type: "delete", key: backupKey },
    ]);
    expect(handoff).toMatchObject({ lease: backupLease, createRevision: oldFence.token });
    expect(backup.status.fence).toEqual({ grouping: 0, seat: 1, token: oldFence.token });
    // The old primary's history says it handed off, at that revision, and that it did not resign.
    const leaderActions = histories.filter(
      (r) => r.kind === "leader" && r.node === primary.status.name && r.grouping === 0,
    );
    expect(leaderActions).toContainEqual(
      expect.objectContaining({
        action: "handoff",
        outcome: "ok",
        token: oldFence.token,
        revision: handoff?.revision,
      }),
    );
    expect(leaderActions.filter((r) => r.kind === "leader" && r.action === "resign")).toEqual([]);

    // The old primary's fenced write, with its old token and lease, is refused; the new primary's commits.
    const store = new ClusterStore(client, factory.layout, silentLogger());
    await expect(
      store.fencedTxn(oldFence, (c) => [c.put("app/old").value("v")], oldLease),
    ).rejects.toBeInstanceOf(FenceLostError);
    expect(await client.get("app/old").string()).toBeNull();
    await backup.fencedTxn((c) => [c.put("app/new").value("v")]);
    expect(await client.get("app/new").string()).toBe("v");
  });

  test("a stopping primary without a backup resigns: the key is deleted", async () => {
    const [only] = await factory.startMany(1);
    await waitUntil("the node to be primary", () => only?.role === "primary");
    await only?.stop();
    expect(await client.get(factory.layout.keys.leaderKey(0, 1)).string()).toBeNull();
  });
});
