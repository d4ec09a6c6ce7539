import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3 } from "etcd3";
import type { Subscription } from "rxjs";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  backoffDelay,
  jitteredInterval,
  type WatchHandle,
  type WatchListener,
  type WatchStream,
  type WatchStreamActivity,
  type WatchStreamOptions,
  watchStreamOf,
} from "../../src/etcd/index.js";
import type { Logger } from "../../src/logging.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";
import { type LogRecord, recordingLogger } from "../support/recordingLogger.js";
import { waitUntil } from "../support/waitUntil.js";

describe("backoff", () => {
  const policy = { initialMs: 100, maxMs: 5_000 };

  test("doubles per attempt, is jittered between half and all of the step, and is capped", () => {
    expect(backoffDelay(0, policy, () => 0)).toBe(50);
    expect(backoffDelay(0, policy, () => 1)).toBe(100);
    expect(backoffDelay(3, policy, () => 0)).toBe(400);
    expect(backoffDelay(3, policy, () => 1)).toBe(800);
    expect(backoffDelay(3, policy, () => 0.5)).toBe(600);
    expect(backoffDelay(40, policy, () => 1)).toBe(5_000);
    expect(backoffDelay(40, policy, () => 0)).toBe(2_500);
  });

  test("a jittered interval lies between half and all of the interval", () => {
    expect(jitteredInterval(1_000, () => 0)).toBe(500);
    expect(jitteredInterval(1_000, () => 1)).toBe(1_000);
    expect(jitteredInterval(1_000, () => 0.25)).toBe(625);
  });
});

interface Recorder {
  listener: WatchListener;
  /** `put:key` / `delete:key`, in delivery order. */
  events: string[];
  revisions: number[];
  attached: boolean[];
  canceled: { compactRevision: number; reason: string }[];
}

function recorder(): Recorder {
  const recorded: Omit<Recorder, "listener"> = { events: [], revisions: [], attached: [], canceled: [] };
  return {
    ...recorded,
    listener: {
      attached: (resumed) => recorded.attached.push(resumed),
      events: (events) => {
        for (const event of events) {
          recorded.events.push(`${event.type.toLowerCase()}:${event.kv.key.toString()}`);
          recorded.revisions.push(Number(event.kv.mod_revision));
        }
      },
      canceled: (cause) => recorded.canceled.push(cause),
      closed: () => undefined,
    },
  };
}

const strictlyIncreasing = (values: number[]) =>
  values.every((value, i) => i === 0 || value > (values[i - 1] ?? 0));

