import { assign, sendTo, setup } from "xstate";
import { bootstrapIdMachine } from "./bootstrapId.js";
import { candidateMachine } from "./candidate.js";
import type { LeaderSlot, LeadersChanged, MembersChanged, Office } from "./events.js";
import { followerMachine } from "./follower.js";
import { groupLeaderMachine, type OfficeChanged } from "./groupLeader.js";

export type NodeEvent =
  | { type: "SESSION_OPENED"; leaseId: string }
  | { type: "SESSION_FAILED"; error: string }
  | { type: "RECONNECT" }
  | { type: "SESSION_EXPIRED_LOCALLY" }
  | { type: "SESSION_VALID" }
  | { type: "SESSION_LOST" }
  | { type: "STOP" }
  | { type: "LEFT" }
  | OfficeChanged
  // forwarded to the bootstrapId child
  | { type: "SLOT_CLAIMED"; id: number }
  | { type: "NO_SLOT_CLAIMED" }
  | { type: "ID_ALLOCATED"; id: number }
  | { type: "CLUSTER_FULL" }
  | { type: "SLOT_ADVERTISED" }
  // forwarded to the role child
  | LeadersChanged
  | MembersChanged
  | { type: "CAMPAIGN_WON"; token: number }
  | { type: "CAMPAIGN_LOST" }
  | { type: "PROMOTED"; token: number }
  | { type: "PROMOTION_FAILED" }
  | { type: "FENCE_LOST" }
  | { type: "SLOTS_ADVERTISED" }
  | { type: "ADVERTISE_FAILED"; error: string }
  // forwarded to whichever child is running
  | { type: "ETCD_FAILED"; error: string }
  | { type: "RETRY" };

export interface NodeContext {
  leaseId?: string;
  id?: number;
  joinedVia?: "failover" | "fresh";
  office?: Office;
  campaignSlot?: LeaderSlot;
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
        SLOT_CLAIMED: { actions: "forwardToBootstrap" },
        NO_SLOT_CLAIMED: { actions: "forwardToBootstrap" },
        ID_ALLOCATED: { actions: "forwardToBootstrap" },
        CLUSTER_FULL: { actions: "forwardToBootstrap" },
        SLOT_ADVERTISED: { actions: "forwardToBootstrap" },
        ETCD_FAILED: { actions: "forwardToBootstrap" },
        RETRY: { actions: "forwardToBootstrap" },
        SESSION_EXPIRED_LOCALLY: "renewing",
        SESSION_LOST: "renewing",
        STOP: "stopping",
      },
    },
    member: {
      entry: { type: "watchGrouping", params: ({ context }) => ({ id: context.id ?? -1 }) },
      exit: ["unwatchGrouping", assign({ campaignSlot: undefined })],
      initial: "follower",
      on: {
        LEADERS_CHANGED: { actions: "forwardToRole" },
        MEMBERS_CHANGED: { actions: "forwardToRole" },
        CAMPAIGN_WON: { actions: "forwardToRole" },
        CAMPAIGN_LOST: { actions: "forwardToRole" },
        PROMOTED: { actions: "forwardToRole" },
        PROMOTION_FAILED: { actions: "forwardToRole" },
        FENCE_LOST: { actions: "forwardToRole" },
        SLOTS_ADVERTISED: { actions: "forwardToRole" },
        ADVERTISE_FAILED: { actions: "forwardToRole" },
        ETCD_FAILED: { actions: "forwardToRole" },
        RETRY: { actions: "forwardToRole" },
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
                actions: assign({
                  office: ({ event }) => (event.output.kind === "resume" ? event.output.office : undefined),
                }),
              },
              {
                target: "candidate",
                actions: assign({
                  campaignSlot: ({ event }) =>
                    event.output.kind === "campaign" ? event.output.slot : undefined,
                }),
              },
            ],
          },
        },
        candidate: {
          invoke: {
            id: "role",
            src: "candidate",
            input: ({ context }) => ({ slot: context.campaignSlot ?? 2 }),
            onDone: [
              {
                guard: { type: "wonCampaign", params: ({ event }) => ({ kind: event.output.kind }) },
                target: "leader",
                actions: assign({
                  office: ({ event }) =>
                    event.output.kind === "won"
                      ? { slot: event.output.slot, token: event.output.token }
                      : undefined,
                }),
              },
              { target: "follower" },
            ],
          },
        },
        leader: {
          invoke: {
            id: "role",
            src: "groupLeader",
            input: ({ context }) => context.office ?? { slot: 2, token: 0 },
            onDone: { target: "follower", actions: assign({ office: undefined }) },
          },
          on: {
            OFFICE_CHANGED: {
              actions: assign({ office: ({ event }) => ({ slot: event.slot, token: event.token }) }),
            },
          },
        },
      },
    },
    suspended: {
      // Whatever office the node held is no longer to be trusted; back in `member` it re-reads its keys.
      entry: assign({ office: undefined }),
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
      // Through the reconnect delay: nodes that lost their leases together do not all return at once.
      always: "reconnecting",
    },
    stopping: {
      entry: { type: "leaveCluster", params: ({ context }) => ({ id: context.id, office: context.office }) },
      on: { LEFT: "stopped" },
    },
    stopped: { type: "final" },
  },
});
