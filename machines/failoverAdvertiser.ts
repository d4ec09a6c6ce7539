import { assign, setup } from "xstate";
import type { MembersChanged } from "./events.js";

export type FailoverAdvertiserEvent =
  | MembersChanged
  | { type: "SLOTS_ADVERTISED" }
  | { type: "ADVERTISE_FAILED"; error: string }
  | { type: "RETRY" };

/**
 * Run by the grouping's primary: whenever allocated slots of its groups have no live member and
 * no advertisement, it advertises them so that a new node takes them over. Changes that arrive
 * while a batch is in flight are kept and advertised next.
 */
export const failoverAdvertiserMachine = setup({
  types: {
    context: {} as { pending: readonly number[]; inFlight: readonly number[] },
    events: {} as FailoverAdvertiserEvent,
  },
  actions: {
    readMissingSlots: () => {},
    advertiseSlots: (_, _params: { ids: readonly number[] }) => {},
    scheduleRetry: () => {},
    keepLatest: assign({
      pending: ({ event }) => (event.type === "MEMBERS_CHANGED" ? event.missing : []),
    }),
  },
  guards: {
    hasPending: ({ context }) => context.pending.length > 0,
  },
}).createMachine({
  id: "failoverAdvertiser",
  context: { pending: [], inFlight: [] },
  initial: "watchingMembers",
  // A new primary asks for the current gaps: they may have opened before it took office.
  entry: "readMissingSlots",
  states: {
    watchingMembers: {
      always: { guard: "hasPending", target: "advertising" },
      on: { MEMBERS_CHANGED: { actions: "keepLatest", target: "watchingMembers", reenter: true } },
    },
    advertising: {
      entry: [
        { type: "advertiseSlots", params: ({ context }) => ({ ids: context.pending }) },
        assign({ inFlight: ({ context }) => context.pending, pending: [] }),
      ],
      on: {
        MEMBERS_CHANGED: { actions: "keepLatest" },
        SLOTS_ADVERTISED: { target: "watchingMembers", actions: assign({ inFlight: [] }) },
        // A failed batch is retried unless a newer view of the gaps has arrived meanwhile.
        ADVERTISE_FAILED: {
          target: "waitingToRetry",
          actions: assign({
            pending: ({ context }) => (context.pending.length > 0 ? context.pending : context.inFlight),
            inFlight: [],
          }),
        },
      },
    },
    waitingToRetry: {
      entry: "scheduleRetry",
      on: {
        MEMBERS_CHANGED: { actions: "keepLatest" },
        RETRY: "watchingMembers",
      },
    },
  },
});
