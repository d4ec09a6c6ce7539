import { assign, type DoneActorEvent, sendTo, setup } from "xstate";
import { type BootstrapIdEvent, bootstrapIdMachine } from "./bootstrapId.js";
import { type CandidateEvent, type CandidateOutput, candidateMachine } from "./candidate.js";
import type { LeaderSeat, Office } from "./events.js";
import { type FollowerEvent, type FollowerOutput, followerMachine } from "./follower.js";
import { type GroupLeaderEvent, groupLeaderMachine, type OfficeChanged } from "./groupLeader.js";

/** What the runtime tells the node about its etcd session, and the graceful stop. */
export type SessionEvent =
  | { type: "SESSION_OPENED"; leaseId: string }
  | { type: "SESSION_FAILED"; error: string }
  | { type: "RECONNECT" }
  | { type: "SESSION_EXPIRED_LOCALLY" }
  | { type: "SESSION_VALID" }
  | { type: "SESSION_LOST" }
  | { type: "STOP" }
  | { type: "LEFT" };

/** The events of the role children (follower, candidate, groupLeader and its advertiser). */
export type RoleEvent = FollowerEvent | CandidateEvent | GroupLeaderEvent;

export type NodeEvent = SessionEvent | OfficeChanged | BootstrapIdEvent | RoleEvent;

// Every event of a child is passed on while that child runs; a child event missing here fails to compile.
const BOOTSTRAP_EVENTS = {
  SLOT_CLAIMED: true,
  NO_SLOT_CLAIMED: true,
  ID_ALLOCATED: true,
  CLUSTER_FULL: true,
  SLOT_ADVERTISED: true,
  ETCD_FAILED: true,
  RETRY: true,
} as const satisfies Record<BootstrapIdEvent["type"], true>;

const ROLE_EVENTS = {
  LEADERS_CHANGED: true,
  MEMBERS_CHANGED: true,
  CAMPAIGN_WON: true,
  CAMPAIGN_LOST: true,
  PROMOTED: true,
  PROMOTION_FAILED: true,
  FENCE_LOST: true,
  SLOTS_ADVERTISED: true,
  ADVERTISE_FAILED: true,
  ETCD_FAILED: true,
  RETRY: true,
} as const satisfies Record<RoleEvent["type"], true>;

/** One transition per event type, each running `action` (a forward to a child). */
function forwarding<T extends string, A extends string>(types: Record<T, true>, action: A) {
  const on = {} as Record<T, { actions: A }>;
  for (const type of Object.keys(types) as T[]) on[type] = { actions: action };
  return on;
}

export interface NodeContext {
  leaseId?: string;
  id?: number;
  joinedVia?: "failover" | "fresh";
  /**
   * The office as the groupLeader child last reported it (OFFICE_CHANGED), kept only so that a
   * graceful stop can resign it: the child, which owns the office, is stopped before `stopping`
   * is entered. Role and fencing token are read from the child itself.
   */
  office?: Office;
}

type RoleDone = DoneActorEvent<FollowerOutput | CandidateOutput, "role">;

/** The seat a follower decided to run for: only a follower's `campaign` output enters `candidate`. */
function campaignOf(event: { type: string }): { seat: LeaderSeat } {
  const output = (event as Partial<RoleDone>).output;
  if (output?.kind !== "campaign") throw new Error(`candidate entered on ${event.type}, not on a campaign`);
  return { seat: output.seat };
}

/** The office a follower resumes or a candidate won: the only ways into `leader`. */
function officeTakenOn(event: { type: string }): Office {
  const output = (event as Partial<RoleDone>).output;
  if (output?.kind === "resume") return output.office;
  if (output?.kind === "won") return { seat: output.seat, token: output.token };
  throw new Error(`leader entered on ${event.type}, without an office resumed or won`);
}

function requireId(context: NodeContext): number {
  if (context.id === undefined) throw new Error("member without a node ID");
  return context.id;
}

/**
 * One cluster node: a session (lease), an identity (node ID and member key), and a role in its
 * grouping. Each phase runs a child machine; etcd results arrive as events and are forwarded to
 * the running child. A passed local deadline suspends the node before etcd can expire its lease;
 * a lost lease starts a new session and a new identity.
 */
