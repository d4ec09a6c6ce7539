/**
 * node as the design describes it: a session (lease), then an identity (bootstrapId), then a role
 * in its grouping (follower, candidate, groupLeader), each phase run by a child machine to which
 * the node passes the etcd results. A passed local deadline suspends a member (its office is no
 * longer trusted) and abandons a session that has no identity yet; a lost lease abandons the
 * session and identity and reconnects after a delay. A stop leaves the cluster with the ID and
 * office the node has (none from `suspended`), except before a session, where there is nothing
 * to leave. Leaving `bootstrapping` ends any wait for an advertisement (a stopped child runs no
 * exit effects); leaving `member` stops watching the grouping.
 */
import type { BootstrapIdOutput } from "../../../machines/bootstrapId.js";
import type { CandidateOutput } from "../../../machines/candidate.js";
import type { LeaderSeat, Office } from "../../../machines/events.js";
import type { FollowerOutput } from "../../../machines/follower.js";
import type { NodeContext, NodeEvent } from "../../../machines/node.js";
import { effect } from "../support.js";
import { ALWAYS, type Instance, rowsOf, type SpecEvent, type Table } from "../table.js";
import { bootstrapIdEvents, bootstrapIdKey, bootstrapIdTable } from "./bootstrapId.js";
import { candidateEvents, candidateTable } from "./candidate.js";
import { failoverAdvertiserTable } from "./failoverAdvertiser.js";
import { followerEvents, followerTable } from "./follower.js";
import { groupLeaderEvents, groupLeaderTable } from "./groupLeader.js";

const N = "node";
const fx = (name: string, params?: unknown) => effect(N, name, params);

type Done =
  | { type: "xstate.done.actor.bootstrapId"; output: BootstrapIdOutput }
  | { type: "xstate.done.actor.role"; output: FollowerOutput | CandidateOutput | { kind: "deposed" } };

/** The node's context, and the seat a follower chose to run for (the real node reads it off the event). */
type Ctx = NodeContext & { campaignSeat?: LeaderSeat };

const row = rowsOf<Ctx, NodeEvent | Done>();

const toBootstrap = [
  "SLOT_CLAIMED",
  "NO_SLOT_CLAIMED",
  "ID_ALLOCATED",
  "CLUSTER_FULL",
  "SLOT_ADVERTISED",
  "ETCD_FAILED",
  "RETRY",
] as const;
const toRole = [
  "LEADERS_CHANGED",
  "MEMBERS_CHANGED",
  "CAMPAIGN_WON",
  "CAMPAIGN_LOST",
  "PROMOTED",
  "PROMOTION_FAILED",
  "FENCE_LOST",
  "SLOTS_ADVERTISED",
  "ADVERTISE_FAILED",
  "ETCD_FAILED",
  "RETRY",
] as const;

const noSession: Ctx = {};
const leave = (c: Ctx, office: Office | undefined) => [fx("leaveCluster", { id: c.id, office })];

