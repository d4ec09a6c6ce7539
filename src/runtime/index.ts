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
export { type PoisonedLeaderKey, readPoisonedLeaderKeys } from "./clusterStatus.js";
export type { LeadersSnapshot, LeaderView, MembersByGroup } from "./groupingViews.js";
export { HistoryFileWriter, type HistoryRecord, type LeaderAction } from "./history.js";
export { InspectionFileWriter, type InspectionRecord } from "./inspection.js";
export { type NodeRole, type RoleFacts, roleFactsOf, roleOf, statePathOf } from "./roles.js";
