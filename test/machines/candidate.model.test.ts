import { describe, expect, it } from "vitest";
import { createActor, type SnapshotFrom } from "xstate";
import { createTestModel, type TestParam } from "xstate/graph";
import { type CandidateEvent, type CandidateOutput, candidateMachine } from "../../machines/candidate.js";
import type { LeaderSlot } from "../../machines/events.js";
import {
  allStateIds,
  Coverage,
  dedupePaths,
  describePath,
  EffectLog,
  effect,
  effectNames,
  eventsOf,
  expectSameState,
  statesOnPaths,
  transitionKeyed,
} from "./support.js";

type Snap = SnapshotFrom<typeof candidateMachine>;
const M = "candidate";

const EVENTS: CandidateEvent[] = [
  { type: "CAMPAIGN_WON", token: 31 },
  { type: "CAMPAIGN_LOST" },
  { type: "ETCD_FAILED", error: "etcdserver: leader changed" },
];

const EFFECTS = effectNames(candidateMachine);
const SLOTS: LeaderSlot[] = [1, 2];
const coverage = new Coverage();

/** The design: one campaign transaction for the slot; won only on CAMPAIGN_WON, with its token. */
function expectedOutput(slot: LeaderSlot, event: CandidateEvent): CandidateOutput {
  return event.type === "CAMPAIGN_WON" ? { kind: "won", slot, token: event.token } : { kind: "lost" };
}

const models = SLOTS.map((slot) => {
  const model = createTestModel(candidateMachine, { events: EVENTS, input: { slot } });
  const keyed = { serializeState: transitionKeyed<Snap>() };
  const paths = dedupePaths([...model.getShortestPaths(keyed), ...model.getSimplePaths(keyed)]);
  return { slot, paths };
});

describe("candidate model", () => {
  it("names exactly the effects this suite checks", () => {
    expect(EFFECTS).toEqual(["campaign"]);
  });

  for (const { slot, paths } of models) {
    describe(`running for slot ${slot}`, () => {
      for (const path of paths) {
        it(`path: ${describePath(eventsOf(path))}`, async () => {
          const log = new EffectLog();
          const actor = createActor(candidateMachine.provide({ actions: log.actions(M, EFFECTS) }), {
            input: { slot },
            inspect: coverage.inspect,
          });
          const history: CandidateEvent[] = [];
          actor.start();

          const verify = (modelState: Snap) => {
            const where = `slot ${slot}: ${describePath(history)}`;
            const real = actor.getSnapshot();
            expectSameState(real, modelState, where);
            const last = history.at(-1);
            // campaigning is only ever the initial state: the campaign runs once, on start.
            expect(log.take(), `${where}: effects`).toEqual(last ? [] : [effect(M, "campaign", { slot })]);
            if (!last) {
              expect(real.status).toBe("active");
              return;
            }
            const out = real.output as CandidateOutput;
            expect(out, `${where}: output`).toEqual(expectedOutput(slot, last));
            // Safety: a win is for the slot campaigned for, and only a won transaction wins.
            if (out.kind === "won") {
              expect(last.type).toBe("CAMPAIGN_WON");
              expect(out.slot).toBe(slot);
            }
            if (last.type === "ETCD_FAILED")
              expect(out.kind, `${where}: an etcd error is a lost campaign`).toBe("lost");
          };
          const events = Object.fromEntries(
            EVENTS.map((e) => [
              e.type,
              ({ event }: { event: CandidateEvent }) => {
                history.push(event);
                actor.send(event);
              },
            ]),
          ) as TestParam<Snap, CandidateEvent>["events"];
          const states = Object.fromEntries(allStateIds(candidateMachine).map((id) => [`#${id}`, verify]));

          await path.test({ events, states });
          actor.stop();
        });
      }
    });
  }

  it("reaches every state and takes every transition", () => {
    const all = models.flatMap((m) => m.paths);
    const onPaths = statesOnPaths(all);
    expect(allStateIds(candidateMachine).filter((id) => !onPaths.has(id))).toEqual([]);
    const report = coverage.report(candidateMachine);
    expect(report.missingStates).toEqual([]);
    expect(report.missingTransitions).toEqual([]);
    console.info(`${report.summary}; ${all.length} paths`);
  });
});
