import { describe, expect, it } from "vitest";
import { assign, createActor, type SnapshotFrom, setup } from "xstate";
import { createTestModel, getPathsFromEvents, getShortestPaths, getSimplePaths } from "xstate/graph";
import type { LeaderSeat, Office } from "../../machines/events.js";
import { failoverAdvertiserMachine } from "../../machines/failoverAdvertiser.js";
import { type GroupLeaderEvent, groupLeaderMachine, type OfficeChanged } from "../../machines/groupLeader.js";
import {
  ADVERTISER_EVENTS,
  AdvertiserSpec,
  allStateIds,
  byMachine,
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

type Snap = SnapshotFrom<typeof groupLeaderMachine>;
const M = "groupLeader";
const A = "failoverAdvertiser";
const PROMOTED_TOKEN = 30;
const OTHER_SEAT_TOKEN = 50;

const other = (token: number): LeaderSeat => ({ nodeId: 8, token, mine: false });
const mine = (token: number): LeaderSeat => ({ nodeId: 3, token, mine: true });

/**
 * Events for a leader in `s`: LEADERS_CHANGED with the leader's own seat vacant, held by another
 * node, held by this node with its token, or held by this node with another token, each with the
 * other seat vacant, held by another node or (impossible, but must not confuse it) by this node;
 * then every other event the leader or its advertiser takes.
 */
function eventsFor(s: Snap): GroupLeaderEvent[] {
  if (s.status !== "active") return [];
  const { slot, token } = s.context;
  const ownSeats = [undefined, other(token), mine(token), mine(token + 1)];
  const otherSeats = [undefined, other(OTHER_SEAT_TOKEN), mine(OTHER_SEAT_TOKEN)];
  const views = ownSeats.flatMap((own) =>
    otherSeats.map((otherSeat): GroupLeaderEvent => {
      const [primary, backup] = slot === 1 ? [own, otherSeat] : [otherSeat, own];
      return { type: "LEADERS_CHANGED", ...(primary && { primary }), ...(backup && { backup }) };
    }),
  );
  return [
    ...views,
    { type: "PROMOTED", token: PROMOTED_TOKEN },
    { type: "PROMOTION_FAILED" },
    { type: "FENCE_LOST" },
    { type: "MEMBERS_CHANGED", missing: [4] },
    { type: "MEMBERS_CHANGED", missing: [] },
    { type: "SLOTS_ADVERTISED" },
    { type: "ADVERTISE_FAILED", error: "etcdserver: request timed out" },
    { type: "RETRY" },
  ];
}

const EFFECTS = effectNames(groupLeaderMachine);
const ADVERTISER_EFFECTS = effectNames(failoverAdvertiserMachine);

/** A group leader whose every effect is recorded; `reportOffice` (a sendParent) records instead. */
function recordingLeader(log: EffectLog) {
  return groupLeaderMachine.provide({
    actions: {
      ...log.actions(M, EFFECTS),
      reportOffice: ({ context }) =>
        log.record(M, "reportOffice", { slot: context.slot, token: context.token }),
    },
    actors: {
      failoverAdvertiser: failoverAdvertiserMachine.provide({ actions: log.actions(A, ADVERTISER_EFFECTS) }),
    },
  });
}

type Phase = "backup" | "promoting" | "primary" | "deposed";

/**
 * The group leader as the design describes it, independently of the machine: it reports its
 * office on taking it; each time it enters the backup office it asks for a fresh read of the
 * leader keys (`readLeaders`, answered by the runtime with LEADERS_CHANGED), since the primary
 * may have gone before it took office and no change would come; a backup is promoted only when
 * the primary key is vacant (and its own backup key is still its own); a leader whose own key is
 * vacant, held by another node or held with another token is deposed at once, as is one whose
 * fenced write fails; the primary runs the advertiser. While a promotion is in flight the fenced
 * promote transaction decides.
 */
class LeaderSpec {
  phase: Phase;
  office: Office;
  advertiser = new AdvertiserSpec();

  constructor(input: Office) {
    this.office = { ...input };
    this.phase = input.slot === 1 ? "primary" : "backup";
  }

  start(): Effect[] {
    const report = [effect(M, "reportOffice", this.office)];
    return this.phase === "primary"
      ? [...report, ...this.advertiser.start()]
      : [...report, effect(M, "readLeaders")];
  }

  ownSeatIntact(e: Extract<GroupLeaderEvent, { type: "LEADERS_CHANGED" }>): boolean {
    const own = this.office.slot === 1 ? e.primary : e.backup;
    return Boolean(own?.mine) && own?.token === this.office.token;
  }

  step(e: GroupLeaderEvent): Effect[] {
    const holding = this.phase === "backup" || this.phase === "primary";
    switch (e.type) {
      case "LEADERS_CHANGED":
        if (!holding) return [];
        if (!this.ownSeatIntact(e)) return this.depose();
        if (this.phase === "backup" && !e.primary) {
          this.phase = "promoting";
          return [effect(M, "promote", { token: this.office.token })];
        }
        return [];
      case "FENCE_LOST":
        return holding ? this.depose() : [];
      case "PROMOTED":
        if (this.phase !== "promoting") return [];
        this.phase = "primary";
        this.office = { slot: 1, token: e.token };
        this.advertiser = new AdvertiserSpec();
        return [effect(M, "reportOffice", this.office), ...this.advertiser.start()];
      case "PROMOTION_FAILED":
        return this.phase === "promoting" ? this.depose() : [];
      default:
        return this.phase === "primary" ? this.advertiser.step(e) : [];
    }
  }

  private depose(): Effect[] {
    this.phase = "deposed";
    return [];
  }
}

// Traversal runs the pure transition function with no parent, where sendParent cannot resolve.
const traversable = groupLeaderMachine.provide({ actions: { reportOffice: () => {} } });
const INPUTS: Office[] = [
  { slot: 1, token: 10 },
  { slot: 2, token: 20 },
];

/**
 * The pure traversal cannot see into the advertiser child (forwarded events do not change the
 * leader's own snapshot), so the advertiser's own model paths are composed in: reach `primary`,
 * run one advertiser path, then lose the fence with the advertiser wherever it is.
 */
const advertiserModel = createTestModel(failoverAdvertiserMachine, { events: ADVERTISER_EVENTS });
const advertiserRuns = dedupePaths(
  advertiserModel.getShortestPaths({
    serializeState: transitionKeyed<SnapshotFrom<typeof failoverAdvertiserMachine>>(),
  }),
).map(eventsOf);
const toPrimary = (input: Office): GroupLeaderEvent[] =>
  input.slot === 1
    ? []
    : [
        { type: "LEADERS_CHANGED", backup: mine(input.token) },
        { type: "PROMOTED", token: 31 },
      ];

const models = INPUTS.map((input) => {
  const shortest = getShortestPaths(traversable, {
    input,
    events: eventsFor,
    serializeState: transitionKeyed<Snap>(),
  });
  const simple = getSimplePaths(traversable, {
    input,
    events: eventsFor,
    serializeState: stateKeyed<Snap>(),
  });
  // getPathsFromEvents ignores `input` (it starts from the input-less initial snapshot), so
  // it is given the initial snapshot the traversal above started from.
  const fromState = shortest[0]?.steps[0]?.state;
  const composed = advertiserRuns.flatMap((run) =>
    getPathsFromEvents(traversable, [...toPrimary(input), ...run, { type: "FENCE_LOST" }], { fromState }),
  );
  return { input, paths: dedupePaths([...shortest, ...simple, ...composed]) };
});
const coverage = new Coverage();

describe("groupLeader model", () => {
  it("names exactly the effects this suite checks", () => {
    expect(EFFECTS).toEqual(["promote", "readLeaders"]);
    expect(ADVERTISER_EFFECTS).toEqual(["advertiseSlots", "readMissingSlots", "scheduleRetry"]);
  });

  for (const { input, paths } of models) {
    describe(`taking office ${JSON.stringify(input)}`, () => {
      for (const path of paths) {
        it(`path: ${describePath(eventsOf(path))}`, () => {
          const log = new EffectLog();
          const actor = createActor(recordingLeader(log), { input, inspect: coverage.inspect });
          const spec = new LeaderSpec(input);
          actor.start();
          const history: GroupLeaderEvent[] = [];

          const [first, ...steps] = path.steps;
          if (!first) throw new Error("empty path");
          expectSameState(actor.getSnapshot(), first.state, "start");
          expect(byMachine(log.take()), "start: effects").toEqual(byMachine(spec.start()));

          for (const step of steps) {
            const event = step.event;
            const before = actor.getSnapshot();
            const wasHolding = before.matches("backup") || before.matches("primary");
            const officeBefore = { ...before.context };
            history.push(event);
            const expected = spec.step(event);
            actor.send(event);

            const where = `${JSON.stringify(input)}: ${describePath(history)}`;
            const real = actor.getSnapshot();
            expectSameState(real, step.state, where);
            const effects = log.take();
            expect(byMachine(effects), `${where}: effects`).toEqual(byMachine(expected));
            expect(real.status === "done" ? "deposed" : String(real.value), `${where}: phase`).toBe(
              spec.phase,
            );
            if (real.matches("primary")) {
              const advertiser = real.children.advertiser?.getSnapshot();
              expect(advertiser?.value, `${where}: advertiser`).toBe(STATE_OF_PHASE[spec.advertiser.phase]);
            } else expect(real.children.advertiser, `${where}: advertiser outside primary`).toBeUndefined();

            // Safety: the backup only promotes when the primary key is vacant and its own key intact.
            if (effects.some((e) => e.name === "promote")) {
              expect(before.matches("backup"), `${where}: promote outside backup`).toBe(true);
              expect(event.type).toBe("LEADERS_CHANGED");
              if (event.type === "LEADERS_CHANGED") {
                expect(event.primary, `${where}: promoted while the primary key is held`).toBeUndefined();
                expect(event.backup, `${where}: promoted without its backup key`).toMatchObject({
                  mine: true,
                  token: officeBefore.token,
                });
              }
              expect(effects.find((e) => e.name === "promote")?.params).toEqual({
                token: officeBefore.token,
              });
            }
            // Safety: a leader that sees its own key vacant, held by someone else or with another
            // token is deposed; one that sees it intact is not.
            if (wasHolding && event.type === "LEADERS_CHANGED") {
              const own = officeBefore.slot === 1 ? event.primary : event.backup;
              const intact = own?.mine === true && own.token === officeBefore.token;
              expect(real.status, `${where}: ${intact ? "deposed with its key intact" : "not deposed"}`).toBe(
                intact ? "active" : "done",
              );
            }
            if (real.status === "done") expect(real.output).toEqual({ kind: "deposed" });
          }
          actor.stop();
        });
      }
    });
  }

  it("the real reportOffice tells the parent the office on taking it and on promotion", () => {
    const parent = setup({
      types: { context: {} as { offices: Office[] }, events: {} as OfficeChanged },
      actors: { leader: groupLeaderMachine },
    }).createMachine({
      context: { offices: [] },
      invoke: { id: "leader", src: "leader", input: { slot: 2, token: 20 } },
      on: {
        OFFICE_CHANGED: {
          actions: assign({
            offices: ({ context, event }) => [...context.offices, { slot: event.slot, token: event.token }],
          }),
        },
      },
    });
    const actor = createActor(parent).start();
    const leader = actor.getSnapshot().children.leader;
    leader?.send({ type: "LEADERS_CHANGED", backup: mine(20) });
    leader?.send({ type: "PROMOTED", token: 31 });
    expect(actor.getSnapshot().context.offices).toEqual([
      { slot: 2, token: 20 },
      { slot: 1, token: 31 },
    ]);
    expect(leader?.getSnapshot().value).toBe("primary");
  });

  // MEMBERS_CHANGED is only handled in `primary`: in `backup` and `promoting` it is dropped. When
  // the primary crashes, its leader key and member key go in the same revision (one lease), so
  // the backup sees MEMBERS_CHANGED [old primary's ID] before its promotion completes; the
  // runtime's missing-slot stream is distinctUntilChanged and does not repeat it. The advertiser
  // therefore asks for the current set on start (readMissingSlots), and the runtime answers.
  it("a promoted backup asks for the slots that went missing before, and advertises them", () => {
    const log = new EffectLog();
    const actor = createActor(recordingLeader(log), { input: { slot: 2, token: 20 } }).start();
    actor.send({ type: "MEMBERS_CHANGED", missing: [0] });
    actor.send({ type: "LEADERS_CHANGED", backup: mine(20) });
    actor.send({ type: "PROMOTED", token: 31 });
    expect(actor.getSnapshot().value).toBe("primary");
    expect(log.all.filter((e) => e.machine === A)).toEqual([effect(A, "readMissingSlots")]);
    // The runtime's answer to readMissingSlots: the latest missing set it saw.
    actor.send({ type: "MEMBERS_CHANGED", missing: [0] });
    expect(log.all.filter((e) => e.machine === A)).toEqual([
      effect(A, "readMissingSlots"),
      effect(A, "advertiseSlots", { ids: [0] }),
    ]);
  });

  // A backup that takes office (or resumes it) when the primary key is already vacant gets no
  // LEADERS_CHANGED for that vacancy: the change happened before it watched. Without a fresh read
  // it would only promote on some later change of the leader keys, leaving the grouping without
  // a primary meanwhile. Entering `backup` therefore asks for the keys (readLeaders), and the
  // runtime's answer promotes it.
  it("a backup that takes office with the primary already vacant asks for the keys and promotes on the answer", () => {
    const log = new EffectLog();
    const actor = createActor(recordingLeader(log), { input: { slot: 2, token: 20 } }).start();
    expect(actor.getSnapshot().value).toBe("backup");
    expect(log.take()).toEqual([effect(M, "reportOffice", { slot: 2, token: 20 }), effect(M, "readLeaders")]);
    // The runtime's answer to readLeaders: the primary key vacant, the backup key this node's.
    actor.send({ type: "LEADERS_CHANGED", backup: mine(20) });
    expect(actor.getSnapshot().value).toBe("promoting");
    expect(log.take()).toEqual([effect(M, "promote", { token: 20 })]);
    actor.send({ type: "PROMOTED", token: 31 });
    expect(actor.getSnapshot().value).toBe("primary");
    expect(byMachine(log.take())).toEqual(
      byMachine([effect(M, "reportOffice", { slot: 1, token: 31 }), effect(A, "readMissingSlots")]),
    );
  });

  it("reaches every state and takes every transition", () => {
    const all = models.flatMap((m) => m.paths);
    const onPaths = statesOnPaths(all);
    const stable = allStateIds(groupLeaderMachine).filter(
      (id) => !transientStateIds(groupLeaderMachine).includes(id),
    );
    expect(stable.filter((id) => !onPaths.has(id))).toEqual([]);
    const report = coverage.report(groupLeaderMachine);
    expect(report.missingStates).toEqual([]);
    expect(report.missingTransitions).toEqual([]);
    console.info(
      `${report.summary}; ${all.length} paths (${coverage.report(failoverAdvertiserMachine).summary})`,
    );
  });
});