export const nodeTable: Table<Ctx, NodeEvent | Done> = {
  machine: N,
  effects: [
    "abandonSession",
    "leaveCluster",
    "openSession",
    "scheduleReconnect",
    "stopAwaitingAdvertisedSlot",
    "unwatchGrouping",
    "vacateOffice",
    "watchGrouping",
  ],
  states: [
    "connecting",
    "reconnecting",
    "bootstrapping",
    "member",
    "member.follower",
    "member.candidate",
    "member.leader",
    "suspended",
    "renewing",
    "stopping",
    "stopped",
  ],
  initial: "connecting",
  compound: { member: "member.follower" },
  context: () => ({}),
  // What the runtime reads; the seat a campaign is for is checked where it matters, in `campaign`.
  observed: ["leaseId", "id", "joinedVia", "office"],
  start: { effects: () => [fx("openSession")] },
  finals: ["stopped"],
  invokes: {
    bootstrapping: { id: "bootstrapId", table: bootstrapIdTable },
    "member.follower": { id: "role", table: followerTable },
    "member.candidate": { id: "role", table: candidateTable, input: (c) => ({ seat: c.campaignSeat }) },
    "member.leader": { id: "role", table: groupLeaderTable, input: (c) => c.office },
  },
  rows: [
    row({
      from: "connecting",
      on: "SESSION_OPENED",
      to: "bootstrapping",
      update: (c, e) => ({ ...c, leaseId: e.leaseId }),
    }),
    row({
      from: "connecting",
      on: "SESSION_FAILED",
      to: "reconnecting",
      effects: () => [fx("scheduleReconnect")],
    }),
    row({ from: "connecting", on: "STOP", to: "stopped" }),
    row({ from: "reconnecting", on: "RECONNECT", to: "connecting", effects: () => [fx("openSession")] }),
    row({ from: "reconnecting", on: "STOP", to: "stopped" }),

    ...toBootstrap.map((on) => row({ from: "bootstrapping", on, forward: "bootstrapId" })),
    row({
      from: "bootstrapping",
      on: "xstate.done.actor.bootstrapId",
      to: "member",
      update: (c, e) => ({ ...c, id: e.output.id, joinedVia: e.output.via }),
      effects: (_c, e) => [fx("stopAwaitingAdvertisedSlot"), fx("watchGrouping", { id: e.output.id })],
    }),
    ...(["SESSION_EXPIRED_LOCALLY", "SESSION_LOST"] as const).map((on) =>
      row({
        from: "bootstrapping",
        on,
        to: "renewing",
        update: () => noSession,
        effects: () => [fx("stopAwaitingAdvertisedSlot"), fx("abandonSession")],
      }),
    ),
    row({
      from: "bootstrapping",
      on: "STOP",
      to: "stopping",
      effects: (c) => [fx("stopAwaitingAdvertisedSlot"), ...leave(c, c.office)],
    }),

    ...toRole.map((on) => row({ from: "member", on, forward: "role" })),
    row({
      from: "member",
      on: "SESSION_EXPIRED_LOCALLY",
      to: "suspended",
      update: (c) => ({ ...c, office: undefined, campaignSeat: undefined }),
      // The office it held is vacated (the runtime deletes its own key, fenced on token and lease).
      effects: (c) => [fx("unwatchGrouping"), fx("vacateOffice", { id: c.id, office: c.office })],
    }),
    row({
      from: "member",
      on: "SESSION_LOST",
      to: "renewing",
      update: () => noSession,
      effects: () => [fx("unwatchGrouping"), fx("abandonSession")],
    }),
    row({
      from: "member",
      on: "STOP",
      to: "stopping",
      update: (c) => ({ ...c, campaignSeat: undefined }),
      effects: (c) => [fx("unwatchGrouping"), ...leave(c, c.office)],
    }),
    row({
      from: "member.follower",
      on: "xstate.done.actor.role",
      when: { name: "resumes an office", holds: (_c, e) => e.output.kind === "resume" },
      to: "member.leader",
      update: (c, e) => ({ ...c, office: e.output.kind === "resume" ? e.output.office : undefined }),
    }),
    row({
      from: "member.follower",
      on: "xstate.done.actor.role",
      to: "member.candidate",
      update: (c, e) => ({ ...c, campaignSeat: e.output.kind === "campaign" ? e.output.seat : undefined }),
    }),
    row({
      from: "member.candidate",
      on: "xstate.done.actor.role",
      when: { name: "won", holds: (_c, e) => e.output.kind === "won" },
      to: "member.leader",
      update: (c, e) => ({
        ...c,
        office: e.output.kind === "won" ? { seat: e.output.seat, token: e.output.token } : undefined,
      }),
    }),
    row({ from: "member.candidate", on: "xstate.done.actor.role", to: "member.follower" }),
    row({
      from: "member.leader",
      on: "xstate.done.actor.role",
      to: "member.follower",
      update: (c) => ({ ...c, office: undefined }),
    }),
    row({
      from: "member.leader",
      on: "OFFICE_CHANGED",
      update: (c, e) => ({ ...c, office: { seat: e.seat, token: e.token } }),
    }),

    row({
      from: "suspended",
      on: "SESSION_VALID",
      to: "member",
      effects: (c) => [fx("watchGrouping", { id: c.id })],
    }),
    row({
      from: "suspended",
      on: "SESSION_LOST",
      to: "renewing",
      update: () => noSession,
      effects: () => [fx("abandonSession")],
    }),
    row({ from: "suspended", on: "STOP", to: "stopping", effects: (c) => leave(c, undefined) }),

    row({ from: "renewing", on: ALWAYS, to: "reconnecting", effects: () => [fx("scheduleReconnect")] }),
    row({ from: "stopping", on: "LEFT", to: "stopped" }),
  ],
};

