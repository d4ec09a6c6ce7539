import { describe, expect, it } from "vitest";
import { createActor, type SnapshotFrom } from "xstate";
import { createTestModel, type TestParam } from "xstate/graph";
import {
  type FailoverAdvertiserEvent,
  failoverAdvertiserMachine,
} from "../../machines/failoverAdvertiser.js";
import {
  ADVERTISER_EVENTS,
  AdvertiserSpec,
  allStateIds,
  Coverage,
  dedupePaths,
  describePath,
  type Effect,
  EffectLog,
  effect,
  effectNames,
  eventsOf,
  expectSameState,
  STATE_OF_PHASE,
  stateKeyed,
  statesOnPaths,
  transientStateIds,
  transitionKeyed,
} from "./support.js";

type Snap = SnapshotFrom<typeof failoverAdvertiserMachine>;
const M = "failoverAdvertiser";

const EVENTS = ADVERTISER_EVENTS;

const EFFECTS = effectNames(failoverAdvertiserMachine);

const model = createTestModel(failoverAdvertiserMachine, { events: EVENTS });
const shortest = model.getShortestPaths({ serializeState: transitionKeyed<Snap>() });
const simple = model.getSimplePaths({ serializeState: stateKeyed<Snap>() });
const paths = dedupePaths([...shortest, ...simple]);
const coverage = new Coverage();

describe("failoverAdvertiser model", () => {
  it("names exactly the effects this suite checks", () => {
    expect(EFFECTS).toEqual(["advertiseSlots", "readMissingSlots", "scheduleRetry"]);
  });

  for (const path of paths) {
    it(`path: ${describePath(eventsOf(path))}`, async () => {
      const log = new EffectLog();
      const actor = createActor(failoverAdvertiserMachine.provide({ actions: log.actions(M, EFFECTS) }), {
        inspect: coverage.inspect,
      });
      const spec = new AdvertiserSpec();
      const history: FailoverAdvertiserEvent[] = [];
      let expected: Effect[] = spec.start();
      actor.start();

      const verify = (modelState: Snap) => {
        const where = describePath(history);
        const real = actor.getSnapshot();
        expectSameState(real, modelState, where);
        expect(real.value, `${where}: phase`).toBe(STATE_OF_PHASE[spec.phase]);
        const effects = log.take();
        expect(effects, `${where}: effects`).toEqual(expected);
        for (const e of effects) {
          if (e.name === "advertiseSlots")
            expect((e.params as { ids: number[] }).ids.length, `${where}: empty batch`).toBeGreaterThan(0);
        }
      };
      const events = Object.fromEntries(
        EVENTS.map((e) => [
          e.type,
          ({ event }: { event: FailoverAdvertiserEvent }) => {
            history.push(event);
            expected = spec.step(event);
            actor.send(event);
          },
        ]),
      ) as TestParam<Snap, FailoverAdvertiserEvent>["events"];
      const states = Object.fromEntries(
        allStateIds(failoverAdvertiserMachine).map((id) => [`#${id}`, verify]),
      );

      await path.test({ events, states });
      actor.stop();
    });
  }

  it("advertises the latest missing IDs: changes during a batch replace each other and go next", () => {
    const log = new EffectLog();
    const actor = createActor(failoverAdvertiserMachine.provide({ actions: log.actions(M, EFFECTS) }));
    actor.start();
    actor.send({ type: "MEMBERS_CHANGED", missing: [4] });
    actor.send({ type: "MEMBERS_CHANGED", missing: [4, 5] });
    actor.send({ type: "MEMBERS_CHANGED", missing: [5, 6] });
    actor.send({ type: "SLOTS_ADVERTISED" });
    actor.send({ type: "SLOTS_ADVERTISED" });
    expect(log.all).toEqual([
      effect(M, "readMissingSlots"),
      effect(M, "advertiseSlots", { ids: [4] }),
      effect(M, "advertiseSlots", { ids: [5, 6] }),
    ]);
    expect(actor.getSnapshot().value).toBe("watchingMembers");
  });

  // Regression: `advertising` used to clear `pending` on entry and drop a failed batch, so after
  // ADVERTISE_FAILED -> waitingToRetry -> RETRY the failed IDs were never advertised again (the
  // runtime's missing-slot stream is distinctUntilChanged: no new MEMBERS_CHANGED comes for the
  // same set). The machine now keeps the batch in flight and retries it: RETRY re-advertises [4].
  it("retries a failed batch: ADVERTISE_FAILED then RETRY advertises the same IDs again", () => {
    const log = new EffectLog();
    const actor = createActor(failoverAdvertiserMachine.provide({ actions: log.actions(M, EFFECTS) }));
    const spec = new AdvertiserSpec();
    actor.start();
    const events: FailoverAdvertiserEvent[] = [
      { type: "MEMBERS_CHANGED", missing: [4] },
      { type: "ADVERTISE_FAILED", error: "etcdserver: request timed out" },
      { type: "RETRY" },
    ];
    const expected = [...spec.start(), ...events.flatMap((e) => spec.step(e))];
    for (const e of events) actor.send(e);
    expect(expected).toEqual([
      effect(M, "readMissingSlots"),
      effect(M, "advertiseSlots", { ids: [4] }),
      effect(M, "scheduleRetry"),
      effect(M, "advertiseSlots", { ids: [4] }),
    ]);
    expect(log.all).toEqual(expected);
    expect(actor.getSnapshot().value).toBe("advertising");
  });

  it("retries the newer missing set instead of a failed batch when one arrived while it was in flight", () => {
    const log = new EffectLog();
    const actor = createActor(failoverAdvertiserMachine.provide({ actions: log.actions(M, EFFECTS) }));
    const spec = new AdvertiserSpec();
    actor.start();
    const events: FailoverAdvertiserEvent[] = [
      { type: "MEMBERS_CHANGED", missing: [4] },
      { type: "MEMBERS_CHANGED", missing: [4, 5] },
      { type: "ADVERTISE_FAILED", error: "etcdserver: request timed out" },
      { type: "RETRY" },
      { type: "SLOTS_ADVERTISED" },
    ];
    const expected = [...spec.start(), ...events.flatMap((e) => spec.step(e))];
    for (const e of events) actor.send(e);
    expect(expected).toEqual([
      effect(M, "readMissingSlots"),
      effect(M, "advertiseSlots", { ids: [4] }),
      effect(M, "scheduleRetry"),
      effect(M, "advertiseSlots", { ids: [4, 5] }),
    ]);
    expect(log.all).toEqual(expected);
    expect(actor.getSnapshot().value).toBe("watchingMembers");
    expect(actor.getSnapshot().context).toEqual({ pending: [], inFlight: [] });
  });

  it("reaches every state and takes every transition", () => {
    const onPaths = statesOnPaths(paths);
    const stable = allStateIds(failoverAdvertiserMachine).filter(
      (id) => !transientStateIds(failoverAdvertiserMachine).includes(id),
    );
    expect(stable.filter((id) => !onPaths.has(id))).toEqual([]);
    const report = coverage.report(failoverAdvertiserMachine);
    expect(report.missingStates).toEqual([]);
    expect(report.missingTransitions).toEqual([]);
    console.info(`${report.summary}; ${paths.length} paths`);
  });
});
