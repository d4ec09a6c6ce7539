export { ClusterNode, type ClusterNodeOptions, type NodeStatus, createClusterNode } from "./clusterNode.js";
export type { LeaderView, LeadersSnapshot, MembersByGroup } from "./groupingViews.js";
export { type NodeRole, roleOf, statePath } from "./roles.js";
