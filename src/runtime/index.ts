export {
  assertEtcdReachable,
  connectEtcd,
  type Etcd3,
  EtcdUnreachableError,
  FenceLostError,
  type FencingToken,
  WriteNotCommittedError,
  WriteOutcomeUnknownError,
} from "../etcd/index.js";
export {
  ClusterNode,
  type ClusterNodeOptions,
  createClusterNode,
  type NodeStatus,
  NotPrimaryError,
} from "./clusterNode.js";
export {
  type ClusterStatus,
  type PoisonedLeaderKey,
  readClusterStatus,
  readPoisonedLeaderKeys,
  type SeatStatus,
  type StatusReadOptions,
} from "./clusterStatus.js";
export type { LeadersSnapshot, LeaderView, MembersByGroup } from "./groupingViews.js";
export { HistoryFileWriter, type HistoryRecord, type LeaderAction } from "./history.js";
export { InspectionFileWriter, type InspectionRecord } from "./inspection.js";
export {
  type LeadershipEndReason,
  type LeadershipHandlers,
  LeadershipLostError,
  type LeadershipTerm,
} from "./leadership.js";
export { type LeaderWatchOptions, watchLeaders } from "./leaderWatch.js";
export type { JoinedVia } from "./nodeStatus.js";
export { type NodeRole, type RoleFacts, roleFactsOf, roleOf, statePathOf } from "./roles.js";
export { StateDirLockedError } from "./stateDir.js";
export {
  NodeStoppedError,
  StartAbortedError,
  type StartOptions,
  StartTimeoutError,
  WaitAbortedError,
  type WaitOptions,
  WaitTimeoutError,
} from "./waiting.js";
