import { describe, expect, it } from "vitest";
import { createActor } from "xstate";
import { type BootstrapIdEvent, bootstrapIdMachine } from "../../machines/bootstrapId.js";
import { describeModel, recording } from "./runner.js";
import { bootstrapIdEvents, bootstrapIdKey, bootstrapIdTable } from "./specs/bootstrapId.js";
import { EffectLog, effect } from "./support.js";

describeModel({
  title: "bootstrapId",
  table: bootstrapIdTable,
  machines: [bootstrapIdMachine],
  events: bootstrapIdEvents,
  key: bootstrapIdKey,
  machine: (log) => recording(bootstrapIdMachine, bootstrapIdTable, log),
});

describe("bootstrapId", () => {
  it("claims, else allocates, else waits for an advertisement; each failure backs off longer", () => {
    const log = new EffectLog();
    const actor = createActor(recording(bootstrapIdMachine, bootstrapIdTable, log)).start();
    const events: BootstrapIdEvent[] = [
      { type: "ETCD_FAILED", error: "down" },
      { type: "RETRY" },
      { type: "ETCD_FAILED", error: "down" },
      { type: "RETRY" },
      { type: "NO_SLOT_CLAIMED" },
      { type: "CLUSTER_FULL" },
      { type: "SLOT_ADVERTISED" },
      { type: "SLOT_CLAIMED", id: 12 },
    ];
    for (const e of events) actor.send(e);
    const M = "bootstrapId";
    expect(log.all).toEqual([
      effect(M, "claimAdvertisedSlot"),
      effect(M, "scheduleRetry", { failures: 1 }),
      effect(M, "claimAdvertisedSlot"),
      effect(M, "scheduleRetry", { failures: 2 }),
      effect(M, "claimAdvertisedSlot"),
      effect(M, "allocateFreshId"),
      effect(M, "awaitAdvertisedSlot"),
      effect(M, "stopAwaitingAdvertisedSlot"),
      effect(M, "claimAdvertisedSlot"),
    ]);
    expect(actor.getSnapshot().output).toEqual({ id: 12, via: "failover" });
  });
});
