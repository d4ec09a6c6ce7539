import type { candidateMachine } from "../../../machines/candidate.js";
import { campaignTurnMs, seatTakenSince } from "../campaignTurn.js";
import { type EffectContext, identityOf, nodeRecord } from "./context.js";

type Actions = NonNullable<Parameters<(typeof candidateMachine)["provide"]>[0]["actions"]>;

/**
 * candidate's one effect: a campaign for a leader seat, won or lost. It waits for its turn among
 * the grouping's candidates first (see `campaignTurnMs`); a seat that a newer view shows taken
 * meanwhile is lost without a transaction.
 */
export function candidateEffects(ctx: EffectContext): Actions {
  return {
    campaign: (_, { seat }) =>
      ctx.scope().run(
        "campaign",
        async (scope) => {
          if (!scope.isValid()) return { type: "CAMPAIGN_LOST" };
          const { id, grouping } = identityOf(ctx);
          const turnMs = campaignTurnMs(id, ctx.layout, ctx.grouping.leaders$.value);
          if (turnMs > 0) {
            const seenBefore = ctx.grouping.leaders$.value?.revision ?? 0;
            await new Promise<void>((resolve) => ctx.timers.after(turnMs, resolve));
            if (!scope.isValid() || seatTakenSince(ctx.grouping.leaders$.value, seenBefore, seat))
              return { type: "CAMPAIGN_LOST" };
          }
          const result = await ctx.store.campaign(grouping, seat, nodeRecord(ctx, id), scope.leaseId);
          if (result.kind === "lost") return { type: "CAMPAIGN_LOST" };
          scope.noteWrite(result.token);
          return { type: "CAMPAIGN_WON", token: result.token };
        },
        (error) => ({ type: "ETCD_FAILED", error }),
      ),
  };
}
