/**
 * candidate as the design describes it: one campaign transaction for its seat, sent on start; won
 * only when etcd says so (with the leader key's token), lost on a lost compare or an etcd error.
 */
import type { CandidateEvent, CandidateOutput } from "../../../machines/candidate.js";
import type { LeaderSeat } from "../../../machines/events.js";
import { effect } from "../support.js";
import { rowsOf, type Table } from "../table.js";

const M = "candidate";

interface Ctx {
  seat: LeaderSeat;
  token?: number;
}

const row = rowsOf<Ctx, CandidateEvent>();

export const candidateTable: Table<Ctx, CandidateEvent> = {
  machine: M,
  effects: ["campaign"],
  states: ["campaigning", "won", "lost"],
  initial: "campaigning",
  context: (input) => ({ seat: (input as { seat: LeaderSeat }).seat }),
  start: { effects: (c) => [effect(M, "campaign", { seat: c.seat })] },
  finals: ["won", "lost"],
  output: (c, final): CandidateOutput =>
    final === "won" ? { kind: "won", seat: c.seat, token: c.token ?? -1 } : { kind: "lost" },
  rows: [
    row({ from: "campaigning", on: "CAMPAIGN_WON", to: "won", update: (c, e) => ({ ...c, token: e.token }) }),
    row({ from: "campaigning", on: "CAMPAIGN_LOST", to: "lost" }),
    row({ from: "campaigning", on: "ETCD_FAILED", to: "lost" }),
  ],
};

export const candidateEvents = (): CandidateEvent[] => [
  { type: "CAMPAIGN_WON", token: 31 },
  { type: "CAMPAIGN_LOST" },
  { type: "ETCD_FAILED", error: "etcdserver: leader changed" },
];
