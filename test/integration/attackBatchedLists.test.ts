import { type Etcd3, Range } from "etcd3";
import type { Subscription } from "rxjs";
import { afterEach, describe, expect, test } from "vitest";
import { connectEtcd, type PrefixSnapshot, watchPrefix } from "../../src/etcd/index.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

const contents = (s: PrefixSnapshot | undefined) =>
  Object.fromEntries([...(s?.entries.values() ?? [])].map((e) => [e.key, e.value]));

const LIST_FAILED = "listing a prefix failed, retrying";

/** Counts the batched list transactions a client sends and how many of them etcd refused. */
function countTxns(client: Etcd3): { sent: () => number; refused: () => number } {
  let sent = 0;
  let refused = 0;
  const txn = client.kv.txn.bind(client.kv);
  client.kv.txn = (req, options) => {
    sent += 1;
    return txn(req, options).catch((err: unknown) => {
      refused += 1;
      throw err;
    });
  };
  return { sent: () => sent, refused: () => refused };
}

/**
 * The views of one client list their prefixes in one transaction per turn. A transaction is all
 * or nothing: whatever makes etcd refuse it (its operation count, a permission on one of its
 * ranges) fails every list in it, including those that alone would have been answered.
 */
describe("attack: batched prefix lists that etcd refuses as a whole", () => {
  let etcd: EtcdCluster | undefined;
  const subscriptions: Subscription[] = [];
  const clients: Etcd3[] = [];

  afterEach(async () => {
    for (const s of subscriptions.splice(0)) s.unsubscribe();
    for (const c of clients.splice(0)) c.close();
    await etcd?.stop();
    etcd = undefined;
  });

  const views = (client: Etcd3, prefixes: readonly string[], resyncIntervalMs?: number) => {
    const { logger, records } = recordingLogger();
    const latest = new Map<string, PrefixSnapshot>();
    for (const prefix of prefixes)
      subscriptions.push(
        watchPrefix(client, prefix, logger, { resyncIntervalMs, callTimeoutMs: 2_000 }).subscribe((s) =>
          latest.set(prefix, s),
        ),
      );
    const listFailures = () => records.filter((r) => r.message === LIST_FAILED).length;
    return { latest, listFailures };
  };

  // Guards: a batch larger than etcd's --max-txn-ops (128 by default; MAX_LISTS_PER_TXN is 64) is
  // refused whole. It is split in halves until its parts pass (prefixLists.test.ts counts the
  // transactions); here the views must get their keys and follow changes, tick after tick.
  test("with etcd's --max-txn-ops below the batch, every view still gets its keys and follows changes", async () => {
    etcd = await startEtcd({ extraArgs: ["--max-txn-ops", "4"] });
    const writer = etcd.client();
    const viewer = connectEtcd(etcd.endpoints);
    clients.push(viewer);
    const counted = countTxns(viewer);
    const prefixes = Array.from({ length: 12 }, (_, i) => `m${i}/`);
    for (const p of prefixes) await writer.put(`${p}k`).value("before");
    const { latest, listFailures } = views(viewer, prefixes, 1_000);

    await waitUntil(
      "every view's first list",
      () => prefixes.every((p) => contents(latest.get(p))[`${p}k`] === "before"),
      60_000,
    );
    expect(counted.refused(), "the first batch of 12 lists was refused (--max-txn-ops 4)").toBeGreaterThan(0);
    for (const p of prefixes) await writer.put(`${p}k`).value("after");
    await waitUntil(
      "every view to follow the change",
      () => prefixes.every((p) => contents(latest.get(p))[`${p}k`] === "after"),
      30_000,
    );
    // Re-syncs keep ticking on the shared clock: each tick's batch of 12 is refused and split.
    // Counted, for the report; the views stay right.
    const refusedBefore = counted.refused();
    const sentBefore = counted.sent();
    await new Promise((r) => setTimeout(r, 5_000));
    const refusedTicks = counted.refused() - refusedBefore;
    const sent = counted.sent() - sentBefore;
    console.log(
      `max-txn-ops 4, 12 views, resync 1 s: in 5 s ${sent} list transactions, ${refusedTicks} refused; ${listFailures()} list-failure warnings so far`,
    );
    expect(prefixes.every((p) => contents(latest.get(p))[`${p}k`] === "after")).toBe(true);
  }, 120_000);

  /** An etcd with auth on, and a client of a user whose role may only read the prefix `ro/`. */
  const readerOf = async (name: string): Promise<{ root: Etcd3; reader: Etcd3 }> => {
    etcd = await startEtcd({ name, rootPassword: "root-secret" });
    const root = etcd.client();
    await root.role("reader").create();
    await root.role("reader").grant({ permission: "Read", range: Range.prefix("ro/") });
    await root.user("reader").create("reader-secret");
    await root.user("reader").addRole("reader");
    const reader = connectEtcd({
      endpoints: etcd.endpoints,
      auth: { username: "reader", password: "reader-secret" },
    });
    clients.push(reader);
    return { root, reader };
  };

  // Guards: a Txn of ranges needs only read permission on each range, so a user whose role may
  // only read the namespace can list (a change that put a compare or a write into the batch, or
  // sent it with a lease, would need more and go red here).
  test("a user whose role may only read a prefix lists it through the batched transaction", async () => {
    const { root, reader } = await readerOf("ro");
    await root.put("ro/a/1").value("a");
    await root.put("ro/b/1").value("b");
    const { latest } = views(reader, ["ro/a/", "ro/b/"]);
    await waitUntil("both read-only views' first lists", () => latest.size === 2, 30_000);
    expect(contents(latest.get("ro/a/"))).toEqual({ "ro/a/1": "a" });
    expect(contents(latest.get("ro/b/"))).toEqual({ "ro/b/1": "b" });
    await root.put("ro/b/2").value("b2");
    await waitUntil(
      "the read-only view to follow a put",
      () => contents(latest.get("ro/b/"))["ro/b/2"] === "b2",
    );
  }, 60_000);

  // A view of a prefix the user may not read, started in the same turn as views it may read:
  // etcd refuses the whole batch ("permission denied"). The permitted views must not be starved
  // by it: they get their keys through their own retries, and keep following changes.
  test("a view the user may not read does not starve the views it may read on the same client", async () => {
    const { root, reader } = await readerOf("rbac");
    await root.put("ro/a/1").value("a");
    await root.put("secret/1").value("s");
    const counted = countTxns(reader);
    const { latest, listFailures } = views(reader, ["ro/a/", "secret/", "ro/c/"], 1_000);
    await waitUntil(
      "the permitted views' first lists",
      () => latest.has("ro/a/") && latest.has("ro/c/"),
      60_000,
    );
    expect(contents(latest.get("ro/a/"))).toEqual({ "ro/a/1": "a" });
    expect(latest.has("secret/"), "a view the user may not read never emits").toBe(false);
    await root.put("ro/a/2").value("a2");
    await waitUntil(
      "the permitted view to follow a put",
      () => contents(latest.get("ro/a/"))["ro/a/2"] === "a2",
    );
    console.log(
      `rbac: ${counted.sent()} list transactions, ${counted.refused()} refused; ${listFailures()} list-failure warnings`,
    );
  }, 90_000);
  // etcd input: values near etcd's request limit (1.5 MB) under three prefixes. Each list alone is
  // below gRPC's 4 MB receive limit, but one batch of all three is not: the client refuses the
  // reply (RESOURCE_EXHAUSTED) and every list in it fails. The views must still get their keys,
  // through retries that go out apart; nothing may crash.
  test("lists whose replies together exceed gRPC's 4 MB receive limit still reach every view", async () => {
    etcd = await startEtcd({ name: "big" });
    const writer = etcd.client();
    const big = "x".repeat(1_400_000);
    const prefixes = ["big0/", "big1/", "big2/", "small/"];
    for (const p of prefixes.slice(0, 3)) await writer.put(`${p}k`).value(big);
    await writer.put("small/k").value("s");
    const viewer = connectEtcd(etcd.endpoints);
    clients.push(viewer);
    const counted = countTxns(viewer);
    const { latest, listFailures } = views(viewer, prefixes, 1_000);
    await waitUntil("every view's first list", () => prefixes.every((p) => latest.has(p)), 60_000);
    expect(contents(latest.get("small/"))).toEqual({ "small/k": "s" });
    for (const p of prefixes.slice(0, 3)) expect(contents(latest.get(p))[`${p}k`]?.length).toBe(big.length);
    const refusedBefore = counted.refused();
    const sentBefore = counted.sent();
    await new Promise((r) => setTimeout(r, 5_000));
    console.log(
      `4 MB: first lists after ${sentBefore} transactions (${refusedBefore} refused); then in 5 s ${counted.sent() - sentBefore} sent, ${counted.refused() - refusedBefore} refused; ${listFailures()} list-failure warnings`,
    );
    await writer.put("small/k").value("s2");
    await waitUntil(
      "the small view to follow a put",
      () => contents(latest.get("small/"))["small/k"] === "s2",
    );
  }, 90_000);
});
