import { assign, sendParent, sendTo, setup } from "xstate";
import type { LeaderSlot, LeadersChanged, MembersChanged, Office } from "./events.js";
import { failoverAdvertiserMachine } from "./failoverAdvertiser.js";

export type GroupLeaderEvent =
  | LeadersChanged
  | MembersChanged
  | { type: "PROMOTED"; token: number }
  | { type: "PROMOTION_FAILED" }
  | { type: "FENCE_LOST" }
  | { type: "SLOTS_ADVERTISED" }
  | { type: "ADVERTISE_FAILED"; error: string }
  | { type: "RETRY" };

export interface GroupLeaderOutput {
  kind: "deposed";
}

/** What the leader tells its parent whenever its office changes (won, promoted). */
export interface OfficeChanged extends Office {
  type: "OFFICE_CHANGED";
}

/**
 * A node that holds a leader key of its grouping. The backup watches the primary key and is
 * promoted the moment it is vacant; the primary runs the failover advertiser. Losing the key
 * (seen in a watch or in a fenced write) deposes it at once. Resigning on a graceful stop is the
 * node's job: it deletes the key it holds, fenced on its token.
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
    reportOffice: sendParent(
      ({ context }): OfficeChanged => ({ type: "OFFICE_CHANGED", slot: context.slot, token: context.token }),
    ),
    forwardToAdvertiser: sendTo("advertiser", ({ event }) => event),
  },
  guards: {
    isPrimary: ({ context }) => context.slot === 1,
    lostOwnSeat: ({ context, event }) => {
      if (event.type !== "LEADERS_CHANGED") return false;
      const seat = context.slot === 1 ? event.primary : event.backup;
      return !seat?.mine || seat.token !== context.token;
    },
    primaryVacant: ({ event }) => event.type === "LEADERS_CHANGED" && !event.primary,
  },
}).createMachine({
  id: "groupLeader",
  context: ({ input }) => ({ slot: input.slot, token: input.token }),
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
          { guard: "lostOwnSeat", target: "deposed" },
          { guard: "primaryVacant", target: "promoting" },
        ],
        FENCE_LOST: "deposed",
      },
    },
    promoting: {
      entry: { type: "promote", params: ({ context }) => ({ token: context.token }) },
      on: {
        PROMOTED: {
          target: "takingOffice",
          actions: assign({ slot: 1 as LeaderSlot, token: ({ event }) => event.token }),
        },
        PROMOTION_FAILED: "deposed",
      },
    },
    primary: {
      invoke: { id: "advertiser", src: "failoverAdvertiser" },
      on: {
        LEADERS_CHANGED: { guard: "lostOwnSeat", target: "deposed" },
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