const SESSION_EVENTS: NodeEvent[] = [
  { type: "SESSION_OPENED", leaseId: "lease-1" },
  { type: "SESSION_FAILED", error: "connect ECONNREFUSED 127.0.0.1:2379" },
  { type: "RECONNECT" },
  { type: "SESSION_EXPIRED_LOCALLY" },
  { type: "SESSION_VALID" },
  { type: "SESSION_LOST" },
  { type: "STOP" },
  { type: "LEFT" },
];

/** One of each event the node passes to a child, whichever child runs. */
const ONE_OF_EACH: readonly NodeEvent[] = [
  ...bootstrapIdEvents(),
  ...candidateEvents(),
  { type: "LEADERS_CHANGED" },
  { type: "PROMOTED", token: 30 },
  { type: "PROMOTION_FAILED" },
  { type: "FENCE_LOST" },
  { type: "MEMBERS_CHANGED", missing: [4] },
  { type: "SLOTS_ADVERTISED" },
  { type: "ADVERTISE_FAILED", error: "etcdserver: request timed out" },
  { type: "OFFICE_CHANGED", seat: 1, token: 30 },
];

const EVENTS_OF: Record<string, (s: Instance) => readonly SpecEvent[]> = {
  bootstrapId: bootstrapIdEvents,
  follower: followerEvents,
  candidate: candidateEvents,
  groupLeader: groupLeaderEvents,
};

/** Session events, one of each event, and every variant the running child cares about. */
export function nodeEvents(s: Instance): SpecEvent[] {
  const children = Object.values(s.children).flatMap((c) => EVENTS_OF[c.table.machine]?.(c) ?? []);
  const all = [...SESSION_EVENTS, ...ONE_OF_EACH, ...children];
  const seen = new Set<string>();
  return all.filter((e) => {
    const key = JSON.stringify(e);
    return seen.has(key) ? false : Boolean(seen.add(key));
  });
}

/**
 * What tells node states apart for exploration: which session, identity and office it has, not
 * their exact values; and its children, tokens aside (which office, not which token).
 */
export function nodeKey(s: Instance): unknown {
  const c = s.context as Ctx;
  const children = Object.fromEntries(Object.entries(s.children).map(([id, child]) => [id, childKey(child)]));
  return {
    path: s.path,
    status: s.status,
    session: c.leaseId !== undefined,
    id: c.id !== undefined,
    office: c.office?.seat,
    campaignSeat: c.campaignSeat,
    children,
  };
}

/** The advertiser's batches are the advertiser suite's business: here only its state counts. */
function childKey(s: Instance): unknown {
  if (s.table === bootstrapIdTable) return bootstrapIdKey(s);
  if (s.table === failoverAdvertiserTable) return s.path;
  const context =
    s.table === groupLeaderTable ? { seat: (s.context as { seat: LeaderSeat }).seat } : s.context;
  const children = Object.fromEntries(Object.entries(s.children).map(([id, c]) => [id, childKey(c)]));
  return { path: s.path, status: s.status, context, children };
}
