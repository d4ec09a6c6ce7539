/** rdeebee-cluster: embed one cluster node per database node. */

export { bootstrapIdMachine } from "../machines/bootstrapId.js";
export { candidateMachine } from "../machines/candidate.js";
export { failoverAdvertiserMachine } from "../machines/failoverAdvertiser.js";
export { followerMachine } from "../machines/follower.js";
export { groupLeaderMachine } from "../machines/groupLeader.js";
export { nodeMachine } from "../machines/node.js";
export * from "./config/index.js";
export {
  type ClusterKey,
  ClusterStore,
  classifyKey,
  decodeLeaderValue,
  FenceLostError,
  type FencingToken,
  type NodeRecord,
} from "./etcd/index.js";
export { createLogger, type Logger, type LoggerOptions, type LogMeta, silentLogger } from "./logging.js";
export * from "./runtime/index.js";
export { attachLeaseWatchdog, type LeaseWatchdog, type LeaseWatchdogOptions } from "./watchdog/index.js";
