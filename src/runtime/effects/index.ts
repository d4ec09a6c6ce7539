import { bootstrapIdMachine } from "../../../machines/bootstrapId.js";
import { candidateMachine } from "../../../machines/candidate.js";
import { failoverAdvertiserMachine } from "../../../machines/failoverAdvertiser.js";
import { followerMachine } from "../../../machines/follower.js";
import { groupLeaderMachine } from "../../../machines/groupLeader.js";
import { nodeMachine } from "../../../machines/node.js";
import { AdvertisedSlotWatch, bootstrapIdEffects } from "./bootstrapId.js";
import { candidateEffects } from "./candidate.js";
import type { EffectContext } from "./context.js";
import { failoverAdvertiserEffects } from "./failoverAdvertiser.js";
import { followerEffects } from "./follower.js";
import { groupLeaderEffects } from "./groupLeader.js";
import { nodeEffects } from "./node.js";

export type { EffectContext } from "./context.js";

/** The node machine with every named effect of it and its children bound to etcd (one module per machine). */
export function boundNodeMachine(ctx: EffectContext) {
  const slotWatch = new AdvertisedSlotWatch(ctx);
  return nodeMachine.provide({
    actions: nodeEffects(ctx, slotWatch),
    actors: {
      bootstrapId: bootstrapIdMachine.provide({ actions: bootstrapIdEffects(ctx, slotWatch) }),
      follower: followerMachine.provide({ actions: followerEffects(ctx) }),
      candidate: candidateMachine.provide({ actions: candidateEffects(ctx) }),
      groupLeader: groupLeaderMachine.provide({
        actions: groupLeaderEffects(ctx),
        actors: {
          failoverAdvertiser: failoverAdvertiserMachine.provide({ actions: failoverAdvertiserEffects(ctx) }),
        },
      }),
    },
  });
}
