import { setTimeout as sleep } from "node:timers/promises";
import { ClientClosedError, Etcd3 } from "etcd3";
import { firstValueFrom, type Subscription } from "rxjs";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  type PrefixSnapshot,
  type WatchPrefixOptions,
  type WatchStreamOptions,
  watchPrefix,
  watchStreamOf,
} from "../../src/etcd/index.js";
import type { Logger } from "../../src/logging.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { type FlapConnection, FlapProxy } from "../support/flapProxy.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";
import { type LogRecord, recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

const contents = (s: PrefixSnapshot | undefined) =>
  Object.fromEntries([...(s?.entries.values() ?? [])].map((e) => [e.key, e.value]));

/** Whether a snapshot holds exactly these keys and values, in any order. */
const holds = (s: PrefixSnapshot | undefined, expected: Record<string, string>) => {
  const sorted = (record: Record<string, string>) => JSON.stringify(Object.entries(record).sort());
  return sorted(contents(s)) === sorted(expected);
};

/** Counts the prefix lists a client's views send to etcd (each is one range of a batched transaction). */
function countLists(client: Etcd3): () => number {
  let lists = 0;
  const txn = client.kv.txn.bind(client.kv);
  client.kv.txn = (req, options) => {
    lists += req.success?.filter((op) => op.request_range !== undefined).length ?? 0;
    return txn(req, options);
  };
  return () => lists;
}

/** Fails unless every snapshot is exactly etcd's state of the prefix at the snapshot's revision. */
async function expectEverySnapshotIsEtcdAtItsRevision(writer: Etcd3, snapshots: readonly PrefixSnapshot[]) {
  const states = new Map<string, Record<string, string>>();
  for (const snapshot of snapshots) {
    const at = `${snapshot.prefix}@${snapshot.revision}`;
    let state = states.get(at);
    if (state === undefined) {
      state = await writer.getAll().prefix(snapshot.prefix).revision(String(snapshot.revision)).strings();
      states.set(at, state);
    }
    expect(contents(snapshot), `snapshot of ${at} (${snapshot.source})`).toEqual(state);
  }
}

function expectRevisionsNeverGoBack(snapshots: readonly PrefixSnapshot[]) {
  for (let i = 1; i < snapshots.length; i++) {
    expect(snapshots[i]?.revision, `snapshot ${i}`).toBeGreaterThanOrEqual(snapshots[i - 1]?.revision ?? 0);
  }
}

describe("watchPrefix: a live view of a prefix that never loses a change", () => {
  const env = proxiedEtcdPerTest();
  let viewer: Etcd3;
  let logger: Logger;
  let records: LogRecord[];
  let subscriptions: Subscription[];
  const snapshots: PrefixSnapshot[] = [];

  beforeEach(async () => {
    viewer = env.track(new Etcd3({ hosts: [env.proxy.endpoint], dialTimeout: 1000 }));
    ({ logger, records } = recordingLogger());
    subscriptions = [];
    snapshots.length = 0;
  });

  afterEach(async () => {
    for (const subscription of subscriptions) subscription.unsubscribe();
  });

  const latest = () => snapshots.at(-1);
  const lists = () => snapshots.filter((s) => s.source === "list");
  const view = (options: WatchPrefixOptions = {}, stream?: WatchStreamOptions, prefix = "p/") => {
    watchStreamOf(viewer, logger, stream);
    const subscription = watchPrefix(viewer, prefix, logger, options).subscribe((s) => snapshots.push(s));
    subscriptions.push(subscription);
    return subscription;
  };
  const etcdState = (prefix = "p/") => env.direct.getAll().prefix(prefix).strings();

  test("lists existing keys, then follows puts and deletes; each snapshot is etcd's state at its revision", async () => {
    await env.direct.put("p/a").value("1");
    await env.direct.put("q/a").value("other prefix");
    view();
    await waitUntil("the initial list", () => snapshots.length > 0);
    expect(contents(latest())).toEqual({ "p/a": "1" });
    expect(latest()?.source).toBe("list");

    await env.direct.put("p/b").value("2");
    await env.direct.put("p/a").value("3");
    await env.direct.delete().key("p/b");
    await waitUntil("the changes", () => contents(latest())["p/a"] === "3" && !("p/b" in contents(latest())));
    expect(snapshots.slice(1).every((s) => s.source === "watch")).toBe(true);
    await expectEverySnapshotIsEtcdAtItsRevision(env.direct, snapshots);
  });

  test("every event of a multi-key transaction (one revision) is applied", async () => {
    await env.direct.put("p/old").value("1");
    view();
    await waitUntil("the initial list", () => "p/old" in contents(latest()));
    await env.direct
      .if("p/old", "Create", ">", 0)
      .then(
        env.direct.put("p/new").value("2"),
        env.direct.delete().key("p/old"),
        env.direct.put("p/other").value("3"),
      )
      .commit();
    await waitUntil("the transaction", () => "p/new" in contents(latest()));
    expect(contents(latest())).toEqual({ "p/new": "2", "p/other": "3" });
  });

  test("changes made while the connection is down arrive after it comes back", async () => {
    view();
    await waitUntil("the initial list", () => snapshots.length > 0);
    env.proxy.setMode("reset");
    for (let i = 0; i < 20; i++) await env.direct.put(`p/${i}`).value(String(i));
    await env.direct.delete().key("p/3");
    env.proxy.setMode("pass");
    await waitUntil("all 19 keys", () => Object.keys(contents(latest())).length === 19, 20_000);
    expect(contents(latest())["p/19"]).toBe("19");
    expect(contents(latest())["p/3"]).toBeUndefined();
  });

  test("a watch whose revision was compacted while disconnected is re-listed, and no change is lost", async () => {
    await env.direct.put("p/gone").value("x");
    view();
    await waitUntil("the initial list", () => "p/gone" in contents(latest()));
    env.proxy.setMode("reset");
    await env.direct.delete().key("p/gone");
    for (let i = 0; i < 10; i++) await env.direct.put(`p/${i}`).value(String(i));
    await env.direct.put("p/0").value("rewritten");
    const current = await env.direct.get("p/0").exec();
    await env.direct.kv.compact({ revision: current.header.revision, physical: true });
    env.proxy.setMode("pass");

    await waitUntil(
      "the view to match etcd",
      () => contents(latest())["p/0"] === "rewritten" && Object.keys(contents(latest())).length === 10,
      20_000,
    );
    // The resumed watch's creation reply triggers a re-list too, and that list can land before etcd's
    // cancellation of the compacted watch, which comes in a later message.
    await waitUntil("etcd to cancel the compacted watch", () =>
      records.some((r) => r.message === "watch cancelled by etcd, re-listing"),
    );
    expect(contents(latest())).not.toHaveProperty("p/gone");
    expect(contents(latest())).toEqual(await etcdState());
  });

  test("compaction, an etcd restart on the same data dir and link cuts: no crash, every view converges", async () => {
    await env.direct.put("p/a").value("1");
    await env.direct.put("q/a").value("1");
    const other: PrefixSnapshot[] = [];
    view();
    subscriptions.push(watchPrefix(viewer, "q/", logger).subscribe((s) => other.push(s)));
    await waitUntil("both initial lists", () => snapshots.length > 0 && other.length > 0);

    env.proxy.setMode("reset");
    await env.direct.delete().key("p/a");
    for (let i = 0; i < 10; i++) {
      await env.direct.put(`p/${i}`).value(String(i));
      await env.direct.put(`q/${i}`).value(String(i));
    }
    const current = await env.direct.get("p/0").exec();
    await env.direct.kv.compact({ revision: current.header.revision, physical: true });
    await env.etcd.members[0]?.restart();
    env.proxy.setMode("pass");
    for (let cut = 0; cut < 3; cut++) {
      await sleep(300);
      env.proxy.setMode("reset");
      await env.direct.put(`q/cut${cut}`).value("x");
      env.proxy.setMode("pass");
    }

    const p = await etcdState("p/");
    const q = await etcdState("q/");
    await waitUntil("both views to match etcd", () => holds(latest(), p) && holds(other.at(-1), q), 30_000);
    await waitUntil("etcd to cancel a compacted watch", () =>
      records.some((r) => r.message === "watch cancelled by etcd, re-listing"),
    );
  });

  test("link cuts right after the watch is created and while catch-up events stream: no key missed (8 trials)", async () => {
    const stream = watchStreamOf(viewer, logger, { reconnect: { initialMs: 20, maxMs: 200 } });
    for (let trial = 0; trial < 8; trial++) {
      const prefix = `f${trial}/`;
      const trialSnapshots: PrefixSnapshot[] = [];
      let created = false;
      let responses = 0;
      const cut = () => {
        env.proxy.setMode("reset");
        setTimeout(() => env.proxy.setMode("pass"), 20);
      };
      const hook = stream.activity$.subscribe((step) => {
        if (step.kind === "created" && !created) {
          created = true;
          cut();
        }
        if (step.kind === "events" && ++responses === 1) cut();
      });
      // Writes race with the first list, so the watch starts with catch-up events to deliver.
      const writes = (async () => {
        for (let i = 0; i < 30; i++) {
          await env.direct.put(`${prefix}${i}`).value(String(i));
          if (i % 3 === 0) await env.direct.delete().key(`${prefix}${i - 1}`);
        }
      })();
      const subscription = watchPrefix(viewer, prefix, logger).subscribe((s) => trialSnapshots.push(s));
      subscriptions.push(subscription, hook);
      await writes;
      await waitUntil(`trial ${trial}: the watch to be created`, () => created);
      const final = await etcdState(prefix);
      await waitUntil(
        `trial ${trial}: the view to match etcd`,
        () => holds(trialSnapshots.at(-1), final),
        30_000,
      );
      subscription.unsubscribe();
      hook.unsubscribe();
      expectRevisionsNeverGoBack(trialSnapshots);
      await expectEverySnapshotIsEtcdAtItsRevision(env.direct, trialSnapshots);
    }
  });

  test("under writes, frequent re-lists and link cuts, revisions never go back and each snapshot is etcd's state", async () => {
    view({ resyncIntervalMs: 20 });
    await waitUntil("the initial list", () => snapshots.length > 0);
    for (let i = 0; i < 150; i++) {
      const key = `p/${i % 17}`;
      if (i % 5 === 4) await env.direct.delete().key(key);
      else if (i % 7 === 6)
        await env.direct
          .if(key, "Create", ">", -1)
          .then(env.direct.put(key).value(`t${i}`), env.direct.put(`p/x${i % 3}`).value(`t${i}`))
          .commit();
      else await env.direct.put(key).value(String(i));
      if (i % 40 === 39) {
        env.proxy.setMode("reset");
        env.proxy.setMode("pass");
      }
    }
    const final = await etcdState();
    await waitUntil("the view to match etcd", () => holds(latest(), final), 30_000);
    expect(lists().length).toBeGreaterThan(3);
    expectRevisionsNeverGoBack(snapshots);
    await expectEverySnapshotIsEtcdAtItsRevision(env.direct, snapshots);
  });

  test("every successful re-list emits a snapshot, even when nothing changed", async () => {
    await env.direct.put("p/a").value("1");
    view({ resyncIntervalMs: 100 });
    await waitUntil("three lists", () => lists().length >= 3);
    const revisions = new Set(lists().map((s) => s.revision));
    expect(revisions.size).toBe(1);
    expect(lists().every((s) => contents(s)["p/a"] === "1")).toBe(true);
  });

  test("failed lists are retried with growing delays, not in a busy loop", async () => {
    view({ resyncIntervalMs: 100, callTimeoutMs: 500 });
    await waitUntil("the initial list", () => snapshots.length > 0);
    const member = env.etcd.members[0];
    if (member === undefined) throw new Error("no etcd member");
    await member.stop();
    await sleep(3_000);
    const failures = records.filter((r) => r.message === "listing a prefix failed, retrying");
    await member.restart();
    const listed = lists().length;
    await waitUntil("a list after the restart", () => lists().length > listed, 30_000);

    // 100, 200, 400, 800, 1600 ms (each jittered down to half): about 5 in 3 s.
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.length).toBeLessThan(15);
    const delays = failures.map((r) => Number(r.retryInMs));
    expect(delays[0]).toBeLessThanOrEqual(100);
    expect(Math.max(...delays)).toBeGreaterThan(delays[0] ?? 0);
  });

  test("unsubscribing cancels the watch and every timer", async () => {
    const listCalls = countLists(viewer);
    const subscription = view({ resyncIntervalMs: 50 });
    await waitUntil("two lists", () => lists().length >= 2);
    const stream = watchStreamOf(viewer, logger);
    expect(stream.size).toBe(1);
    subscription.unsubscribe();
    const callsAtUnsubscribe = listCalls();
    await sleep(500);
    expect(listCalls()).toBe(callsAtUnsubscribe);
    expect(stream.size).toBe(0);
  });

  test("unsubscribing while the first list is in flight leaves no watch behind", async () => {
    const listCalls = countLists(viewer);
    view().unsubscribe();
    await sleep(500);
    expect(listCalls()).toBe(1);
    expect(watchStreamOf(viewer, logger).size).toBe(0);
    expect(snapshots).toEqual([]);
  });

  test("a subscriber that unsubscribes on the first snapshot leaves no watch and no re-list behind", async () => {
    const listCalls = countLists(viewer);
    watchStreamOf(viewer, logger);
    const first = await firstValueFrom(watchPrefix(viewer, "p/", logger, { resyncIntervalMs: 50 }));
    expect(first.source).toBe("list");
    await sleep(500);
    expect(listCalls()).toBe(1);
    expect(watchStreamOf(viewer, logger).size).toBe(0);
  });

  test("closing the client ends the view with ClientClosedError, from a list or from the stream", async () => {
    const errors: unknown[] = [];
    const closedView = () =>
      watchPrefix(viewer, "p/", logger).subscribe({
        next: (s) => snapshots.push(s),
        error: (err: unknown) => errors.push(err),
      });

    subscriptions.push(closedView());
    await waitUntil("the initial list", () => snapshots.length > 0);
    viewer.close();
    env.proxy.setMode("reset");
    env.proxy.setMode("pass");
    await waitUntil("the view to end", () => errors.length === 1);
    expect(errors[0]).toBeInstanceOf(ClientClosedError);

    subscriptions.push(closedView());
    await waitUntil("the second view to end", () => errors.length === 2);
    expect(errors[1]).toBeInstanceOf(ClientClosedError);
  });

  test("garbage values are delivered as values: decoding is the caller's job", async () => {
    const binary = Buffer.from([0xff, 0x00, 0xfe, 0x41]);
    await env.direct.put("p/binary").value(binary);
    view();
    await waitUntil("the initial list", () => snapshots.length > 0);
    await env.direct.put("p/json").value("{not json");
    await env.direct.put("p/empty").value("");
    await waitUntil("the garbage", () => "p/empty" in contents(latest()));
    expect(contents(latest())).toEqual({
      "p/binary": binary.toString(),
      "p/json": "{not json",
      "p/empty": "",
    });
  });

  test("bad options are refused with an error naming the option", () => {
    expect(() => watchPrefix(viewer, "p/", logger, { resyncIntervalMs: 0 })).toThrow(/resyncIntervalMs/);
    expect(() => watchPrefix(viewer, "p/", logger, { resyncIntervalMs: Number.NaN })).toThrow(
      /resyncIntervalMs/,
    );
    expect(() => watchPrefix(viewer, "p/", logger, { callTimeoutMs: -1 })).toThrow(/callTimeoutMs/);
  });
});

