import type { followerMachine } from "../../../machines/follower.js";
import type { EffectContext } from "./context.js";

type Actions = NonNullable<Parameters<(typeof followerMachine)["provide"]>[0]["actions"]>;

/** follower's one effect: a fresh read of the leader keys, answered as LEADERS_CHANGED. */
export function followerEffects(ctx: EffectContext): Actions {
  return { readLeaders: () => ctx.grouping.readLeaders(ctx.scope()) };
}
