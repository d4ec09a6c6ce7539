import type { groupLeaderMachine } from "../../../machines/groupLeader.js";
import { FenceLostError, removePoisonedLeaderKey } from "../../etcd/index.js";
import { type EffectContext, identityOf, nodeRecord } from "./context.js";

type Actions = NonNullable<Parameters<(typeof groupLeaderMachine)["provide"]>[0]["actions"]>;

/** groupLeader's effects: the backup's promotion, a fresh read of the leader keys, removing a poisoned seat. */
export function groupLeaderEffects(ctx: EffectContext): Actions {
  return {
    readLeaders: () => ctx.grouping.readLeaders(ctx.scope()),
    promote: (_, { token }) =>
      ctx.scope().run(
        "promote",
        async (scope) => {
          if (!scope.isValid()) return { type: "PROMOTION_FAILED" };
          const { id, grouping } = identityOf(ctx);
          const backup = { grouping, seat: 2 as const, token };
          const result = await ctx.store.promote(backup, nodeRecord(ctx, id), scope.leaseId);
          if (result.kind === "lost") return { type: "PROMOTION_FAILED" };
          scope.noteWrite(result.token);
          return { type: "PROMOTED", token: result.token };
        },
        () => ({ type: "PROMOTION_FAILED" }),
      ),
    // Deletes the other seat's poisoned key, fenced on this leader's own seat; the watch shows the result.
    removePoisonedSeat: ({ context: office }, { seat, modRevision }) => {
      const scope = ctx.scope();
      const leaseId = scope.session?.leaseId;
      if (!leaseId || !scope.isValid()) return;
      const fence = { grouping: identityOf(ctx).grouping, ...office };
      const key = ctx.layout.keys.leaderKey(fence.grouping, seat);
      removePoisonedLeaderKey(ctx.etcd, ctx.layout, fence, leaseId, key, modRevision, ctx.callTimeoutMs).then(
        (result) => ctx.log.warn("poisoned leader key", { key, outcome: result.kind }),
        (err) => {
          ctx.log.warn("could not remove poisoned leader key", { key, error: String(err) });
          if (err instanceof FenceLostError) scope.send({ type: "FENCE_LOST" });
        },
      );
    },
  };
}