describe("WatchStream: one multiplexed watch stream per client, driven directly", () => {
  const env = proxiedEtcdPerTest();
  let viewer: Etcd3;
  let logger: Logger;
  let records: LogRecord[];
  let handles: WatchHandle[];
  let subscriptions: Subscription[];
  let activity: WatchStreamActivity[];

  beforeEach(async () => {
    viewer = env.track(new Etcd3({ hosts: [env.proxy.endpoint], dialTimeout: 1000 }));
    ({ logger, records } = recordingLogger());
    handles = [];
    subscriptions = [];
    activity = [];
  });

  afterEach(async () => {
    for (const handle of handles) handle.cancel();
    for (const subscription of subscriptions) subscription.unsubscribe();
  });

  const streamOf = (options?: WatchStreamOptions): WatchStream => {
    const stream = watchStreamOf(viewer, logger, options);
    subscriptions.push(stream.activity$.subscribe((step) => activity.push(step)));
    return stream;
  };
  const watch = (stream: WatchStream, prefix: string, fromRevision: number, listener: WatchListener) => {
    const handle = stream.watchPrefix(prefix, fromRevision, listener);
    handles.push(handle);
    return handle;
  };
  const nextRevision = async () => Number((await env.direct.get("any").exec()).header.revision) + 1;
  const unknownIdRecords = () =>
    records.filter((r) => r.message === "watch response for an unknown watch id ignored");

  test("watches share one stream and each response reaches the watch whose id this client assigned", async () => {
    const stream = streamOf();
    const from = await nextRevision();
    const p = recorder();
    const q = recorder();
    const hp = watch(stream, "p/", from, p.listener);
    const hq = watch(stream, "q/", from, q.listener);
    await env.direct.put("p/1").value("1");
    await env.direct.put("q/1").value("1");
    await env.direct
      .if("p/1", "Create", ">", 0)
      .then(env.direct.put("p/2").value("2"), env.direct.put("q/2").value("2"))
      .commit();
    await env.direct.delete().key("p/1");

    await waitUntil("both watches' events", () => p.events.length === 3 && q.events.length === 2);
    expect(p.events).toEqual(["put:p/1", "put:p/2", "delete:p/1"]);
    expect(q.events).toEqual(["put:q/1", "put:q/2"]);
    expect(hp.id).not.toBe(hq.id);
    expect(activity.filter((step) => step.kind === "opened")).toHaveLength(1);
  });

  test("a create from a compacted revision cancels that watch alone; watches created after it attach", async () => {
    const stream = streamOf();
    for (let i = 0; i < 5; i++) await env.direct.put(`c/${i}`).value(String(i));
    const from = await nextRevision();
    await env.direct.kv.compact({ revision: String(from - 1), physical: true });
    const compacted = recorder();
    const later = [recorder(), recorder()];
    watch(stream, "c/", 2, compacted.listener);
    watch(stream, "d/", from, later[0]?.listener ?? recorder().listener);
    watch(stream, "e/", from, later[1]?.listener ?? recorder().listener);
    await env.direct.put("d/1").value("1");
    await env.direct.put("e/1").value("1");

    await waitUntil(
      "the compacted watch's cancel and the others' events",
      () => compacted.canceled.length === 1 && later.every((r) => r.events.length === 1),
    );
    expect(compacted.canceled[0]?.compactRevision).toBe(from - 1);
    expect(later.map((r) => r.events)).toEqual([["put:d/1"], ["put:e/1"]]);
    expect(stream.size).toBe(2);
  });

  test("a create etcd refuses without naming it cancels the oldest unanswered create, not another", async () => {
    const stream = streamOf();
    const from = await nextRevision();
    const before = recorder();
    const refused = recorder();
    const after = recorder();
    watch(stream, "b/", from, before.listener);
    await waitUntil("the first watch to attach", () => before.attached.length === 1);
    // An empty range (key after range end): etcd answers with watch_id -1.
    handles.push(stream.watchRange(Buffer.from("y"), Buffer.from("x"), from, refused.listener));
    watch(stream, "a/", from, after.listener);
    await env.direct.put("b/1").value("1");
    await env.direct.put("a/1").value("1");

    await waitUntil(
      "the refusal and the other watches' events",
      () => refused.canceled.length === 1 && before.events.length === 1 && after.events.length === 1,
    );
    expect(refused.canceled[0]?.compactRevision).toBe(0);
    expect(refused.canceled[0]?.reason).not.toBe("");
    expect(before.canceled).toEqual([]);
    expect(after.canceled).toEqual([]);
    expect([before.events, after.events]).toEqual([["put:b/1"], ["put:a/1"]]);
  });

  test("the stream closes with its last watch, or as soon as it opens if none is left, and reopens for a new one", async () => {
    const stream = streamOf();
    const opened = () => activity.filter((step) => step.kind === "opened").length;
    stream.watchPrefix("p/", await nextRevision(), recorder().listener).cancel();
    await sleep(300);
    expect(opened()).toBe(0);

    const first = recorder();
    const handle = stream.watchPrefix("p/", await nextRevision(), first.listener);
    await waitUntil("the first watch to attach", () => first.attached.length === 1);
    handle.cancel();
    const second = recorder();
    watch(stream, "p/", await nextRevision(), second.listener);
    await env.direct.put("p/1").value("1");
    await waitUntil("the second watch's event", () => second.events.length === 1);
    expect(opened()).toBe(2);
    expect(first.events).toEqual([]);
  });

  test("responses for unknown ids are ignored, and cancelling a watch already gone sends nothing", async () => {
    const stream = streamOf();
    const from = await nextRevision();
    const keeper = recorder();
    watch(stream, "k/", from, keeper.listener);
    await waitUntil("the keeper to attach", () => keeper.attached.length === 1);

    // Cancelled before its create reply: the reply, then the cancel's reply, name an id now unknown.
    stream.watchPrefix("g/", from, recorder().listener).cancel();
    await waitUntil("the reply for the cancelled watch", () => unknownIdRecords().length > 0);

    // Cancelled by etcd (compaction), then cancelled twice more by its owner.
    await env.direct.put("c/1").value("1");
    const compactAt = await nextRevision();
    await env.direct.put("c/2").value("2");
    await env.direct.kv.compact({ revision: String(compactAt), physical: true });
    const compacted = recorder();
    const gone = stream.watchPrefix("c/", compactAt - 1, compacted.listener);
    await waitUntil("etcd to cancel the compacted watch", () => compacted.canceled.length === 1);
    const unknownBefore = unknownIdRecords().length;
    gone.cancel();
    gone.cancel();
    // etcd answers a stream's requests in order, so a reply to a cancel would come before this create's.
    const after = recorder();
    watch(stream, "a/", await nextRevision(), after.listener);
    await waitUntil("a later watch to attach", () => after.attached.length === 1);
    expect(unknownIdRecords().slice(unknownBefore)).toEqual([]);

    await env.direct.put("k/1").value("1");
    await waitUntil("the keeper's event", () => keeper.events.length === 1);
    expect(activity.filter((step) => step.kind === "broken")).toEqual([]);
  });

  test("a cancelled watch is cancelled in etcd too: no response for it arrives afterwards", async () => {
    const stream = streamOf();
    const from = await nextRevision();
    const keeper = recorder();
    const dropped = recorder();
    watch(stream, "k/", from, keeper.listener);
    const handle = stream.watchPrefix("d/", from, dropped.listener);
    await waitUntil(
      "both watches to attach",
      () => keeper.attached.length === 1 && dropped.attached.length === 1,
    );
    handle.cancel();
    await waitUntil("etcd to confirm the cancel", () =>
      unknownIdRecords().some((r) => r.watchId === String(handle.id) && r.canceled === true),
    );
    await env.direct.put("d/1").value("1");
    await env.direct.put("k/1").value("1");
    await waitUntil("the keeper's event", () => keeper.events.length === 1);
    await sleep(100);
    expect(dropped.events).toEqual([]);
    expect(unknownIdRecords().filter((r) => r.events !== 0)).toEqual([]);
  });

  test("an exception thrown by a listener never escapes into gRPC's handlers", async () => {
    const stream = streamOf();
    const from = await nextRevision();
    const faulty = recorder();
    const fine = recorder();
    watch(stream, "b/", from, {
      ...faulty.listener,
      events: () => {
        throw new Error("listener bug");
      },
    });
    watch(stream, "g/", from, fine.listener);
    await env.direct.put("b/1").value("1");
    await env.direct.put("g/1").value("1");
    await waitUntil("the other watch's event", () => fine.events.includes("put:g/1"));
    expect(records.some((r) => r.message === "watch stream handler failed, reopening the stream")).toBe(true);
    await env.direct.put("g/2").value("2");
    await waitUntil("the other watch's next event", () => fine.events.includes("put:g/2"));
    expect(fine.events).toEqual(["put:g/1", "put:g/2"]);
  });

  test("a link cut right after the create reply: the watch resumes from its own last delivered revision (10 trials)", async () => {
    const stream = streamOf({ reconnect: { initialMs: 20, maxMs: 200 } });
    for (let trial = 0; trial < 10; trial++) {
      const prefix = `t${trial}/`;
      const from = await nextRevision();
      const keys = Array.from({ length: 20 }, (_, i) => `${prefix}${String(i).padStart(2, "0")}`);
      for (const key of keys) await env.direct.put(key).value("v");
      const seen = recorder();
      let handle: WatchHandle | undefined;
      let cut = false;
      const hook = stream.activity$.subscribe((step) => {
        if (step.kind === "created" && step.watchId === handle?.id && !cut) {
          cut = true;
          env.proxy.setMode("reset");
          setTimeout(() => env.proxy.setMode("pass"), 20);
        }
      });
      handle = stream.watchPrefix(prefix, from, seen.listener);
      await waitUntil(`trial ${trial}: every catch-up event`, () => seen.events.length >= keys.length);
      await sleep(50);
      handle.cancel();
      hook.unsubscribe();
      expect(cut).toBe(true);
      expect(seen.events).toEqual(keys.map((key) => `put:${key}`));
      expect(strictlyIncreasing(seen.revisions)).toBe(true);
    }
  });

  test("a link cut while catch-up events stream in several responses: none missed, none repeated", async () => {
    const stream = streamOf({ reconnect: { initialMs: 20, maxMs: 200 } });
    const from = await nextRevision();
    // etcd sends at most 1,000 revisions per catch-up response.
    const keys = Array.from({ length: 2_500 }, (_, i) => `big/${String(i).padStart(4, "0")}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((key) => env.direct.put(key).value("v")));
    }
    const seen = recorder();
    let handle: WatchHandle | undefined;
    let responses = 0;
    subscriptions.push(
      stream.activity$.subscribe((step) => {
        if (step.kind === "events" && step.watchId === handle?.id && ++responses === 1) {
          env.proxy.setMode("reset");
          setTimeout(() => env.proxy.setMode("pass"), 20);
        }
      }),
    );
    handle = watch(stream, "big/", from, seen.listener);
    await waitUntil("every catch-up event", () => seen.events.length >= keys.length, 30_000);
    await sleep(100);
    expect(responses).toBeGreaterThan(1);
    expect(activity.some((step) => step.kind === "broken")).toBe(true);
    expect(seen.events).toHaveLength(keys.length);
    expect(new Set(seen.events).size).toBe(keys.length);
    expect(strictlyIncreasing(seen.revisions)).toBe(true);
  });

  test("the last events of a dropped stream do not touch its successor: one cut, one reconnect", async () => {
    // Reconnecting at once, so that a dropped stream's late events could meet its successor.
    const stream = streamOf({ reconnect: { initialMs: 1, maxMs: 2 } });
    const seen = recorder();
    watch(stream, "p/", await nextRevision(), seen.listener);
    await waitUntil("the watch to attach", () => seen.attached.length === 1);
    env.proxy.setMode("reset");
    env.proxy.setMode("pass");
    await waitUntil("the watch to attach again", () => seen.attached.length === 2);
    await sleep(500);
    await env.direct.put("p/1").value("1");
    await waitUntil("the event", () => seen.events.length === 1);
    expect(activity.filter((step) => step.kind === "broken")).toHaveLength(1);
    expect(seen.attached).toEqual([false, true]);
  });

  test("a blackholed stream is noticed by its progress probe and reopened; events sent meanwhile arrive", async () => {
    const stream = streamOf({
      probeIntervalMs: 200,
      probeTimeoutMs: 300,
      reconnect: { initialMs: 50, maxMs: 300 },
    });
    const seen = recorder();
    watch(stream, "p/", await nextRevision(), seen.listener);
    await waitUntil("the watch to attach", () => seen.attached.length === 1);

    env.proxy.setMode("blackhole");
    await env.direct.put("p/during").value("1");
    await waitUntil("the probe to give up on the stream", () =>
      activity.some((step) => step.kind === "broken" && step.reason === "no reply to a progress request"),
    );
    env.proxy.setMode("pass");
    await env.direct.put("p/after").value("2");

    await waitUntil("both events", () => seen.events.length >= 2, 30_000);
    expect(seen.events).toEqual(["put:p/during", "put:p/after"]);
    expect(records.some((r) => r.message === "watch stream silent, reopening it")).toBe(true);
    // Once the link is back, answered probes keep the stream.
    const broken = activity.filter((step) => step.kind === "broken").length;
    await sleep(1_500);
    expect(activity.filter((step) => step.kind === "broken").length).toBe(broken);
  });

  test("while etcd is down the stream is reopened with backoff, not in a busy loop, and resumes after", async () => {
    const stream = streamOf({ reconnect: { initialMs: 100, maxMs: 1_000 } });
    const seen = recorder();
    watch(stream, "p/", await nextRevision(), seen.listener);
    await env.direct.put("p/1").value("1");
    await waitUntil("the first event", () => seen.events.length === 1);

    const member = env.etcd.members[0];
    if (member === undefined) throw new Error("no etcd member");
    await member.stop();
    await sleep(3_000);
    const attempts = activity.filter((step) => step.kind === "broken").length;
    await member.restart();
    await env.direct.put("p/2").value("2");

    await waitUntil("the event after the restart", () => seen.events.length === 2, 30_000);
    // 100, 200, 400, 800, 1000… ms (each jittered down to half): at most ~8 attempts in 3 s.
    expect(attempts).toBeGreaterThan(0);
    expect(attempts).toBeLessThan(15);
    expect(seen.events).toEqual(["put:p/1", "put:p/2"]);
    expect(seen.attached).toContain(true);
  });

  test("bad options are refused with an error naming the option", () => {
    expect(() => watchStreamOf(viewer, logger, { probeIntervalMs: 0 })).toThrow(/probeIntervalMs/);
    expect(() => watchStreamOf(viewer, logger, { probeTimeoutMs: Number.NaN })).toThrow(/probeTimeoutMs/);
    expect(() => watchStreamOf(viewer, logger, { reconnect: { initialMs: 10, maxMs: -1 } })).toThrow(
      /reconnect\.maxMs/,
    );
  });
});
