import { filter, take } from "rxjs";
import type { candidateMachine } from "../../../machines/candidate.js";
import type { LeaderSeat } from "../../../machines/events.js";
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
          const { id, grouping } = identityOf(ctx);
          const turnMs = campaignTurnMs(id, ctx.layout, ctx.grouping.leaders$.value);
          if (turnMs > 0 && (await seatTakenWithin(ctx, turnMs, seat))) return { type: "CAMPAIGN_LOST" };
          // Checked after the turn, right before the transaction: the wait may have outlasted the session.
          if (!scope.isValid()) return { type: "CAMPAIGN_LOST" };
          const result = await ctx.store.campaign(grouping, seat, nodeRecord(ctx, id), scope.leaseId);
          if (result.kind === "lost") return { type: "CAMPAIGN_LOST" };
          scope.noteWrite(result.token);
          return { type: "CAMPAIGN_WON", token: result.token };
        },
        (error) => ({ type: "ETCD_FAILED", error }),
      ),
  };
}

/** Waits `turnMs`, or less when a newer view of the leader keys shows `seat` taken: then true. */
function seatTakenWithin(ctx: EffectContext, turnMs: number, seat: LeaderSeat): Promise<boolean> {
  const seenBefore = ctx.grouping.leaders$.value?.revision ?? 0;
  return new Promise((resolve) => {
    const taken = ctx.grouping.leaders$
      .pipe(
        filter((leaders) => seatTakenSince(leaders, seenBefore, seat)),
        take(1),
      )
      .subscribe(() => resolve(true));
    ctx.timers.after(turnMs, () => {
      taken.unsubscribe();
      resolve(false);
    });
  });
}
