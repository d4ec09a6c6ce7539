import { describe, expect, it } from "vitest";
import { type AnyMachineSnapshot, createActor, type SnapshotFrom } from "xstate";
import { getShortestPaths, getSimplePaths, type StatePath } from "xstate/graph";
import { type BootstrapIdOutput, bootstrapIdMachine } from "../../machines/bootstrapId.js";
import { type CandidateOutput, candidateMachine } from "../../machines/candidate.js";
import type { LeaderSeat, LeadersChanged, Office } from "../../machines/events.js";
import { failoverAdvertiserMachine } from "../../machines/failoverAdvertiser.js";
import { type FollowerOutput, followerMachine } from "../../machines/follower.js";
import { type GroupLeaderOutput, groupLeaderMachine } from "../../machines/groupLeader.js";
import { type NodeEvent, nodeMachine } from "../../machines/node.js";
import {
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
  replay,
  stateKeyed,
  statesOnPaths,
  transientStateIds,
  transitionKeyed,
} from "./support.js";

type Snap = SnapshotFrom<typeof nodeMachine>;

// ---------------------------------------------------------------------------------------------
// Abstract events: what the node sees from the outside, or a child finishing a certain way.
// ---------------------------------------------------------------------------------------------

const FRESH_ID = 2;
const CLAIMED_ID = 7;
const WAITED_ID = 9;
/** Tokens: the primary and backup keys this node wins or resumes, and the promoted primary's. */
const TOKEN: Record<1 | 2, number> = { 1: 21, 2: 22 };
const PROMOTED_TOKEN = 31;

const other = (token: number): LeaderSeat => ({ nodeId: 8, token, mine: false });
const mine = (token: number): LeaderSeat => ({ nodeId: 3, token, mine: true });

type BootRoute = "fresh" | "claimed" | "afterWait";
type RoleRoute =
  | "resumePrimary"
  | "resumeBackup"
  | "bothVacant"
  | "backupVacant"
  | "won"
  | "lost"
  | "etcdFailed"
  | "seatTaken"
  | "otherToken"
  | "fenceLost"
  | "promotionFailed";

/** The bootstrapId child finished; `route` is how (which etcd results the node forwards). */
interface BootDone {
  type: "xstate.done.actor.bootstrapId";
  output: BootstrapIdOutput;
  route: BootRoute;
}
/** The role child finished; `route` is how (which etcd results the node forwards). */
interface RoleDone {
  type: "xstate.done.actor.role";
  output: FollowerOutput | CandidateOutput | GroupLeaderOutput;
  route: RoleRoute;
}
/** Node events the node handles itself, or forwards without the child finishing. */
type Direct = NodeEvent & { route?: "primaryVacant" | "promoted" | "advertised" | "advertiseFailed" };
type Abstract = BootDone | RoleDone | Direct;

const TOP_LEVEL: NodeEvent[] = [
  { type: "SESSION_OPENED", leaseId: "lease-1" },
  { type: "SESSION_FAILED", error: "connect ECONNREFUSED 127.0.0.1:2379" },
  { type: "RECONNECT" },
  { type: "SESSION_EXPIRED_LOCALLY" },
  { type: "SESSION_VALID" },
  { type: "SESSION_LOST" },
  { type: "STOP" },
  { type: "LEFT" },
];

const bootDone = (route: BootRoute, id: number, via: BootstrapIdOutput["via"]): BootDone => ({
  type: "xstate.done.actor.bootstrapId",
  output: { id, via },
  route,
});
const roleDone = (route: RoleRoute, output: RoleDone["output"]): RoleDone => ({
  type: "xstate.done.actor.role",
  output,
  route,
});

