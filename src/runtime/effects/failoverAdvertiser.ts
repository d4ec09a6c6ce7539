import type { failoverAdvertiserMachine } from "../../../machines/failoverAdvertiser.js";
import { FenceLostError, jitteredInterval } from "../../etcd/index.js";
import { type EffectContext, fenceOf, identityOf } from "./context.js";

type Actions = NonNullable<Parameters<(typeof failoverAdvertiserMachine)["provide"]>[0]["actions"]>;

const ADVERTISE_RETRY_MS = 500;

/** The primary's failover advertiser: reads the failed slots, advertises them fenced on its office. */
export function failoverAdvertiserEffects(ctx: EffectContext): Actions {
  return {
    readMissingSlots: () => ctx.grouping.readMissingSlots(ctx.scope()),
    advertiseSlots: (_, { ids }) =>
      ctx.scope().run(
        "advertiseSlots",
        async (scope) => {
          const fence = fenceOf(ctx);
          const leaseId = scope.session?.leaseId;
          if (!fence || !leaseId || !scope.isValid())
            return { type: "ADVERTISE_FAILED", error: "not a leader with a valid lease" };
          const { id } = identityOf(ctx);
          try {
            for (const slot of ids) {
              if (await ctx.store.advertiseFailedSlot(fence, leaseId, slot, id))
                ctx.log.info("advertised failed slot", { slot, group: ctx.layout.nodeGroup(slot) });
            }
          } catch (err) {
            if (err instanceof FenceLostError) return { type: "FENCE_LOST" };
            throw err;
          }
          return { type: "SLOTS_ADVERTISED" };
        },
        (error) => ({ type: "ADVERTISE_FAILED", error }),
      ),
    scheduleRetry: () => ctx.scope().sendAfter(jitteredInterval(ADVERTISE_RETRY_MS), { type: "RETRY" }),
  };
}
