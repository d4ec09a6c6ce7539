import { assign, setup } from "xstate";
import type { LeaderSlot } from "./events.js";

export type CandidateEvent =
  | { type: "CAMPAIGN_WON"; token: number }
  | { type: "CAMPAIGN_LOST" }
  | { type: "ETCD_FAILED"; error: string };

export type CandidateOutput = { kind: "won"; slot: LeaderSlot; token: number } | { kind: "lost" };

/** One campaign: a single transaction on the leader key, won or lost. */
export const candidateMachine = setup({
  types: {
    input: {} as { slot: LeaderSlot },
    context: {} as { slot: LeaderSlot; token?: number },
    events: {} as CandidateEvent,
    output: {} as CandidateOutput,
  },
  actions: {
    campaign: (_, _params: { slot: LeaderSlot }) => {},
  },
}).createMachine({
  id: "candidate",
  context: ({ input }) => ({ slot: input.slot }),
  initial: "campaigning",
  states: {
    campaigning: {
      entry: { type: "campaign", params: ({ context }) => ({ slot: context.slot }) },
      on: {
        CAMPAIGN_WON: { target: "won", actions: assign({ token: ({ event }) => event.token }) },
        CAMPAIGN_LOST: "lost",
        ETCD_FAILED: "lost",
      },
    },
    won: { type: "final" },
    lost: { type: "final" },
  },
  output: ({ context }) =>
    context.token === undefined
      ? { kind: "lost" }
      : { kind: "won", slot: context.slot, token: context.token },
});