/** The abstract events a node in `s` can take: session events, and each way its child can end. */
function eventsFor(s: Snap): Abstract[] {
  if (s.status !== "active") return [];
  const out: Abstract[] = [...TOP_LEVEL];
  if (s.matches("bootstrapping")) {
    out.push(
      bootDone("fresh", FRESH_ID, "fresh"),
      bootDone("claimed", CLAIMED_ID, "failover"),
      bootDone("afterWait", WAITED_ID, "failover"),
    );
  }
  if (s.matches({ member: "follower" })) {
    out.push(
      roleDone("resumePrimary", { kind: "resume", office: { slot: 1, token: TOKEN[1] } }),
      roleDone("resumeBackup", { kind: "resume", office: { slot: 2, token: TOKEN[2] } }),
      roleDone("bothVacant", { kind: "campaign", slot: 1 }),
      roleDone("backupVacant", { kind: "campaign", slot: 2 }),
      { type: "LEADERS_CHANGED", backup: other(12), route: "primaryVacant" },
    );
  }
  if (s.matches({ member: "candidate" })) {
    const slot = s.context.campaignSlot ?? 2;
    out.push(
      roleDone("won", { kind: "won", slot, token: TOKEN[slot] }),
      roleDone("lost", { kind: "lost" }),
      roleDone("etcdFailed", { kind: "lost" }),
    );
  }
  if (s.matches({ member: "leader" })) {
    out.push(
      roleDone("seatTaken", { kind: "deposed" }),
      roleDone("otherToken", { kind: "deposed" }),
      roleDone("fenceLost", { kind: "deposed" }),
      { type: "MEMBERS_CHANGED", missing: [4], route: "advertised" },
      { type: "MEMBERS_CHANGED", missing: [5], route: "advertiseFailed" },
    );
    if (s.context.office?.slot === 2) {
      out.push(roleDone("promotionFailed", { kind: "deposed" }), {
        type: "OFFICE_CHANGED",
        slot: 1,
        token: PROMOTED_TOKEN,
        route: "promoted",
      });
    }
  }
  return out.filter((e) => s.can(e as NodeEvent));
}

/** A view of the leader keys where this node's own seat (per `office`) is `seat`. */
function withOwnSeat(office: Office, seat: LeaderSeat): LeadersChanged {
  return office.slot === 1
    ? { type: "LEADERS_CHANGED", primary: seat, backup: other(12) }
    : { type: "LEADERS_CHANGED", primary: other(11), backup: seat };
}

/** The etcd results the runtime would deliver to make the abstract event happen. */
function concretize(e: Abstract, before: Snap): NodeEvent[] {
  const office = before.context.office ?? { slot: 2, token: -1 };
  if (e.type === "xstate.done.actor.bootstrapId") {
    const { id } = e.output;
    switch (e.route) {
      case "fresh":
        return [{ type: "NO_SLOT_CLAIMED" }, { type: "ID_ALLOCATED", id }];
      case "claimed":
        return [{ type: "SLOT_CLAIMED", id }];
      case "afterWait":
        return [
          { type: "ETCD_FAILED", error: "etcdserver: request timed out" },
          { type: "RETRY" },
          { type: "NO_SLOT_CLAIMED" },
          { type: "CLUSTER_FULL" },
          { type: "SLOT_ADVERTISED" },
          { type: "SLOT_CLAIMED", id },
        ];
    }
  }
  if (e.type === "xstate.done.actor.role") {
    switch (e.route) {
      case "resumePrimary":
        return [{ type: "LEADERS_CHANGED", primary: mine(TOKEN[1]), backup: other(12) }];
      case "resumeBackup":
        return [{ type: "LEADERS_CHANGED", primary: other(11), backup: mine(TOKEN[2]) }];
      case "bothVacant":
        return [{ type: "LEADERS_CHANGED" }];
      case "backupVacant":
        return [{ type: "LEADERS_CHANGED", primary: other(11) }];
      case "won":
        return [{ type: "CAMPAIGN_WON", token: e.output.kind === "won" ? e.output.token : -1 }];
      case "lost":
        return [{ type: "CAMPAIGN_LOST" }];
      case "etcdFailed":
        return [{ type: "ETCD_FAILED", error: "etcdserver: leader changed" }];
      case "seatTaken":
        return [withOwnSeat(office, other(99))];
      case "otherToken":
        return [withOwnSeat(office, mine(office.token + 1))];
      case "fenceLost":
        return [{ type: "FENCE_LOST" }];
      case "promotionFailed":
        return [{ type: "LEADERS_CHANGED", backup: mine(office.token) }, { type: "PROMOTION_FAILED" }];
    }
  }
  const { route, ...event } = e;
  switch (route) {
    case "promoted":
      return [
        { type: "LEADERS_CHANGED", backup: mine(office.token) },
        { type: "PROMOTED", token: e.type === "OFFICE_CHANGED" ? e.token : -1 },
      ];
    case "advertised":
      return [event as NodeEvent, { type: "SLOTS_ADVERTISED" }];
    case "advertiseFailed":
      // The batch fails, is retried after the wait, and the retry succeeds.
      return [
        event as NodeEvent,
        { type: "ADVERTISE_FAILED", error: "etcdserver: request timed out" },
        { type: "RETRY" },
        { type: "SLOTS_ADVERTISED" },
      ];
    default:
      return [event as NodeEvent];
  }
}

// ---------------------------------------------------------------------------------------------
// Expected effects, independent of the machine
// ---------------------------------------------------------------------------------------------

const N = "node";
const NODE_EFFECTS = effectNames(nodeMachine);
const top = (s: AnyMachineSnapshot) => (typeof s.value === "string" ? s.value : Object.keys(s.value)[0]);

