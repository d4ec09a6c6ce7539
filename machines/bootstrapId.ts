import { assign, setup } from "xstate";

export type BootstrapIdEvent =
  | { type: "SLOT_CLAIMED"; id: number }
  | { type: "NO_SLOT_CLAIMED" }
  | { type: "ID_ALLOCATED"; id: number }
  | { type: "CLUSTER_FULL" }
  | { type: "SLOT_ADVERTISED" }
  | { type: "ETCD_FAILED"; error: string }
  | { type: "RETRY" };

export interface BootstrapIdOutput {
  id: number;
  via: "failover" | "fresh";
}

/**
 * How a node gets its ID: first claim a failed slot that a leader advertised, else take a
 * fresh ID; when the cluster is full, wait for an advertisement. Each etcd step is a named
 * effect whose result comes back as an event.
 */
export const bootstrapIdMachine = setup({
  types: {
    context: {} as { id?: number; via?: "failover" | "fresh"; failures: number },
    events: {} as BootstrapIdEvent,
    output: {} as BootstrapIdOutput,
  },
  actions: {
    claimAdvertisedSlot: () => {},
    allocateFreshId: () => {},
    awaitAdvertisedSlot: () => {},
    stopAwaitingAdvertisedSlot: () => {},
    scheduleRetry: (_, _params: { failures: number }) => {},
  },
}).createMachine({
  id: "bootstrapId",
  context: { failures: 0 },
  initial: "claimingAdvertisedSlot",
  states: {
    claimingAdvertisedSlot: {
      entry: "claimAdvertisedSlot",
      on: {
        SLOT_CLAIMED: {
          target: "identified",
          actions: assign({ id: ({ event }) => event.id, via: "failover" }),
        },
        NO_SLOT_CLAIMED: "allocatingFreshId",
        ETCD_FAILED: "backingOff",
      },
    },
    allocatingFreshId: {
      entry: "allocateFreshId",
      on: {
        ID_ALLOCATED: {
          target: "identified",
          actions: assign({ id: ({ event }) => event.id, via: "fresh" }),
        },
        CLUSTER_FULL: "waitingForAdvertisedSlot",
        ETCD_FAILED: "backingOff",
      },
    },
    waitingForAdvertisedSlot: {
      entry: "awaitAdvertisedSlot",
      exit: "stopAwaitingAdvertisedSlot",
      on: { SLOT_ADVERTISED: "claimingAdvertisedSlot" },
    },
    backingOff: {
      entry: [
        assign({ failures: ({ context }) => context.failures + 1 }),
        { type: "scheduleRetry", params: ({ context }) => ({ failures: context.failures }) },
      ],
      on: { RETRY: "claimingAdvertisedSlot" },
    },
    identified: { type: "final" },
  },
  output: ({ context }) => {
    if (context.id === undefined || context.via === undefined) throw new Error("identified without an ID");
    return { id: context.id, via: context.via };
  },
});
