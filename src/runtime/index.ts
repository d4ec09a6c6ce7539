export { ClusterNode, type ClusterNodeOptions, createClusterNode, type NodeStatus } from "./clusterNode.js";
export type { LeadersSnapshot, LeaderView, MembersByGroup } from "./groupingViews.js";
export { type NodeRole, roleOf, statePath } from "./roles.js";