/**
 * The office a stopping node hands to `leaveCluster`, which resigns it fenced on its token: the
 * office held when STOP came (none from `suspended`, where the office is no longer trusted).
 */
const officeHandedOnStop = (before: Snap): Office | undefined => before.context.office;

/**
 * The node's own effects on one step: leaving `bootstrapping` ends any wait for an advertised
 * slot (its child is stopped without exit actions); leaving `member` unwatches the grouping; a
 * lost session is abandoned (renewing) before a new one is opened; entering `connecting` opens a
 * session, `reconnecting` schedules a reconnect, `member` watches the grouping of its ID,
 * `stopping` leaves the cluster with the ID and office it had.
 */
function expectedNodeEffects(e: Abstract, before: Snap, after: Snap): Effect[] {
  if (top(before) === top(after)) return [];
  const out: Effect[] = [];
  if (top(before) === "bootstrapping") out.push(effect(N, "stopAwaitingAdvertisedSlot"));
  if (top(before) === "member") out.push(effect(N, "unwatchGrouping"));
  // A lost session, or a passed deadline before the node has an identity to keep, is abandoned
  // (renewing) and a new one opened.
  const renews =
    e.type === "SESSION_LOST" || (e.type === "SESSION_EXPIRED_LOCALLY" && before.matches("bootstrapping"));
  if (renews) out.push(effect(N, "abandonSession"));
  switch (top(after)) {
    case "connecting":
      out.push(effect(N, "openSession"));
      break;
    case "reconnecting":
      out.push(effect(N, "scheduleReconnect"));
      break;
    case "member": {
      const id = e.type === "xstate.done.actor.bootstrapId" ? e.output.id : before.context.id;
      out.push(effect(N, "watchGrouping", { id }));
      break;
    }
    case "stopping":
      out.push(effect(N, "leaveCluster", { id: before.context.id, office: officeHandedOnStop(before) }));
      break;
  }
  return out;
}

