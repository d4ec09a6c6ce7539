import { describe, expect, it } from "vitest";
import { createActor, type SnapshotFrom } from "xstate";
import { createTestModel, type TestParam } from "xstate/graph";
import type { LeaderSeat, LeadersChanged } from "../../machines/events.js";
import { type FollowerOutput, followerMachine } from "../../machines/follower.js";
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
  transitionKeyed,
} from "./support.js";

type Snap = SnapshotFrom<typeof followerMachine>;
const M = "follower";

/** A seat as the follower may see it: vacant, held by another node, or held by this one. */
const SEATS = {
  vacant: undefined,
  other: (token: number): LeaderSeat => ({ nodeId: 8, token, mine: false }),
  mine: (token: number): LeaderSeat => ({ nodeId: 3, token, mine: true }),
};
type SeatKind = "vacant" | "other" | "mine";
const KINDS: SeatKind[] = ["vacant", "other", "mine"];
const seat = (kind: SeatKind, token: number) => (kind === "vacant" ? undefined : SEATS[kind](token));

/** Every combination of the primary (token 10) and backup (token 20) seats. */
const EVENTS: LeadersChanged[] = KINDS.flatMap((p) =>
  KINDS.map((b) => {
    const event: LeadersChanged = { type: "LEADERS_CHANGED" };
    const primary = seat(p, 10);
    const backup = seat(b, 20);
    if (primary) event.primary = primary;
    if (backup) event.backup = backup;
    return event;
  }),
);

const EFFECTS = effectNames(followerMachine);

/**
 * What the design says a follower does on one view of the leader keys: resume a key that is
 * still its own (the primary first); run for primary when both are vacant; run for backup when
 * only the backup is vacant; otherwise (only the primary vacant, or both held) keep watching.
 */
function decide(e: LeadersChanged): FollowerOutput | "watch" {
  if (e.primary?.mine) return { kind: "resume", office: { slot: 1, token: e.primary.token } };
  if (e.backup?.mine) return { kind: "resume", office: { slot: 2, token: e.backup.token } };
  if (!e.primary && !e.backup) return { kind: "campaign", slot: 1 };
  if (e.primary && !e.backup) return { kind: "campaign", slot: 2 };
  return "watch";
}

function expectedEffects(from: string | undefined, to: string): Effect[] {
  if (from === to) return [];
  return to === "watchingLeaders" ? [effect(M, "readLeaders")] : [];
}

/**
 * Safety on every step: never a campaign for primary while a backup (or a primary) is present,
 * never a campaign for backup unless the primary is held and the backup vacant, never a campaign
 * for a key this node still holds, and a resumed office is exactly the seat that is this node's.
 */
function checkSafety(event: LeadersChanged, real: Snap, where: string): void {
  if (real.status !== "done") {
    expect(decide(event), `${where}: still watching`).toBe("watch");
    return;
  }
  const out = real.output as FollowerOutput;
  if (out.kind === "campaign" && out.slot === 1) {
    expect(event.backup, `${where}: campaign for primary while a backup is present`).toBeUndefined();
    expect(event.primary, `${where}: campaign for primary while a primary is present`).toBeUndefined();
  }
  if (out.kind === "campaign" && out.slot === 2) {
    expect(event.primary, `${where}: campaign for backup without a primary`).toBeDefined();
    expect(event.backup, `${where}: campaign for backup while a backup is present`).toBeUndefined();
  }
  if (out.kind === "campaign") {
    expect(Boolean(event.primary?.mine || event.backup?.mine), `${where}: campaign for a held key`).toBe(
      false,
    );
  }
  if (out.kind === "resume") {
    const held = out.office.slot === 1 ? event.primary : event.backup;
    expect(held, `${where}: resumed a seat that is not mine`).toMatchObject({
      mine: true,
      token: out.office.token,
    });
  }
  expect(out, `${where}: output`).toEqual(decide(event));
}

const model = createTestModel(followerMachine, { events: EVENTS });
const keyed = { serializeState: transitionKeyed<Snap>() };
const shortest = model.getShortestPaths(keyed);
// Views that keep the follower watching, then every view after one of them: two-step paths.
const waiting = shortest.filter((p) => p.state.value === "watchingLeaders" && eventsOf(p).length > 0);
const afterWaiting = model.getShortestPathsFrom(waiting, keyed);
const simple = model.getSimplePaths();
const paths = dedupePaths([...shortest, ...afterWaiting, ...simple]);
const coverage = new Coverage();

describe("follower model", () => {
  it("names exactly the effects this suite checks", () => {
    expect(EFFECTS).toEqual(["readLeaders"]);
  });

  it("the event list has all nine primary x backup combinations", () => {
    expect(new Set(EVENTS.map((e) => JSON.stringify(e))).size).toBe(9);
  });

  for (const path of paths) {
    it(`path: ${describePath(eventsOf(path))}`, async () => {
      const log = new EffectLog();
      const actor = createActor(followerMachine.provide({ actions: log.actions(M, EFFECTS) }), {
        inspect: coverage.inspect,
      });
      const history: LeadersChanged[] = [];
      let from: string | undefined;
      actor.start();

      const verify = (modelState: Snap) => {
        const where = describePath(history);
        const real = actor.getSnapshot();
        expectSameState(real, modelState, where);
        expect(log.take(), `${where}: effects`).toEqual(expectedEffects(from, String(modelState.value)));
        const last = history.at(-1);
        if (last) checkSafety(last, real, where);
      };
      const events: TestParam<Snap, LeadersChanged>["events"] = {
        LEADERS_CHANGED: ({ event }) => {
          from = String(actor.getSnapshot().value);
          history.push(event as LeadersChanged);
          actor.send(event as LeadersChanged);
        },
      };
      const states = Object.fromEntries(allStateIds(followerMachine).map((id) => [`#${id}`, verify]));

      await path.test({ events, states });
      actor.stop();
    });
  }

  it("reaches every state and takes every transition", () => {
    const onPaths = statesOnPaths(paths);
    expect(allStateIds(followerMachine).filter((id) => !onPaths.has(id))).toEqual([]);
    const report = coverage.report(followerMachine);
    expect(report.missingStates).toEqual([]);
    expect(report.missingTransitions).toEqual([]);
    console.info(`${report.summary}; ${paths.length} paths`);
  });
});
