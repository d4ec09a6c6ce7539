import type { AnyStateMachine } from "xstate";
import { bootstrapIdMachine } from "../../machines/bootstrapId.js";
import { candidateMachine } from "../../machines/candidate.js";
import { failoverAdvertiserMachine } from "../../machines/failoverAdvertiser.js";
import { followerMachine } from "../../machines/follower.js";
import { groupLeaderMachine } from "../../machines/groupLeader.js";
import { nodeMachine } from "../../machines/node.js";

/**
 * The machines to visualise, by the name of their file in `machines/` (which is also the name of
 * their files in `visualizations/`). A machine added to `machines/` belongs here; the unit test
 * fails when one is missing.
 */
export const MACHINES: Readonly<Record<string, AnyStateMachine>> = {
  bootstrapId: bootstrapIdMachine,
  candidate: candidateMachine,
  failoverAdvertiser: failoverAdvertiserMachine,
  follower: followerMachine,
  groupLeader: groupLeaderMachine,
  node: nodeMachine,
};
