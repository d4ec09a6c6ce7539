import { assign, setup } from "xstate";
import type { LeaderSeat, LeadersChanged, Office } from "./events.js";

export type FollowerEvent = LeadersChanged;

export type FollowerOutput = { kind: "campaign"; seat: LeaderSeat } | { kind: "resume"; office: Office };

/** The seat still this node's, the primary first; only called when `holdsALeaderKey` held. */
function heldOffice(event: LeadersChanged): Office {
  if (event.primary?.mine) return { seat: 1, token: event.primary.token };
  if (event.backup?.mine) return { seat: 2, token: event.backup.token };
  throw new Error("resumingOffice without a leader key of this node");
}

/**
 * A member that leads nothing: it watches its grouping's two leader keys. When both are vacant it
 * runs for primary; when only the backup is vacant it runs for backup; when only the primary is
 * vacant it waits, because the backup is promoted first. A leader key that is still this node's
 * (after a suspension) is resumed, not campaigned for.
 */
export const followerMachine = setup({
  types: {
    events: {} as FollowerEvent,
    output: {} as FollowerOutput,
    context: {} as { outcome: FollowerOutput },
  },
  actions: {
    readLeaders: () => {},
  },
  guards: {
    holdsALeaderKey: ({ event }) => Boolean(event.primary?.mine || event.backup?.mine),
    bothVacant: ({ event }) => !event.primary && !event.backup,
    backupVacant: ({ event }) => Boolean(event.primary) && !event.backup,
  },
}).createMachine({
  id: "follower",
  context: { outcome: { kind: "campaign", seat: 1 } },
  initial: "watchingLeaders",
  states: {
    watchingLeaders: {
      entry: "readLeaders",
      on: {
        LEADERS_CHANGED: [
          {
            guard: "holdsALeaderKey",
            target: "resumingOffice",
            actions: assign({ outcome: ({ event }) => ({ kind: "resume", office: heldOffice(event) }) }),
          },
          {
            guard: "bothVacant",
            target: "runningForPrimary",
            actions: assign({ outcome: { kind: "campaign", seat: 1 } }),
          },
          {
            guard: "backupVacant",
            target: "runningForBackup",
            actions: assign({ outcome: { kind: "campaign", seat: 2 } }),
          },
        ],
      },
    },
    resumingOffice: { type: "final" },
    runningForPrimary: { type: "final" },
    runningForBackup: { type: "final" },
  },
  output: ({ context }) => context.outcome,
});
