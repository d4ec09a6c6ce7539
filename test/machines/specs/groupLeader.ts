/**
 * groupLeader as the design describes it. Taking office (on start, and again when promoted) it
 * tells its parent the office. The backup asks for the leader keys on taking office (the primary
 * may have gone before, and no change would come) and is promoted, by a fenced transaction on its
 * token, when the primary key is vacant; a backup that finds the primary key under its own lease (a
 * stopping primary handed it over) takes office as primary with that key's token at once; the
 * primary runs the failover advertiser. A leader whose
 * own key is vacant, held by another node, poisoned, or held with another token is deposed at
 * once, as is one whose fenced write fails; that check comes first. A poisoned key in the other
 * seat (no lease keeps it) is removed, fenced on its mod revision.
 */
import type { LeaderSeat, LeadersChanged, Office } from "../../../machines/events.js";
import type { GroupLeaderEvent } from "../../../machines/groupLeader.js";
import { effect } from "../support.js";
import { ALWAYS, type Instance, rowsOf, type Table } from "../table.js";
import { failoverAdvertiserEvents, failoverAdvertiserTable } from "./failoverAdvertiser.js";
import { leadersChanged, SEAT_KINDS, seat } from "./follower.js";

const M = "groupLeader";

const row = rowsOf<Office, GroupLeaderEvent>();
const officeChanged = (c: Office) => ({ type: "OFFICE_CHANGED", seat: c.seat, token: c.token });
const otherSeat = (c: Office): LeaderSeat => (c.seat === 1 ? 2 : 1);
const seatOf = (e: LeadersChanged, seat: LeaderSeat) => (seat === 1 ? e.primary : e.backup);

const ownSeatLost = {
  name: "own seat lost",
  holds: (c: Office, e: LeadersChanged) => {
    const own = seatOf(e, c.seat);
    return !(own?.mine === true && own.token === c.token);
  },
};
const otherSeatPoisoned = {
  name: "other seat poisoned",
  holds: (c: Office, e: LeadersChanged) => seatOf(e, otherSeat(c))?.poisonRevision !== undefined,
};
const removeOtherSeat = (c: Office, e: LeadersChanged) => [
  effect(M, "removePoisonedSeat", {
    seat: otherSeat(c),
    modRevision: seatOf(e, otherSeat(c))?.poisonRevision,
  }),
];

const forwarded = ["MEMBERS_CHANGED", "SLOTS_ADVERTISED", "ADVERTISE_FAILED", "RETRY"] as const;

export const groupLeaderTable: Table<Office, GroupLeaderEvent> = {
  machine: M,
  effects: ["promote", "readLeaders", "removePoisonedSeat"],
  states: ["takingOffice", "backup", "promoting", "primary", "deposed"],
  initial: "takingOffice",
  context: (input) => ({ ...(input as Office) }),
  observed: ["seat", "token"],
  start: { toParent: officeChanged },
  finals: ["deposed"],
  output: () => ({ kind: "deposed" }),
  invokes: { primary: { id: "advertiser", table: failoverAdvertiserTable } },
  rows: [
    row({
      from: "takingOffice",
      on: ALWAYS,
      when: { name: "office is the primary's", holds: (c) => c.seat === 1 },
      to: "primary",
    }),
    row({ from: "takingOffice", on: ALWAYS, to: "backup", effects: () => [effect(M, "readLeaders")] }),

    row({
      from: "backup",
      on: "LEADERS_CHANGED",
      when: { name: "primary key handed to this node", holds: (_c, e) => e.primary?.mine === true },
      to: "takingOffice",
      update: (_c, e) => ({ seat: 1, token: (e as LeadersChanged).primary?.token ?? Number.NaN }),
      toParent: officeChanged,
    }),
    row({ from: "backup", on: "LEADERS_CHANGED", when: ownSeatLost, to: "deposed" }),
    row({
      from: "backup",
      on: "LEADERS_CHANGED",
      when: { name: "primary key vacant", holds: (_c, e) => e.primary === undefined },
      to: "promoting",
      effects: (c) => [effect(M, "promote", { token: c.token })],
    }),
    row({ from: "backup", on: "LEADERS_CHANGED", when: otherSeatPoisoned, effects: removeOtherSeat }),
    row({ from: "backup", on: "FENCE_LOST", to: "deposed" }),

    row({
      from: "promoting",
      on: "PROMOTED",
      to: "takingOffice",
      update: (_c, e) => ({ seat: 1, token: e.token }),
      toParent: officeChanged,
    }),
    row({ from: "promoting", on: "PROMOTION_FAILED", to: "deposed" }),

    row({ from: "primary", on: "LEADERS_CHANGED", when: ownSeatLost, to: "deposed" }),
    row({ from: "primary", on: "LEADERS_CHANGED", when: otherSeatPoisoned, effects: removeOtherSeat }),
    row({ from: "primary", on: "FENCE_LOST", to: "deposed" }),
    ...forwarded.map((on) => row({ from: "primary", on, forward: "advertiser" })),
  ],
};

/**
 * Views of the leader keys relative to the office: the own seat vacant, another node's, this
 * node's with its token or with another, or poisoned; the other seat vacant, another node's, this
 * node's (impossible, but must not confuse it) or poisoned. Then every other event a leader or its
 * advertiser takes.
 */
export function groupLeaderEvents(s: Instance): GroupLeaderEvent[] {
  const { seat: held, token } = s.context as Office;
  const own = [seat("vacant", token), seat("other", token), seat("mine", token), seat("mine", token + 1)];
  const ownSeats = [...own, seat("poisoned", token)];
  const views = ownSeats.flatMap((mineSeat) =>
    SEAT_KINDS.map((kind) => {
      const otherSeat = seat(kind, 50);
      return held === 1 ? leadersChanged(mineSeat, otherSeat) : leadersChanged(otherSeat, mineSeat);
    }),
  );
  return [
    ...views,
    { type: "PROMOTED", token: 30 },
    { type: "PROMOTION_FAILED" },
    { type: "FENCE_LOST" },
    ...failoverAdvertiserEvents(),
  ];
}

/** The advertiser's batches are the advertiser suite's business: here only its state counts. */
export const groupLeaderKey = (s: Instance) => ({
  path: s.path,
  status: s.status,
  context: s.context,
  advertiser: s.children.advertiser?.path,
});