/** The children's effects on one step, from how the abstract event came about. */
function expectedChildEffects(e: Abstract, before: Snap, after: Snap): Effect[] {
  const out: Effect[] = [];
  const office = before.context.office;
  if (e.type === "SESSION_OPENED") out.push(effect("bootstrapId", "claimAdvertisedSlot"));
  if (e.type === "xstate.done.actor.bootstrapId") {
    if (e.route === "fresh") out.push(effect("bootstrapId", "allocateFreshId"));
    if (e.route === "afterWait") {
      out.push(
        effect("bootstrapId", "scheduleRetry", { failures: 1 }),
        effect("bootstrapId", "claimAdvertisedSlot"),
        effect("bootstrapId", "allocateFreshId"),
        effect("bootstrapId", "awaitAdvertisedSlot"),
        effect("bootstrapId", "stopAwaitingAdvertisedSlot"),
        effect("bootstrapId", "claimAdvertisedSlot"),
      );
    }
  }
  if (e.type === "xstate.done.actor.role") {
    if (e.route === "bothVacant") out.push(effect("candidate", "campaign", { slot: 1 }));
    if (e.route === "backupVacant") out.push(effect("candidate", "campaign", { slot: 2 }));
    if (e.route === "promotionFailed") out.push(effect("groupLeader", "promote", { token: office?.token }));
  }
  if (e.type === "OFFICE_CHANGED") out.push(effect("groupLeader", "promote", { token: office?.token }));
  if (e.type === "MEMBERS_CHANGED" && office?.slot === 1) {
    out.push(effect("failoverAdvertiser", "advertiseSlots", { ids: e.missing }));
    // A failed batch is advertised again once the retry wait is over.
    if (e.route === "advertiseFailed")
      out.push(
        effect("failoverAdvertiser", "scheduleRetry"),
        effect("failoverAdvertiser", "advertiseSlots", { ids: e.missing }),
      );
  }
  // A new primary's advertiser asks for the slots already missing.
  const isPrimary = (x: Snap) => x.matches({ member: "leader" }) && x.context.office?.slot === 1;
  if (isPrimary(after) && !isPrimary(before)) out.push(effect("failoverAdvertiser", "readMissingSlots"));
  // A leader entering the backup office asks for the leader keys: the primary may already be gone.
  const isBackup = (x: Snap) => x.matches({ member: "leader" }) && x.context.office?.slot === 2;
  if (isBackup(after) && !isBackup(before)) out.push(effect("groupLeader", "readLeaders"));
  if (after.matches({ member: "follower" }) && !before.matches({ member: "follower" }))
    out.push(effect("follower", "readLeaders"));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Running a path on the real composed node
// ---------------------------------------------------------------------------------------------

/** The real node with its real children, every effect of every machine recorded. */
function recordingNode(log: EffectLog) {
  return nodeMachine.provide({
    actions: log.actions(N, NODE_EFFECTS),
    actors: {
      bootstrapId: bootstrapIdMachine.provide({
        actions: log.actions("bootstrapId", effectNames(bootstrapIdMachine)),
      }),
      follower: followerMachine.provide({ actions: log.actions("follower", effectNames(followerMachine)) }),
      candidate: candidateMachine.provide({
        actions: log.actions("candidate", effectNames(candidateMachine)),
      }),
      // reportOffice stays the real sendParent: the node must receive OFFICE_CHANGED.
      groupLeader: groupLeaderMachine.provide({
        actions: log.actions("groupLeader", effectNames(groupLeaderMachine)),
        actors: {
          failoverAdvertiser: failoverAdvertiserMachine.provide({
            actions: log.actions("failoverAdvertiser", effectNames(failoverAdvertiserMachine)),
          }),
        },
      }),
    },
  });
}

const childSnapshot = (ref: { getSnapshot(): unknown } | undefined) =>
  ref?.getSnapshot() as AnyMachineSnapshot | undefined;

/** What the node's context and children must look like in each state. */
function checkNodeAndChildren(real: Snap, where: string): void {
  const { context } = real;
  const boot = childSnapshot(real.children.bootstrapId);
  const role = childSnapshot(real.children.role);
  if (real.matches("bootstrapping")) {
    expect(boot?.machine.id, `${where}: bootstrapId child`).toBe("bootstrapId");
    expect(boot?.status).toBe("active");
    expect(context.leaseId, `${where}: lease`).toBeDefined();
    expect(context.id, `${where}: no ID while bootstrapping`).toBeUndefined();
  } else expect(boot, `${where}: bootstrapId child outside bootstrapping`).toBeUndefined();

  if (!real.matches("member")) {
    expect(role, `${where}: role child outside member`).toBeUndefined();
    expect(context.campaignSlot, `${where}: campaign slot outside member`).toBeUndefined();
  }
  // The office is kept only while leading, and while stopping (to resign it).
  if (!real.matches({ member: "leader" }) && !real.matches("stopping") && !real.matches("stopped")) {
    expect(context.office, `${where}: office while not leading`).toBeUndefined();
  }
  if (real.matches("connecting") || real.matches("reconnecting")) {
    expect(context, `${where}: no session, no ID`).toEqual({});
  }
  if (real.matches("member") || real.matches("suspended")) {
    expect(context.id, `${where}: ID`).toBeDefined();
    expect(context.joinedVia, `${where}: joinedVia`).toBeDefined();
    expect(context.leaseId, `${where}: lease`).toBeDefined();
  }
  if (real.matches({ member: "follower" })) {
    expect([role?.machine.id, role?.value], `${where}: role`).toEqual(["follower", "watchingLeaders"]);
    expect(context.office).toBeUndefined();
  }
  if (real.matches({ member: "candidate" })) {
    expect([role?.machine.id, role?.value], `${where}: role`).toEqual(["candidate", "campaigning"]);
    expect(role?.context.slot, `${where}: campaign slot`).toBe(context.campaignSlot);
    expect(context.office).toBeUndefined();
  }
  if (real.matches({ member: "leader" })) {
    const office = context.office;
    expect(office, `${where}: office`).toBeDefined();
    expect(role?.machine.id, `${where}: role`).toBe("groupLeader");
    expect(role?.value, `${where}: leader state`).toBe(office?.slot === 1 ? "primary" : "backup");
    expect(role?.context, `${where}: the node's office is its leader's`).toEqual(office);
    const advertiser = childSnapshot(role?.children.advertiser as { getSnapshot(): unknown } | undefined);
    if (office?.slot === 1) expect(advertiser?.value, `${where}: advertiser`).toBe("watchingMembers");
    else expect(advertiser, `${where}: advertiser of a backup`).toBeUndefined();
  }
}

const coverage = new Coverage();
type NodePath = StatePath<Snap, Abstract>;

interface Run {
  log: EffectLog;
  actor: ReturnType<typeof createActor<typeof nodeMachine>>;
}

/** Executes one abstract path on the real node, checking every step; returns the actor and log. */
function runNodePath(path: NodePath, onStep?: (real: Snap, effects: Effect[], e: Abstract) => void): Run {
  const log = new EffectLog();
  const actor = createActor(recordingNode(log), { inspect: coverage.inspect });
  actor.start();
  const [first, ...steps] = path.steps;
  if (!first) throw new Error("empty path");
  expectSameState(actor.getSnapshot(), first.state, "start");
  expect(log.take(), "start: effects").toEqual([effect(N, "openSession")]);
  checkNodeAndChildren(actor.getSnapshot(), "start");

  let before = first.state;
  const history: Abstract[] = [];
  for (const step of steps) {
    const e = step.event;
    history.push(e);
    for (const concrete of concretize(e, before)) actor.send(concrete);
    const where = describePath(history);
    const real = actor.getSnapshot();
    expectSameState(real, step.state, where);
    const effects = log.take();
    expect(
      effects.filter((x) => x.machine === N),
      `${where}: node effects`,
    ).toEqual(expectedNodeEffects(e, before, step.state));
    expect(byMachine(effects.filter((x) => x.machine !== N)), `${where}: child effects`).toEqual(
      byMachine(expectedChildEffects(e, before, step.state)),
    );
    checkNodeAndChildren(real, where);
    onStep?.(real, effects, e);
    before = step.state;
  }

  // Events the final state does not take change nothing and run no effect.
  if (actor.getSnapshot().status === "active") {
    for (const e of TOP_LEVEL) {
      if (before.can(e)) continue;
      const snapshot = actor.getSnapshot();
      actor.send(e);
      expect(actor.getSnapshot().value, `ignored ${e.type}`).toEqual(snapshot.value);
      expect(actor.getSnapshot().context, `ignored ${e.type}`).toEqual(snapshot.context);
      expect(log.take(), `ignored ${e.type}: effects`).toEqual([]);
    }
  }
  return { log, actor };
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

const traversal = { events: eventsFor as unknown as (s: Snap) => NodeEvent[] };
const shortest = getShortestPaths(nodeMachine, { ...traversal, serializeState: transitionKeyed<Snap>() });
const simple = getSimplePaths(nodeMachine, {
  ...traversal,
  serializeState: stateKeyed<Snap>((s) => s.value),
});

/**
 * Simple paths key vertices by state value only, so an event on such a path may have been made
 * for another history (e.g. CAMPAIGN_WON for slot 1 after running for slot 2). Each path is
 * replayed from the start, each event re-made by `eventsFor` for the state this history is in
 * (same type and route); a path is cut where its next event is not available there.
 */
function replayConsistently(events: readonly Abstract[]): NodePath {
  const kept: Abstract[] = [];
  let state = replay(nodeMachine, []).state as Snap;
  for (const e of events) {
    const route = "route" in e ? e.route : undefined;
    const same = eventsFor(state).find(
      (c) =>
        c.type === e.type &&
        ("route" in c ? c.route : undefined) === route &&
        (route || JSON.stringify(c) === JSON.stringify(e)),
    );
    if (!same) break;
    kept.push(same);
    state = replay(nodeMachine, kept).state as Snap;
  }
  return replay(nodeMachine, kept) as unknown as NodePath;
}

const paths = dedupePaths([...shortest, ...simple].map((p) => replayConsistently(eventsOf(p) as Abstract[])));
const scenario = (events: Abstract[]) => replay(nodeMachine, events) as unknown as NodePath;

describe("node model", () => {
  it("names exactly the effects this suite checks", () => {
    expect(NODE_EFFECTS).toEqual([
      "abandonSession",
      "leaveCluster",
      "openSession",
      "scheduleReconnect",
      "stopAwaitingAdvertisedSlot",
      "unwatchGrouping",
      "watchGrouping",
    ]);
    // The children's effects, which expectedChildEffects predicts.
    expect(effectNames(bootstrapIdMachine)).toEqual([
      "allocateFreshId",
      "awaitAdvertisedSlot",
      "claimAdvertisedSlot",
      "scheduleRetry",
      "stopAwaitingAdvertisedSlot",
    ]);
    expect(effectNames(followerMachine)).toEqual(["readLeaders"]);
    expect(effectNames(candidateMachine)).toEqual(["campaign"]);
    expect(effectNames(groupLeaderMachine)).toEqual(["promote", "readLeaders"]);
    expect(effectNames(failoverAdvertiserMachine)).toEqual([
      "advertiseSlots",
      "readMissingSlots",
      "scheduleRetry",
    ]);
  });

  describe("generated paths", () => {
    for (const path of paths) {
      it(`path: ${describePath(eventsOf(path))}`, () => {
        runNodePath(path).actor.stop();
      });
    }
  });

  describe("scenarios", () => {
    it("fresh ID, campaign for primary, advertise, suspend, resume, stop", () => {
      const events: Abstract[] = [
        { type: "SESSION_OPENED", leaseId: "lease-1" },
        bootDone("fresh", FRESH_ID, "fresh"),
        roleDone("bothVacant", { kind: "campaign", slot: 1 }),
        roleDone("won", { kind: "won", slot: 1, token: TOKEN[1] }),
        { type: "MEMBERS_CHANGED", missing: [4], route: "advertised" },
        { type: "SESSION_EXPIRED_LOCALLY" },
        { type: "SESSION_VALID" },
        roleDone("resumePrimary", { kind: "resume", office: { slot: 1, token: TOKEN[1] } }),
        { type: "STOP" },
        { type: "LEFT" },
      ];
      const seen: Array<{ state: string; context: object; role?: unknown }> = [];
      const { log, actor } = runNodePath(scenario(events), (real) => {
        const role = childSnapshot(real.children.role);
        seen.push({ state: JSON.stringify(real.value), context: { ...real.context }, role: role?.value });
      });
      expect(seen.map((s) => [s.state, s.role])).toEqual([
        ['"bootstrapping"', undefined],
        ['{"member":"follower"}', "watchingLeaders"],
        ['{"member":"candidate"}', "campaigning"],
        ['{"member":"leader"}', "primary"],
        ['{"member":"leader"}', "primary"],
        ['"suspended"', undefined],
        ['{"member":"follower"}', "watchingLeaders"],
        ['{"member":"leader"}', "primary"],
        ['"stopping"', undefined],
        ['"stopped"', undefined],
      ]);
      expect(seen[3]?.context).toMatchObject({
        id: FRESH_ID,
        joinedVia: "fresh",
        office: { slot: 1, token: 21 },
      });
      expect(seen[5]?.context).toEqual({ leaseId: "lease-1", id: FRESH_ID, joinedVia: "fresh" });
      expect(seen[7]?.context).toMatchObject({ office: { slot: 1, token: 21 } });
      expect(log.all.filter((e) => e.name === "advertiseSlots")).toEqual([
        effect("failoverAdvertiser", "advertiseSlots", { ids: [4] }),
      ]);
      expect(log.all.filter((e) => e.name === "campaign")).toEqual([
        effect("candidate", "campaign", { slot: 1 }),
      ]);
      expect(log.all.filter((e) => e.name === "watchGrouping")).toHaveLength(2);
      expect(actor.getSnapshot().status).toBe("done");
    });

    it("a lost session starts over: new session, new identity, then backup, promotion and another loss", () => {
      const events: Abstract[] = [
        { type: "SESSION_OPENED", leaseId: "lease-1" },
        bootDone("claimed", CLAIMED_ID, "failover"),
        roleDone("backupVacant", { kind: "campaign", slot: 2 }),
        roleDone("won", { kind: "won", slot: 2, token: TOKEN[2] }),
        { type: "OFFICE_CHANGED", slot: 1, token: PROMOTED_TOKEN, route: "promoted" },
        { type: "SESSION_LOST" },
        { type: "RECONNECT" },
        { type: "SESSION_OPENED", leaseId: "lease-2" },
        bootDone("afterWait", WAITED_ID, "failover"),
        roleDone("bothVacant", { kind: "campaign", slot: 1 }),
        roleDone("etcdFailed", { kind: "lost" }),
        { type: "SESSION_LOST" },
      ];
      const contexts: object[] = [];
      const { log, actor } = runNodePath(scenario(events), (real) => contexts.push({ ...real.context }));
      expect(contexts[4]).toMatchObject({ id: CLAIMED_ID, office: { slot: 1, token: PROMOTED_TOKEN } });
      expect(contexts[5], "lost session: ID and lease cleared").toEqual({});
      expect(contexts[6], "after the jittered reconnect delay").toEqual({});
      expect(contexts[7]).toEqual({ leaseId: "lease-2" });
      expect(contexts[8]).toEqual({ leaseId: "lease-2", id: WAITED_ID, joinedVia: "failover" });
      // A lost session goes through the reconnect delay rather than straight back to connecting.
      expect(actor.getSnapshot().value).toBe("reconnecting");
      expect(log.all.filter((e) => e.machine === N).map((e) => e.name)).toEqual([
        "openSession",
        "stopAwaitingAdvertisedSlot",
        "watchGrouping",
        "unwatchGrouping",
        "abandonSession",
        "scheduleReconnect",
        "openSession",
        "stopAwaitingAdvertisedSlot",
        "watchGrouping",
        "unwatchGrouping",
        "abandonSession",
        "scheduleReconnect",
      ]);
      expect(log.all.filter((e) => e.name === "promote")).toEqual([
        effect("groupLeader", "promote", { token: TOKEN[2] }),
      ]);
      actor.stop();
    });

    it("a session that cannot be opened is retried until it opens", () => {
      const events: Abstract[] = [
        { type: "SESSION_FAILED", error: "connect ECONNREFUSED" },
        { type: "RECONNECT" },
        { type: "SESSION_FAILED", error: "connect ECONNREFUSED" },
        { type: "RECONNECT" },
        { type: "SESSION_OPENED", leaseId: "lease-1" },
      ];
      const { log, actor } = runNodePath(scenario(events));
      expect(log.all.filter((e) => e.machine === N).map((e) => e.name)).toEqual([
        "openSession",
        "scheduleReconnect",
        "openSession",
        "scheduleReconnect",
        "openSession",
      ]);
      expect(actor.getSnapshot().value).toBe("bootstrapping");
      actor.stop();
    });

    // MEMBERS_CHANGED reaching a follower or candidate goes to a child that ignores it, and the
    // runtime's missing-slot stream is distinctUntilChanged: a new primary's advertiser asks for
    // the current set on start (readMissingSlots) and the runtime answers with MEMBERS_CHANGED.
    it("a node that becomes primary asks for the slots already missing, and advertises them", () => {
      const log = new EffectLog();
      const actor = createActor(recordingNode(log)).start();
      actor.send({ type: "SESSION_OPENED", leaseId: "lease-1" });
      actor.send({ type: "SLOT_CLAIMED", id: CLAIMED_ID });
      actor.send({ type: "MEMBERS_CHANGED", missing: [4] });
      actor.send({ type: "LEADERS_CHANGED" });
      actor.send({ type: "CAMPAIGN_WON", token: TOKEN[1] });
      expect(actor.getSnapshot().matches({ member: "leader" })).toBe(true);
      const advertiser = () => log.all.filter((e) => e.machine === "failoverAdvertiser");
      expect(advertiser()).toEqual([effect("failoverAdvertiser", "readMissingSlots")]);
      actor.send({ type: "MEMBERS_CHANGED", missing: [4] });
      expect(advertiser()).toEqual([
        effect("failoverAdvertiser", "readMissingSlots"),
        effect("failoverAdvertiser", "advertiseSlots", { ids: [4] }),
      ]);
      actor.stop();
    });

    // A follower that finds its backup key still its own resumes the backup office even when the
    // primary key is vacant; that vacancy was already seen (by the follower) and no new change of
    // the leader keys may come. The leader's backup asks for the keys on entry (readLeaders) and
    // the runtime's answer promotes it, instead of waiting for a later LEADERS_CHANGED.
    it("a node that resumes the backup office with the primary vacant re-reads the keys and promotes", () => {
      const log = new EffectLog();
      const actor = createActor(recordingNode(log)).start();
      actor.send({ type: "SESSION_OPENED", leaseId: "lease-1" });
      actor.send({ type: "SLOT_CLAIMED", id: CLAIMED_ID });
      log.take();
      actor.send({ type: "LEADERS_CHANGED", backup: mine(TOKEN[2]) });
      expect(actor.getSnapshot().matches({ member: "leader" })).toBe(true);
      expect(actor.getSnapshot().context.office).toEqual({ slot: 2, token: TOKEN[2] });
      const role = () => childSnapshot(actor.getSnapshot().children.role);
      expect(role()?.value).toBe("backup");
      expect(log.take().filter((e) => e.machine !== N)).toEqual([effect("groupLeader", "readLeaders")]);
      // The runtime's answer to readLeaders: the primary key still vacant, the backup key this node's.
      actor.send({ type: "LEADERS_CHANGED", backup: mine(TOKEN[2]) });
      expect(role()?.value).toBe("promoting");
      expect(log.take()).toEqual([effect("groupLeader", "promote", { token: TOKEN[2] })]);
      actor.send({ type: "PROMOTED", token: PROMOTED_TOKEN });
      expect(role()?.value).toBe("primary");
      expect(actor.getSnapshot().context.office).toEqual({ slot: 1, token: PROMOTED_TOKEN });
      expect(log.take()).toEqual([effect("failoverAdvertiser", "readMissingSlots")]);
      actor.stop();
    });

    const toState: Record<string, Abstract[]> = {
      connecting: [],
      reconnecting: [{ type: "SESSION_FAILED", error: "refused" }],
      bootstrapping: [{ type: "SESSION_OPENED", leaseId: "lease-1" }],
      "member.follower": [
        { type: "SESSION_OPENED", leaseId: "lease-1" },
        bootDone("claimed", CLAIMED_ID, "failover"),
      ],
      "member.candidate": [
        { type: "SESSION_OPENED", leaseId: "lease-1" },
        bootDone("claimed", CLAIMED_ID, "failover"),
        roleDone("bothVacant", { kind: "campaign", slot: 1 }),
      ],
      "member.leader (primary)": [
        { type: "SESSION_OPENED", leaseId: "lease-1" },
        bootDone("claimed", CLAIMED_ID, "failover"),
        roleDone("resumePrimary", { kind: "resume", office: { slot: 1, token: TOKEN[1] } }),
      ],
      "member.leader (backup)": [
        { type: "SESSION_OPENED", leaseId: "lease-1" },
        bootDone("claimed", CLAIMED_ID, "failover"),
        roleDone("resumeBackup", { kind: "resume", office: { slot: 2, token: TOKEN[2] } }),
      ],
      suspended: [
        { type: "SESSION_OPENED", leaseId: "lease-1" },
        bootDone("claimed", CLAIMED_ID, "failover"),
        { type: "SESSION_EXPIRED_LOCALLY" },
      ],
    };
    for (const [name, prefix] of Object.entries(toState)) {
      it(`STOP from ${name}`, () => {
        // Without a session there is nothing to leave: connecting and reconnecting stop at once.
        // (A session that opens afterwards is revoked by the runtime, which drops results for a
        // stopped actor.) Every other state leaves the cluster first, then stops on LEFT.
        const direct = name === "connecting" || name === "reconnecting";
        const stop: Abstract[] = direct ? [{ type: "STOP" }] : [{ type: "STOP" }, { type: "LEFT" }];
        const { log, actor } = runNodePath(scenario([...prefix, ...stop]));
        const leaves = log.all.filter((e) => e.name === "leaveCluster");
        if (direct) expect(leaves).toEqual([]);
        else {
          const id = prefix.some((e) => e.type === "xstate.done.actor.bootstrapId") ? CLAIMED_ID : undefined;
          const office = name.startsWith("member.leader")
            ? { slot: name.includes("primary") ? 1 : 2, token: TOKEN[name.includes("primary") ? 1 : 2] }
            : undefined;
          expect(leaves).toEqual([effect(N, "leaveCluster", { id, office })]);
        }
        expect(actor.getSnapshot().value).toBe("stopped");
        expect(actor.getSnapshot().status).toBe("done");
      });
    }
  });

  describe("regressions", () => {
    // Found by this suite: `member`'s exit cleared the office before `stopping`'s entry read it,
    // so leaveCluster never got one and a leader never resigned its key on a graceful stop.
    it("a leader that stops gracefully hands its office to leaveCluster, to resign it", () => {
      const { log, actor } = runNodePath(
        scenario([
          { type: "SESSION_OPENED", leaseId: "lease-1" },
          bootDone("claimed", CLAIMED_ID, "failover"),
          roleDone("bothVacant", { kind: "campaign", slot: 1 }),
          roleDone("won", { kind: "won", slot: 1, token: TOKEN[1] }),
          { type: "STOP" },
        ]),
      );
      expect(log.all.filter((e) => e.name === "leaveCluster")).toEqual([
        effect(N, "leaveCluster", { id: CLAIMED_ID, office: { slot: 1, token: TOKEN[1] } }),
      ]);
      actor.stop();
    });

    // Found by this suite: a child stopped by its parent runs no exit actions, so leaving
    // `bootstrapping` while bootstrapId waited for an advertisement left the runtime's watch of
    // the failover prefix open. The node now ends the wait itself on leaving `bootstrapping`.
    for (const leave of ["STOP", "SESSION_LOST", "SESSION_EXPIRED_LOCALLY"] as const) {
      it(`leaving bootstrapping (${leave}) while waiting for an advertisement ends the wait`, () => {
        const log = new EffectLog();
        const actor = createActor(recordingNode(log)).start();
        actor.send({ type: "SESSION_OPENED", leaseId: "lease-1" });
        actor.send({ type: "NO_SLOT_CLAIMED" });
        actor.send({ type: "CLUSTER_FULL" });
        expect(log.all.at(-1)).toEqual(effect("bootstrapId", "awaitAdvertisedSlot"));
        actor.send({ type: leave });
        expect(log.all.filter((e) => e.name === "stopAwaitingAdvertisedSlot")).toEqual([
          effect(N, "stopAwaitingAdvertisedSlot"),
        ]);
        actor.stop();
      });
    }
  });

  it("reaches every state and takes every transition", () => {
    const onPaths = statesOnPaths(paths);
    const stable = allStateIds(nodeMachine).filter((id) => !transientStateIds(nodeMachine).includes(id));
    expect(stable.filter((id) => !onPaths.has(id))).toEqual([]);
    const report = coverage.report(nodeMachine);
    expect(report.missingStates).toEqual([]);
    expect(report.missingTransitions).toEqual([]);
    const children = [
      bootstrapIdMachine,
      followerMachine,
      candidateMachine,
      groupLeaderMachine,
      failoverAdvertiserMachine,
    ];
    console.info(
      `${report.summary}; ${paths.length} generated paths; children run inside the node: ${children
        .map((m) => coverage.report(m).summary)
        .join("; ")}`,
    );
  });
});
