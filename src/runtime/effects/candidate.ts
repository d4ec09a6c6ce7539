import type { candidateMachine } from "../../../machines/candidate.js";
import { type EffectContext, identityOf, nodeRecord } from "./context.js";

type Actions = NonNullable<Parameters<(typeof candidateMachine)["provide"]>[0]["actions"]>;

/** candidate's one effect: a campaign for a leader seat, won or lost. */
export function candidateEffects(ctx: EffectContext): Actions {
  return {
    campaign: (_, { seat }) =>
      ctx.scope().run(
        "campaign",
        async (scope) => {
          if (!scope.isValid()) return { type: "CAMPAIGN_LOST" };
          const { id, grouping } = identityOf(ctx);
          const result = await ctx.store.campaign(grouping, seat, nodeRecord(ctx, id), scope.leaseId);
          if (result.kind === "lost") return { type: "CAMPAIGN_LOST" };
          scope.noteWrite(result.token);
          return { type: "CAMPAIGN_WON", token: result.token };
        },
        (error) => ({ type: "ETCD_FAILED", error }),
      ),
  };
}
