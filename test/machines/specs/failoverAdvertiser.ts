/**
 * failoverAdvertiser as the design describes it: on start it asks for the slots already missing
 * (the runtime answers with MEMBERS_CHANGED); at most one batch is in flight; the latest missing
 * set seen meanwhile is advertised next, and an empty set never. A failed batch is retried after a
 * wait (the runtime's missing-slot stream does not repeat an unchanged set), unless a newer
 * non-empty set arrived while it was in flight, which replaces it.
 */
import type { FailoverAdvertiserEvent } from "../../../machines/failoverAdvertiser.js";
import { effect } from "../support.js";
import { ALWAYS, rowsOf, type Table } from "../table.js";

const M = "failoverAdvertiser";

interface Ctx {
  /** The latest missing set not yet sent. */
  next: readonly number[];
  /** The batch in flight. */
  sent: readonly number[];
}

const row = rowsOf<Ctx, FailoverAdvertiserEvent>();

export const failoverAdvertiserTable: Table<Ctx, FailoverAdvertiserEvent> = {
  machine: M,
  effects: ["advertiseSlots", "readMissingSlots", "scheduleRetry"],
  states: ["watchingMembers", "advertising", "waitingToRetry"],
  initial: "watchingMembers",
  context: () => ({ next: [], sent: [] }),
  start: { effects: () => [effect(M, "readMissingSlots")] },
  rows: [
    row({
      from: "watchingMembers",
      on: ALWAYS,
      when: { name: "slots to advertise", holds: (c) => c.next.length > 0 },
      to: "advertising",
      update: (c) => ({ next: [], sent: c.next }),
      effects: (c) => [effect(M, "advertiseSlots", { ids: c.next })],
    }),
    row({
      from: "watchingMembers",
      on: "MEMBERS_CHANGED",
      to: "watchingMembers",
      update: (c, e) => ({ ...c, next: e.missing }),
    }),
    row({ from: "advertising", on: "MEMBERS_CHANGED", update: (c, e) => ({ ...c, next: e.missing }) }),
    row({
      from: "advertising",
      on: "SLOTS_ADVERTISED",
      to: "watchingMembers",
      update: (c) => ({ ...c, sent: [] }),
    }),
    row({
      from: "advertising",
      on: "ADVERTISE_FAILED",
      to: "waitingToRetry",
      update: (c) => ({ next: c.next.length > 0 ? c.next : c.sent, sent: [] }),
      effects: () => [effect(M, "scheduleRetry")],
    }),
    row({ from: "waitingToRetry", on: "MEMBERS_CHANGED", update: (c, e) => ({ ...c, next: e.missing }) }),
    row({ from: "waitingToRetry", on: "RETRY", to: "watchingMembers" }),
  ],
};

/** Missing sets (none, one, two IDs) and each result. */
export const failoverAdvertiserEvents = (): FailoverAdvertiserEvent[] => [
  { type: "MEMBERS_CHANGED", missing: [] },
  { type: "MEMBERS_CHANGED", missing: [4] },
  { type: "MEMBERS_CHANGED", missing: [4, 5] },
  { type: "SLOTS_ADVERTISED" },
  { type: "ADVERTISE_FAILED", error: "etcdserver: request timed out" },
  { type: "RETRY" },
];
