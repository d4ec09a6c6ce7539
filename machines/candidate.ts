import { assign, setup } from "xstate";
import type { LeaderSeat } from "./events.js";

export type CandidateEvent =
  | { type: "CAMPAIGN_WON"; token: number }
  | { type: "CAMPAIGN_LOST" }
  | { type: "ETCD_FAILED"; error: string };

export type CandidateOutput = { kind: "won"; seat: LeaderSeat; token: number } | { kind: "lost" };

/** One campaign: a single transaction on the leader key, won or lost. */
export const candidateMachine = setup({
  types: {
    input: {} as { seat: LeaderSeat },
    context: {} as { seat: LeaderSeat; token?: number },
    events: {} as CandidateEvent,
    output: {} as CandidateOutput,
  },
  actions: {
    campaign: (_, _params: { seat: LeaderSeat }) => {},
  },
}).createMachine({
  id: "candidate",
  context: ({ input }) => ({ seat: input.seat }),
  initial: "campaigning",
  states: {
    campaigning: {
      entry: { type: "campaign", params: ({ context }) => ({ seat: context.seat }) },
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
      : { kind: "won", seat: context.seat, token: context.token },
});
