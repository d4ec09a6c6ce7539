import { describe, expect, it } from "vitest";
import { createActor, type SnapshotFrom } from "xstate";
import { createTestModel, type TestParam } from "xstate/graph";
import { type BootstrapIdEvent, bootstrapIdMachine } from "../../machines/bootstrapId.js";
import {
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
  statesOnPaths,
  transientStateIds,
  transitionKeyed,
} from "./support.js";

type Snap = SnapshotFrom<typeof bootstrapIdMachine>;
const M = "bootstrapId";

/** One representative payload per event; IDs differ so that the output tells the route. */
const EVENTS: BootstrapIdEvent[] = [
  { type: "SLOT_CLAIMED", id: 7 },
  { type: "NO_SLOT_CLAIMED" },
  { type: "ID_ALLOCATED", id: 3 },
  { type: "CLUSTER_FULL" },
  { type: "SLOT_ADVERTISED" },
  { type: "ETCD_FAILED", error: "etcdserver: request timed out" },
  { type: "RETRY" },
];

const EFFECTS = effectNames(bootstrapIdMachine);

/**
 * The effects the design asks for on one step, from the state left, the state entered and the
 * events so far: each phase starts its etcd step on entry; leaving the wait stops the watch;
 * every back-off is scheduled with the number of failures so far.
 */
function expectedEffects(
  from: string | undefined,
  to: string,
  history: readonly BootstrapIdEvent[],
): Effect[] {
  if (from === to) return [];
  const out: Effect[] = [];
  if (from === "waitingForAdvertisedSlot") out.push(effect(M, "stopAwaitingAdvertisedSlot"));
  if (to === "claimingAdvertisedSlot") out.push(effect(M, "claimAdvertisedSlot"));
  if (to === "allocatingFreshId") out.push(effect(M, "allocateFreshId"));
  if (to === "waitingForAdvertisedSlot") out.push(effect(M, "awaitAdvertisedSlot"));
  if (to === "backingOff") {
    const failures = history.filter((e) => e.type === "ETCD_FAILED").length;
    out.push(effect(M, "scheduleRetry", { failures }));
  }
  return out;
}

/** The output the design asks for: the ID from the claim or the allocation, and which it was. */
function expectedOutput(history: readonly BootstrapIdEvent[]) {
  const last = history.at(-1);
  if (last?.type === "SLOT_CLAIMED") return { id: last.id, via: "failover" };
  if (last?.type === "ID_ALLOCATED") return { id: last.id, via: "fresh" };
  throw new Error(`identified after ${last?.type}`);
}

const model = createTestModel(bootstrapIdMachine, { events: EVENTS });
// `failures` grows without bound, so vertices abstract it away; effects still check its value.
const byValue = (s: Snap) => ({ value: s.value, id: s.context.id, via: s.context.via });
const shortest = model.getShortestPaths({ serializeState: transitionKeyed(byValue) });
const simple = model.getSimplePaths({ serializeState: transitionKeyed(byValue) });
const paths = dedupePaths([...shortest, ...simple]);
const coverage = new Coverage();

describe("bootstrapId model", () => {
  it("names exactly the effects this suite checks", () => {
    expect(EFFECTS).toEqual([
      "allocateFreshId",
      "awaitAdvertisedSlot",
      "claimAdvertisedSlot",
      "scheduleRetry",
      "stopAwaitingAdvertisedSlot",
    ]);
  });

  for (const path of paths) {
    it(`path: ${describePath(eventsOf(path))}`, async () => {
      const log = new EffectLog();
      const actor = createActor(bootstrapIdMachine.provide({ actions: log.actions(M, EFFECTS) }), {
        inspect: coverage.inspect,
      });
      const history: BootstrapIdEvent[] = [];
      let from: string | undefined;
      actor.start();

      const verify = (modelState: Snap) => {
        const where = describePath(history);
        const real = actor.getSnapshot();
        // The traversal keys vertices without `failures`, so only the rest is compared with the
        // model; `failures` is checked against the events instead.
        expectSameState(real, modelState, where, ({ id, via }) => ({ id, via }));
        expect(real.context.failures).toBe(history.filter((e) => e.type === "ETCD_FAILED").length);
        const to = String(modelState.value);
        expect(log.take(), `${where}: effects`).toEqual(expectedEffects(from, to, history));
        if (to === "identified") expect(real.output, `${where}: output`).toEqual(expectedOutput(history));
        else expect(real.status).toBe("active");
      };
      const events = Object.fromEntries(
        EVENTS.map((e) => [
          e.type,
          ({ event }: { event: BootstrapIdEvent }) => {
            from = String(actor.getSnapshot().value);
            history.push(event);
            actor.send(event);
          },
        ]),
      ) as TestParam<Snap, BootstrapIdEvent>["events"];
      const states = Object.fromEntries(allStateIds(bootstrapIdMachine).map((id) => [`#${id}`, verify]));

      await path.test({ events, states });
      actor.stop();
    });
  }

  it("claims, else allocates, else waits for an advertisement; each failure backs off longer", () => {
    const log = new EffectLog();
    const actor = createActor(bootstrapIdMachine.provide({ actions: log.actions(M, EFFECTS) }));
    actor.start();
    for (const e of [
      { type: "ETCD_FAILED", error: "down" },
      { type: "RETRY" },
      { type: "ETCD_FAILED", error: "down" },
      { type: "RETRY" },
      { type: "NO_SLOT_CLAIMED" },
      { type: "CLUSTER_FULL" },
      { type: "SLOT_ADVERTISED" },
      { type: "SLOT_CLAIMED", id: 12 },
    ] satisfies BootstrapIdEvent[])
      actor.send(e);
    expect(log.all.map((e) => [e.name, e.params])).toEqual([
      ["claimAdvertisedSlot", undefined],
      ["scheduleRetry", { failures: 1 }],
      ["claimAdvertisedSlot", undefined],
      ["scheduleRetry", { failures: 2 }],
      ["claimAdvertisedSlot", undefined],
      ["allocateFreshId", undefined],
      ["awaitAdvertisedSlot", undefined],
      ["stopAwaitingAdvertisedSlot", undefined],
      ["claimAdvertisedSlot", undefined],
    ]);
    expect(actor.getSnapshot().output).toEqual({ id: 12, via: "failover" });
  });

  it("reaches every state and takes every transition", () => {
    const onPaths = statesOnPaths(paths);
    const stable = allStateIds(bootstrapIdMachine).filter(
      (id) => !transientStateIds(bootstrapIdMachine).includes(id),
    );
    expect(stable.filter((id) => !onPaths.has(id))).toEqual([]);
    const report = coverage.report(bootstrapIdMachine);
    expect(report.missingStates).toEqual([]);
    expect(report.missingTransitions).toEqual([]);
    console.info(`${report.summary}; ${paths.length} paths`);
  });
});
