/**
 * follower as the design describes it: it reads the leader keys on start, then on each view of
 * them resumes a key that is still its own (the primary first), runs for primary when both are
 * vacant, runs for backup when only the backup is vacant, and otherwise (the primary vacant but a
 * backup there to be promoted, or both held) keeps watching. A poisoned key counts as held.
 */
import type { LeadersChanged, SeatHolder } from "../../../machines/events.js";
import type { FollowerOutput } from "../../../machines/follower.js";
import { effect } from "../support.js";
import { rowsOf, type Table } from "../table.js";

const M = "follower";

interface Ctx {
  outcome?: FollowerOutput;
}

const row = rowsOf<Ctx, LeadersChanged>();
const mine = (seat: SeatHolder | undefined) => seat?.mine === true;

export const followerTable: Table<Ctx, LeadersChanged> = {
  machine: M,
  effects: ["readLeaders"],
  states: ["watchingLeaders", "resumingOffice", "runningForPrimary", "runningForBackup"],
  initial: "watchingLeaders",
  context: () => ({}),
  start: { effects: () => [effect(M, "readLeaders")] },
  finals: ["resumingOffice", "runningForPrimary", "runningForBackup"],
  output: (c) => c.outcome,
  rows: [
    row({
      from: "watchingLeaders",
      on: "LEADERS_CHANGED",
      when: { name: "a leader key is still mine", holds: (_c, e) => mine(e.primary) || mine(e.backup) },
      to: "resumingOffice",
      update: (_c, e) => ({
        outcome: {
          kind: "resume",
          office: mine(e.primary)
            ? { seat: 1, token: e.primary?.token ?? -1 }
            : { seat: 2, token: e.backup?.token ?? -1 },
        },
      }),
    }),
    row({
      from: "watchingLeaders",
      on: "LEADERS_CHANGED",
      when: { name: "both keys vacant", holds: (_c, e) => e.primary === undefined && e.backup === undefined },
      to: "runningForPrimary",
      update: () => ({ outcome: { kind: "campaign", seat: 1 } }),
    }),
    row({
      from: "watchingLeaders",
      on: "LEADERS_CHANGED",
      when: {
        name: "only the backup key vacant",
        holds: (_c, e) => e.primary !== undefined && e.backup === undefined,
      },
      to: "runningForBackup",
      update: () => ({ outcome: { kind: "campaign", seat: 2 } }),
    }),
  ],
};

/** A seat as a node may see it: vacant, another node's, this node's, or a poisoned key. */
export type SeatKind = "vacant" | "other" | "mine" | "poisoned";
export const SEAT_KINDS: readonly SeatKind[] = ["vacant", "other", "mine", "poisoned"];

export function seat(kind: SeatKind, token: number): SeatHolder | undefined {
  switch (kind) {
    case "vacant":
      return undefined;
    case "other":
      return { nodeId: 8, token, mine: false };
    case "mine":
      return { nodeId: 3, token, mine: true };
    case "poisoned":
      return { token, mine: false, poisonRevision: token + 1000 };
  }
}

export function leadersChanged(
  primary: SeatHolder | undefined,
  backup: SeatHolder | undefined,
): LeadersChanged {
  return { type: "LEADERS_CHANGED", ...(primary && { primary }), ...(backup && { backup }) };
}

/** Every combination of the primary (token 10) and backup (token 20) seats. */
export const followerEvents = (): LeadersChanged[] =>
  SEAT_KINDS.flatMap((p) => SEAT_KINDS.map((b) => leadersChanged(seat(p, 10), seat(b, 20))));
