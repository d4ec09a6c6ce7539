import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3 } from "etcd3";
import { firstValueFrom, type Subscription } from "rxjs";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { MAX_LISTS_PER_TXN, type PrefixSnapshot, prefixListsOf, watchPrefix } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { FlapProxy } from "../support/flapProxy.js";
import { recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

const contents = (s: PrefixSnapshot | undefined) =>
  Object.fromEntries([...(s?.entries.values() ?? [])].map((e) => [e.key, e.value]));

/** Counts the transactions a client sends and the prefix lists in them. */
function countTxns(client: Etcd3): { txns: () => number; lists: () => number } {
  let txns = 0;
  let lists = 0;
  const txn = client.kv.txn.bind(client.kv);
  client.kv.txn = (req, options) => {
    txns += 1;
    lists += req.success?.filter((op) => op.request_range !== undefined).length ?? 0;
    return txn(req, options);
  };
  return { txns: () => txns, lists: () => lists };
}

describe("prefix lists of one client are batched into one read-only transaction", () => {
  let etcd: EtcdCluster;
  let writer: Etcd3;
  let viewer: Etcd3;
  let subscriptions: Subscription[];
  const log = silentLogger();

  beforeEach(async () => {
    etcd = await startEtcd();
    writer = etcd.client();
    viewer = etcd.client();
    subscriptions = [];
  });

  afterEach(async () => {
    for (const s of subscriptions) s.unsubscribe();
    viewer.close();
    writer.close();
    await etcd.stop();
  });

  const views = (prefixes: readonly string[], resyncIntervalMs?: number) => {
    const latest = new Map<string, PrefixSnapshot>();
    for (const prefix of prefixes) {
      subscriptions.push(
        watchPrefix(viewer, prefix, log, { resyncIntervalMs }).subscribe((s) => latest.set(prefix, s)),
      );
    }
    return latest;
  };

  test("views started in one turn are listed in one transaction, each with its own keys at one revision", async () => {
    const prefixes = ["a/", "b/", "c/", "d/"];
    for (const p of prefixes) await writer.put(`${p}k`).value(p);
    await writer.put("e/k").value("outside");
    const counted = countTxns(viewer);
    const latest = views(prefixes);
    await waitUntil("every view's first list", () => latest.size === prefixes.length);

    expect(counted.txns()).toBe(1);
    expect(counted.lists()).toBe(prefixes.length);
    for (const p of prefixes) expect(contents(latest.get(p))).toEqual({ [`${p}k`]: p });
    const revisions = new Set(prefixes.map((p) => latest.get(p)?.revision));
    expect([...revisions]).toEqual([Number((await writer.get("e/k").exec()).header.revision)]);
  });

  test("re-syncs of one client's views share one transaction per tick of their shared clock", async () => {
    const prefixes = ["a/", "b/", "c/", "d/", "e/"];
    const counted = countTxns(viewer);
    const latest = views(prefixes, 200);
    await waitUntil("every view's first list", () => latest.size === prefixes.length);
    await sleep(2_000);
    // About 2 s / 100–200 ms ticks: 10–20 transactions, each with every view's list.
    expect(counted.txns()).toBeGreaterThanOrEqual(5);
    expect(counted.lists()).toBe(counted.txns() * prefixes.length);
  });

  test(`more lists than one transaction may hold (${MAX_LISTS_PER_TXN}) are split, and each gets its own keys`, async () => {
    // etcd refuses a transaction of more than 128 operations (--max-txn-ops): 130 views need three.
    const prefixes = Array.from({ length: 130 }, (_, i) => `v${i}/`);
    await writer.put("v7/k").value("seven");
    await writer.put("v129/k").value("last");
    const counted = countTxns(viewer);
    const latest = views(prefixes);
    await waitUntil("every view's first list", () => latest.size === prefixes.length, 20_000);
    expect(counted.txns()).toBe(Math.ceil(prefixes.length / MAX_LISTS_PER_TXN));
    expect(contents(latest.get("v7/"))).toEqual({ "v7/k": "seven" });
    expect(contents(latest.get("v129/"))).toEqual({ "v129/k": "last" });
    expect(contents(latest.get("v12/"))).toEqual({});
  });

  test("a failed batch fails each of its lists, and the next batch answers them", async () => {
    const lists = prefixListsOf(viewer);
    const member = etcd.members[0];
    if (member === undefined) throw new Error("no etcd member");
    await member.stop();
    const failed = await Promise.allSettled([lists.list("a/", 500), lists.list("b/", 500)]);
    expect(failed.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    await member.restart();
    await writer.put("b/k").value("1");
    // etcd3's circuit breaker refuses calls for a while after failures: ask again until it lets one through.
    let keys: string[] | undefined;
    await waitUntil("a list after the restart", async () => {
      const listed = await lists.list("b/", 5_000).catch(() => undefined);
      keys = listed?.kvs.map((kv) => kv.key.toString());
      return keys !== undefined;
    });
    expect(keys).toEqual(["b/k"]);
  });

  test("a view first emits what etcd held when its batch was read", async () => {
    await writer.put("p/x").value("1");
    const first = await firstValueFrom(watchPrefix(viewer, "p/", log));
    expect(contents(first)).toEqual({ "p/x": "1" });
    expect(first.source).toBe("list");
  });
});

describe("a re-sync tick does not pile lists onto a slow etcd", () => {
  let etcd: EtcdCluster;
  let proxy: FlapProxy;
  let viewer: Etcd3;
  let subscription: Subscription | undefined;

  beforeEach(async () => {
    etcd = await startEtcd();
    proxy = await FlapProxy.forEndpoint(etcd.endpoints[0] ?? "");
    // A local subchannel pool gives reads and the watch connections of their own.
    viewer = new Etcd3({
      hosts: [proxy.endpoint],
      dialTimeout: 1000,
      grpcOptions: { "grpc.use_local_subchannel_pool": 1 },
    });
  });

  afterEach(async () => {
    subscription?.unsubscribe();
    viewer.close();
    await proxy.close();
    await etcd.stop();
  });

  test("while a list is in flight, ticks of the shared clock send no other list", async () => {
    const counted = countTxns(viewer);
    const snapshots: PrefixSnapshot[] = [];
    subscription = watchPrefix(viewer, "p/", silentLogger(), { resyncIntervalMs: 50 }).subscribe((s) =>
      snapshots.push(s),
    );
    await waitUntil("the first list", () => snapshots.length > 0);
    await waitUntil("the reads' and the watch's connections", () => proxy.connections.length === 2);
    const reads = proxy.connections[0];
    if (reads === undefined) throw new Error("no reads connection");
    reads.setMode("delay", { delayMs: 600, direction: "downstream" });
    const before = counted.lists();
    await sleep(3_000);
    // One list per 600 ms answer: about 5; a tick every 25–50 ms would have sent about 80.
    expect(counted.lists() - before).toBeLessThanOrEqual(10);
    expect(counted.lists() - before).toBeGreaterThanOrEqual(2);
  });
});

describe("a batch etcd refuses for what is in it is split until its parts pass", () => {
  let etcd: EtcdCluster;
  let viewer: Etcd3;

  afterEach(async () => {
    viewer.close();
    await etcd.stop();
  });

  test("with etcd's --max-txn-ops below the batch, every view gets its first list without a failure", async () => {
    etcd = await startEtcd({ extraArgs: ["--max-txn-ops", "4"] });
    viewer = etcd.client();
    const writer = etcd.client();
    const prefixes = Array.from({ length: 12 }, (_, i) => `m${i}/`);
    for (const p of prefixes) await writer.put(`${p}k`).value(p);
    writer.close();
    const counted = countTxns(viewer);
    const { logger, records } = recordingLogger();
    const latest = new Map<string, PrefixSnapshot>();
    const subscriptions = prefixes.map((prefix) =>
      watchPrefix(viewer, prefix, logger).subscribe((s) => latest.set(prefix, s)),
    );
    try {
      await waitUntil("every view's first list", () => latest.size === prefixes.length, 30_000);
      for (const p of prefixes) expect(contents(latest.get(p))).toEqual({ [`${p}k`]: p });
      expect(records.filter((r) => r.message === "listing a prefix failed, retrying")).toEqual([]);
      // 12 refused, two of 6 refused, four of 3 passed: 7 transactions.
      expect(counted.txns()).toBe(7);
    } finally {
      for (const s of subscriptions) s.unsubscribe();
    }
  });
});
