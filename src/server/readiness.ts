import type { ClusterNode, NodeRole } from "../runtime/index.js";

/** The roles of a member whose session is valid: a suspended node's local lease deadline has passed. */
const READY_ROLES: ReadonlySet<NodeRole> = new Set(["follower", "candidate", "primary", "backup"]);

export interface Readiness {
  ready: boolean;
  role: NodeRole;
  /** The leader seat the node holds: `primary`, `backup`, or null for none. */
  seat: "primary" | "backup" | null;
  id: number | null;
  group: number | null;
  grouping: number | null;
  node: string;
}

/**
 * Whether the node may take traffic: it is a member of its group (it has an ID and a member key)
 * and its session is valid. The session's local deadline is watched by its own timer, which turns
 * the role to `suspended` when it passes, before etcd can expire the lease.
 */
export function readinessOf(node: ClusterNode): Readiness {
  const { status } = node;
  const seat = status.fence?.seat;
  return {
    ready: READY_ROLES.has(status.role) && status.id !== undefined,
    role: status.role,
    seat: seat === 1 ? "primary" : seat === 2 ? "backup" : null,
    id: status.id ?? null,
    group: status.group ?? null,
    grouping: status.grouping ?? null,
    node: status.name,
  };
}