export const nodeMachine = setup({
  types: {
    context: {} as NodeContext,
    events: {} as NodeEvent,
    children: {} as { bootstrapId: "bootstrapId"; role: "follower" | "candidate" | "groupLeader" },
  },
  actors: {
    bootstrapId: bootstrapIdMachine,
    follower: followerMachine,
    candidate: candidateMachine,
    groupLeader: groupLeaderMachine,
  },
  actions: {
    openSession: () => {},
    scheduleReconnect: () => {},
    watchGrouping: (_, _params: { id: number }) => {},
    unwatchGrouping: () => {},
    leaveCluster: (_, _params: { id?: number; office?: Office }) => {},
    abandonSession: () => {},
    vacateOffice: (_, _params: { id?: number; office?: Office }) => {},
    stopAwaitingAdvertisedSlot: () => {},
    forwardToBootstrap: sendTo("bootstrapId", ({ event }) => event),
    forwardToRole: sendTo("role", ({ event }) => event),
  },
  guards: {
    resumesOffice: (_, params: { kind: string }) => params.kind === "resume",
    wonCampaign: (_, params: { kind: string }) => params.kind === "won",
  },
}).createMachine({
  id: "node",
  context: {},
  initial: "connecting",
  states: {
    connecting: {
      entry: "openSession",
      on: {
        SESSION_OPENED: {
          target: "bootstrapping",
          actions: assign({ leaseId: ({ event }) => event.leaseId }),
        },
        SESSION_FAILED: "reconnecting",
        STOP: "stopped",
      },
    },
    reconnecting: {
      entry: "scheduleReconnect",
      on: { RECONNECT: "connecting", STOP: "stopped" },
    },
    bootstrapping: {
      // A stopped child runs no exit actions, so the node ends the child's wait for an advertisement.
      exit: "stopAwaitingAdvertisedSlot",
      invoke: {
        id: "bootstrapId",
        src: "bootstrapId",
        onDone: {
          target: "member",
          actions: assign({ id: ({ event }) => event.output.id, joinedVia: ({ event }) => event.output.via }),
        },
      },
      on: {
        ...forwarding(BOOTSTRAP_EVENTS, "forwardToBootstrap"),
        SESSION_EXPIRED_LOCALLY: "renewing",
        SESSION_LOST: "renewing",
        STOP: "stopping",
      },
    },
    member: {
      entry: { type: "watchGrouping", params: ({ context }) => ({ id: requireId(context) }) },
      exit: "unwatchGrouping",
      initial: "follower",
      on: {
        ...forwarding(ROLE_EVENTS, "forwardToRole"),
        SESSION_EXPIRED_LOCALLY: "suspended",
        SESSION_LOST: "renewing",
        STOP: "stopping",
      },
      states: {
        follower: {
          invoke: {
            id: "role",
            src: "follower",
            onDone: [
              {
                guard: { type: "resumesOffice", params: ({ event }) => ({ kind: event.output.kind }) },
                target: "leader",
              },
              { target: "candidate" },
            ],
          },
        },
        candidate: {
          invoke: {
            id: "role",
            src: "candidate",
            input: ({ event }) => campaignOf(event),
            onDone: [
              {
                guard: { type: "wonCampaign", params: ({ event }) => ({ kind: event.output.kind }) },
                target: "leader",
              },
              { target: "follower" },
            ],
          },
        },
        leader: {
          invoke: {
            id: "role",
            src: "groupLeader",
            input: ({ event }) => officeTakenOn(event),
            onDone: { target: "follower", actions: assign({ office: undefined }) },
          },
          on: {
            OFFICE_CHANGED: {
              actions: assign({ office: ({ event }) => ({ seat: event.seat, token: event.token }) }),
            },
          },
        },
      },
    },
    suspended: {
      // Past its local deadline the node vacates the seat it held (a fenced delete of its own key),
      // so that a one-way stall, whose keepalives still reach etcd, does not keep the seat held. The
      // runtime reports SESSION_VALID only once etcd has settled that; back in `member` the node re-reads its keys.
      entry: [
        { type: "vacateOffice", params: ({ context }) => ({ id: context.id, office: context.office }) },
        assign({ office: undefined }),
      ],
      on: {
        SESSION_VALID: "member",
        SESSION_LOST: "renewing",
        STOP: "stopping",
      },
    },
    renewing: {
      entry: [
        "abandonSession",
        assign({ id: undefined, leaseId: undefined, joinedVia: undefined, office: undefined }),
      ],
      // Through the reconnect delay: nodes that lost their sessions together do not all return at once.
      always: "reconnecting",
    },
    stopping: {
      entry: { type: "leaveCluster", params: ({ context }) => ({ id: context.id, office: context.office }) },
      on: { LEFT: "stopped" },
    },
    stopped: { type: "final" },
  },
});
