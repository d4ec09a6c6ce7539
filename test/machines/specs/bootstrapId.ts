/**
 * bootstrapId as the design describes it: first claim a failed slot that a leader advertised, else
 * take a fresh ID; when the cluster is full, wait for an advertisement; every etcd failure backs
 * off (with the number of failures so far) and starts over with a claim.
 */
import type { BootstrapIdEvent, BootstrapIdOutput } from "../../../machines/bootstrapId.js";
import { effect } from "../support.js";
import { type Instance, rowsOf, type Table } from "../table.js";

const M = "bootstrapId";
const fx = (name: string, params?: unknown) => effect(M, name, params);

interface Ctx {
  failures: number;
  id?: number;
  via?: BootstrapIdOutput["via"];
}

const row = rowsOf<Ctx, BootstrapIdEvent>();

const backOff = {
  to: "backingOff",
  update: (c: Ctx) => ({ ...c, failures: c.failures + 1 }),
  effects: (_c: Ctx, _e: BootstrapIdEvent, next: Ctx) => [fx("scheduleRetry", { failures: next.failures })],
} as const;

export const bootstrapIdTable: Table<Ctx, BootstrapIdEvent> = {
  machine: M,
  effects: [
    "allocateFreshId",
    "awaitAdvertisedSlot",
    "claimAdvertisedSlot",
    "scheduleRetry",
    "stopAwaitingAdvertisedSlot",
  ],
  states: [
    "claimingAdvertisedSlot",
    "allocatingFreshId",
    "waitingForAdvertisedSlot",
    "backingOff",
    "identified",
  ],
  initial: "claimingAdvertisedSlot",
  context: () => ({ failures: 0 }),
  start: { effects: () => [fx("claimAdvertisedSlot")] },
  finals: ["identified"],
  output: (c): BootstrapIdOutput | undefined =>
    c.id === undefined || !c.via ? undefined : { id: c.id, via: c.via },
  rows: [
    row({
      from: "claimingAdvertisedSlot",
      on: "SLOT_CLAIMED",
      to: "identified",
      update: (c, e) => ({ ...c, id: e.id, via: "failover" }),
    }),
    row({
      from: "claimingAdvertisedSlot",
      on: "NO_SLOT_CLAIMED",
      to: "allocatingFreshId",
      effects: () => [fx("allocateFreshId")],
    }),
    row({ from: "claimingAdvertisedSlot", on: "ETCD_FAILED", ...backOff }),
    row({
      from: "allocatingFreshId",
      on: "ID_ALLOCATED",
      to: "identified",
      update: (c, e) => ({ ...c, id: e.id, via: "fresh" }),
    }),
    row({
      from: "allocatingFreshId",
      on: "CLUSTER_FULL",
      to: "waitingForAdvertisedSlot",
      effects: () => [fx("awaitAdvertisedSlot")],
    }),
    row({ from: "allocatingFreshId", on: "ETCD_FAILED", ...backOff }),
    row({
      from: "waitingForAdvertisedSlot",
      on: "SLOT_ADVERTISED",
      to: "claimingAdvertisedSlot",
      effects: () => [fx("stopAwaitingAdvertisedSlot"), fx("claimAdvertisedSlot")],
    }),
    row({
      from: "backingOff",
      on: "RETRY",
      to: "claimingAdvertisedSlot",
      effects: () => [fx("claimAdvertisedSlot")],
    }),
  ],
};

/** One of each event; the IDs differ so that the output tells which route was taken. */
export const bootstrapIdEvents = (): BootstrapIdEvent[] => [
  { type: "SLOT_CLAIMED", id: 7 },
  { type: "NO_SLOT_CLAIMED" },
  { type: "ID_ALLOCATED", id: 3 },
  { type: "CLUSTER_FULL" },
  { type: "SLOT_ADVERTISED" },
  { type: "ETCD_FAILED", error: "etcdserver: request timed out" },
  { type: "RETRY" },
];

/** Failures grow without bound: two are enough to see the count go up. */
export const bootstrapIdKey = (s: Instance) => {
  const c = s.context as Ctx;
  return { path: s.path, status: s.status, c: { ...c, failures: Math.min(c.failures, 2) } };
};
