import { afterEach, expect, inject, test } from "vitest";
import { waitUntil } from "../support/waitUntil.js";
import { FaultCluster, rowOf, TTL_MS } from "./faultCluster.js";
import type { NodeProcess } from "./nodeProcess.js";
import { appendRow } from "./summary.js";

let cluster: FaultCluster | undefined;

afterEach(async ({ task }) => {
  if (task.result?.state === "fail") cluster?.keepArtifacts();
  await cluster?.close();
  cluster = undefined;
});

/** The create revision of grouping 0's primary key as etcd has it now. */
async function primaryToken(c: FaultCluster): Promise<number | undefined> {
  const kv = (await c.client.get(c.layout.keys.leaderKey(0, 1)).exec()).kvs[0];
  return kv ? Number(kv.create_revision) : undefined;
}

/** Delivers the request one of `node`'s proxies held back; fails when none held one. */
async function releaseHeldRequest(node: NodeProcess): Promise<void> {
  const released = await Promise.allSettled(node.proxies.map((p) => p.releaseHeldRequest()));
  if (!released.some((r) => r.status === "fulfilled")) throw new Error(`${node.name}: no request was held`);
}

/*
 * The resignation of a primary that is stopping reaches etcd late, after its lease expired and the
 * backup took the seat: a copy of the request delayed in the network. (A primary paused past its
 * TTL and then stopped does not get that far: once resumed, its lease timer fires before the stop
 * and it gives up the office first.) A resignation not fenced on its own token deletes the
 * successor's key.
 */
test("a deposed primary's resignation arriving late leaves its successor's key alone", async () => {
  cluster = await FaultCluster.start("late-resign", 3);
  const c = cluster;
  const primaryKey = c.layout.keys.leaderKey(0, 1);
  await c.trial(async ({ primary, backup }) => {
    const deposedToken = await primaryToken(c);
    await c.impair("primary's resignation held back, then stopped", primary, async () => {
      primary.setNetwork("hold-request", { match: primaryKey, afterwards: "pass" });
      expect(await primary.stop()).toEqual({ code: 0, signal: null });
      await waitUntil(
        "the backup to take the primary key",
        async () => {
          const token = await primaryToken(c);
          return token !== undefined && token !== deposedToken && backup.role === "primary";
        },
        10 * TTL_MS,
      );
    });
    const successorToken = await primaryToken(c);
    await releaseHeldRequest(primary);
    expect(await primaryToken(c)).toBe(successorToken);
    await c.addNode();
  });
  const report = await c.finish();
  appendRow(
    inject("faultRowsFile"),
    rowOf("primary's resignation arrives after its successor took the seat", c.trials, report),
  );
  expect(report.violations).toEqual([]);
});