describe("watchPrefix when reads and the watch stream travel apart", () => {
  let etcd: EtcdCluster;
  let writer: Etcd3;
  let proxy: FlapProxy;
  let viewer: Etcd3;
  let logger: Logger;
  let subscription: Subscription | undefined;
  const snapshots: PrefixSnapshot[] = [];

  beforeEach(async () => {
    etcd = await startEtcd();
    writer = etcd.client();
    proxy = await FlapProxy.forEndpoint(etcd.endpoints[0] ?? "");
    // A local subchannel pool gives each gRPC service its own connection: reads on one, the watch on another.
    viewer = new Etcd3({
      hosts: [proxy.endpoint],
      dialTimeout: 1000,
      grpcOptions: { "grpc.use_local_subchannel_pool": 1 },
    });
    ({ logger } = recordingLogger());
    snapshots.length = 0;
  });

  afterEach(async () => {
    subscription?.unsubscribe();
    viewer.close();
    await proxy.close();
    await etcd.stop();
  });

  const latest = () => snapshots.at(-1);
  const lists = () => snapshots.filter((s) => s.source === "list");
  /** Starts the view and returns its [reads, watch] connections. */
  const view = async (options: WatchPrefixOptions, stream?: WatchStreamOptions) => {
    let created = false;
    const hook = watchStreamOf(viewer, logger, stream).activity$.subscribe((step) => {
      if (step.kind === "created") created = true;
    });
    subscription = watchPrefix(viewer, "p/", logger, options).subscribe((s) => snapshots.push(s));
    subscription.add(hook);
    await waitUntil("the initial list", () => snapshots.length > 0);
    await waitUntil("the watch to be created", () => created);
    await waitUntil("the watch's own connection", () => proxy.connections.length === 2);
    const [reads, watch] = proxy.connections;
    if (reads === undefined || watch === undefined) throw new Error("missing connections");
    return { reads, watch };
  };

  /**
   * Makes the watch miss one event while its stream stays healthy: the proxy drops the one HTTP/2
   * DATA frame carrying p/missed, and the stream goes on with p/seen. Returns p/seen's revision.
   */
  const missAnEvent = async (watch: FlapConnection): Promise<number> => {
    watch.dropDataFrames(1);
    await writer.put("p/missed").value("1");
    await waitUntil("the event's frame to be dropped", () => watch.droppedDataFrames === 1);
    const seen = Number((await writer.put("p/seen").value("2")).header.revision);
    await waitUntil("the event after it", () => "p/seen" in contents(latest()));
    expect(contents(latest())).not.toHaveProperty("p/missed");
    return seen;
  };
  const probesOff: WatchStreamOptions = { probeIntervalMs: 600_000 };

  test("a view whose watch stream is blackholed still converges through the periodic re-list", async () => {
    const { watch } = await view({ resyncIntervalMs: 300 }, probesOff);
    watch.setMode("blackhole");
    await writer.put("p/a").value("1");
    await writer.put("p/b").value("2");
    await writer.delete().key("p/a");
    await waitUntil("the re-list to bring the changes", () => holds(latest(), { "p/b": "2" }));
    expect(latest()?.source).toBe("list");
    expectRevisionsNeverGoBack(snapshots);
  });

  test("a re-list at the very revision the view delivered repairs an event the watch missed", async () => {
    const { watch } = await view({ resyncIntervalMs: 1_500 }, probesOff);
    const listed = lists().length;
    await waitUntil("a periodic list", () => lists().length > listed);
    const seenRevision = await missAnEvent(watch);
    // No write follows, so the next list is at the revision the view already delivered.
    await waitUntil("the re-list to repair the view", () => "p/missed" in contents(latest()), 20_000);
    expect(latest()?.revision).toBe(seenRevision);
    expect(contents(latest())).toEqual(await writer.getAll().prefix("p/").strings());
  });

  test("a stream reconnect triggers a re-list, which repairs an event the watch missed", async () => {
    const { watch } = await view({}, probesOff);
    await missAnEvent(watch);
    watch.cut();
    await waitUntil("the re-list to repair the view", () => "p/missed" in contents(latest()), 20_000);
    expect(contents(latest())).toEqual(await writer.getAll().prefix("p/").strings());
  });

  test("a list older than what the view delivered is dropped: a deleted key is not resurrected", async () => {
    await writer.put("p/k").value("1");
    const { reads } = await view({ resyncIntervalMs: 20 });
    reads.setMode("delay", { delayMs: 600, direction: "downstream" });
    // Lists are served at once but answered 600 ms late; one is in flight when the delete lands.
    await sleep(200);
    const deleted = Number((await writer.delete().key("p/k")).header.revision);
    await waitUntil("the delete, from the watch", () => (latest()?.revision ?? 0) >= deleted);
    await sleep(1_500);

    const afterDelete = snapshots.slice(snapshots.findIndex((s) => s.revision >= deleted));
    expect(afterDelete.some((s) => s.source === "list")).toBe(true);
    expect(afterDelete.filter((s) => "p/k" in contents(s))).toEqual([]);
    expectRevisionsNeverGoBack(snapshots);
    await expectEverySnapshotIsEtcdAtItsRevision(writer, snapshots);
  });

  test("watch events at or below the view's revision are not applied again: a deleted key is not resurrected", async () => {
    const { watch } = await view({ resyncIntervalMs: 20 });
    watch.setMode("delay", { delayMs: 600, direction: "downstream" });
    await sleep(100);
    await writer.put("p/k").value("1");
    const deleted = Number((await writer.delete().key("p/k")).header.revision);
    // A list at or after the delete lands long before the watch's late events.
    await waitUntil("a list after the delete", () =>
      snapshots.some((s) => s.source === "list" && s.revision >= deleted),
    );
    const listedAt = snapshots.length;
    await sleep(1_500);

    expect(snapshots.slice(listedAt).filter((s) => "p/k" in contents(s))).toEqual([]);
    // The late events change nothing, so they emit nothing.
    expect(snapshots.slice(listedAt).filter((s) => s.source === "watch")).toEqual([]);
    expectRevisionsNeverGoBack(snapshots);
    await expectEverySnapshotIsEtcdAtItsRevision(writer, snapshots);
  });

  test("a list that gets no answer is abandoned at its deadline and the view keeps re-listing", async () => {
    const { reads } = await view({ resyncIntervalMs: 50, callTimeoutMs: 300 });
    reads.setMode("blackhole");
    const listedBefore = snapshots.filter((s) => s.source === "list").length;
    await writer.put("p/after").value("1");
    await waitUntil(
      "a list after the blackhole",
      () => snapshots.filter((s) => s.source === "list" && "p/after" in contents(s)).length > 0,
      30_000,
    );
    expect(snapshots.filter((s) => s.source === "list").length).toBeGreaterThan(listedBefore);
  });
});
