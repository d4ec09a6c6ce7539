import { assign, sendParent, sendTo, setup } from "xstate";
import type { LeaderSeat, LeadersChanged, Office } from "./events.js";
import { type FailoverAdvertiserEvent, failoverAdvertiserMachine } from "./failoverAdvertiser.js";

/** Its own events, and those of the advertiser it runs as primary (passed on to it). */
export type GroupLeaderEvent =
  | LeadersChanged
  | { type: "PROMOTED"; token: number }
  | { type: "PROMOTION_FAILED" }
  | { type: "FENCE_LOST" }
  | FailoverAdvertiserEvent;

export interface GroupLeaderOutput {
  kind: "deposed";
}

/** What the leader tells its parent whenever its office changes (won, promoted). */
export interface OfficeChanged extends Office {
  type: "OFFICE_CHANGED";
}

/** The other seat's poisoned key, as the `otherSeatPoisoned` guard found it. */
const otherSeat = (context: Office, event: LeadersChanged) => {
  const seat: LeaderSeat = context.seat === 1 ? 2 : 1;
  const modRevision = (seat === 1 ? event.primary : event.backup)?.poisonRevision;
  if (modRevision === undefined) throw new Error("removePoisonedSeat without a poisoned seat");
  return { seat, modRevision };
};

/** The primary key's token, once a handoff bound it to this node's lease. */
function handedToken(event: GroupLeaderEvent): number {
  if (event.type !== "LEADERS_CHANGED" || !event.primary?.mine) throw new Error("no primary key handed over");
  return event.primary.token;
}

const removePoisonedOtherSeat = {
  guard: "otherSeatPoisoned",
  actions: {
    type: "removePoisonedSeat",
    params: ({ context, event }: { context: Office; event: GroupLeaderEvent }) =>
      otherSeat(context, event as LeadersChanged),
  },
} as const;

/**
 * A node that holds a leader key of its grouping. The backup watches the primary key and is
 * promoted the moment it is vacant, or takes office at once when a stopping primary handed the key
 * to it (the key is then under this node's lease); the primary runs the failover advertiser. Losing the key
 * (seen in a watch or in a fenced write) deposes it at once. A poisoned key in the other seat
 * that no lease keeps is removed by this leader, so the grouping is not left one leader short.
 * Leaving on a graceful stop is the node's job: a primary hands its key to the backup, a backup resigns.
 */
export const groupLeaderMachine = setup({
  types: {
    input: {} as Office,
    context: {} as Office,
    events: {} as GroupLeaderEvent,
    output: {} as GroupLeaderOutput,
  },
  actors: { failoverAdvertiser: failoverAdvertiserMachine },
  actions: {
    promote: (_, _params: { token: number }) => {},
    readLeaders: () => {},
    removePoisonedSeat: (_, _params: { seat: LeaderSeat; modRevision: number }) => {},
    reportOffice: sendParent(
      ({ context }): OfficeChanged => ({ type: "OFFICE_CHANGED", seat: context.seat, token: context.token }),
    ),
    forwardToAdvertiser: sendTo("advertiser", ({ event }) => event),
  },
  guards: {
    isPrimary: ({ context }) => context.seat === 1,
    lostOwnSeat: ({ context, event }) => {
      if (event.type !== "LEADERS_CHANGED") return false;
      const seat = context.seat === 1 ? event.primary : event.backup;
      return !seat?.mine || seat.token !== context.token;
    },
    primaryHandedOver: ({ event }) => event.type === "LEADERS_CHANGED" && event.primary?.mine === true,
    primaryVacant: ({ event }) => event.type === "LEADERS_CHANGED" && !event.primary,
    otherSeatPoisoned: ({ context, event }) =>
      event.type === "LEADERS_CHANGED" &&
      (context.seat === 1 ? event.backup : event.primary)?.poisonRevision !== undefined,
  },
}).createMachine({
  id: "groupLeader",
  context: ({ input }) => ({ seat: input.seat, token: input.token }),
  initial: "takingOffice",
  states: {
    takingOffice: {
      entry: "reportOffice",
      always: [{ guard: "isPrimary", target: "primary" }, { target: "backup" }],
    },
    backup: {
      // The primary may have gone before this node took office; re-read rather than wait for a change.
      entry: "readLeaders",
      on: {
        LEADERS_CHANGED: [
          {
            // A stopping primary handed its key to this node's lease (the backup key went in the same txn).
            guard: "primaryHandedOver",
            target: "takingOffice",
            actions: assign({ seat: 1 as LeaderSeat, token: ({ event }) => handedToken(event) }),
          },
          { guard: "lostOwnSeat", target: "deposed" },
          { guard: "primaryVacant", target: "promoting" },
          removePoisonedOtherSeat,
        ],
        FENCE_LOST: "deposed",
      },
    },
    promoting: {
      entry: { type: "promote", params: ({ context }) => ({ token: context.token }) },
      on: {
        PROMOTED: {
          target: "takingOffice",
          actions: assign({ seat: 1 as LeaderSeat, token: ({ event }) => event.token }),
        },
        PROMOTION_FAILED: "deposed",
      },
    },
    primary: {
      invoke: { id: "advertiser", src: "failoverAdvertiser" },
      on: {
        LEADERS_CHANGED: [{ guard: "lostOwnSeat", target: "deposed" }, removePoisonedOtherSeat],
        FENCE_LOST: "deposed",
        MEMBERS_CHANGED: { actions: "forwardToAdvertiser" },
        SLOTS_ADVERTISED: { actions: "forwardToAdvertiser" },
        ADVERTISE_FAILED: { actions: "forwardToAdvertiser" },
        RETRY: { actions: "forwardToAdvertiser" },
      },
    },
    deposed: { type: "final" },
  },
  output: { kind: "deposed" },
});
