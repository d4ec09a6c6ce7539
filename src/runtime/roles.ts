import type { SnapshotFrom, StateValue } from "xstate";
import type { Office } from "../../machines/events.js";
import type { groupLeaderMachine } from "../../machines/groupLeader.js";
import type { nodeMachine } from "../../machines/node.js";

export type NodeRole =
  | "connecting"
  | "bootstrapping"
  | "follower"
  | "candidate"
  | "primary"
  | "backup"
  | "suspended"
  | "stopping"
  | "stopped";

export type NodeSnapshot = SnapshotFrom<typeof nodeMachine>;
type LeaderSnapshot = SnapshotFrom<typeof groupLeaderMachine>;

/** A state value as one dotted path, e.g. `member.leader`. */
export function statePathOf(value: StateValue): string {
  const walk = (v: StateValue): string[] =>
    typeof v === "string"
      ? [v]
      : Object.entries(v).flatMap(([k, child]) =>
          child === undefined ? [k] : walk(child).map((rest) => `${k}.${rest}`),
        );
  return walk(value).join(",");
}

/**
 * What a role is decided on: the node machine's state and status and, while it leads, the state
 * and office of its groupLeader child, which owns the office. Live snapshots (`roleFactsOf`) and
 * recorded ones (`timeline.ts`) are both reduced to this.
 */
export interface RoleFacts {
  path: string;
  status: string;
  leader?: { office: Office; promoting: boolean };
}

/**
 * The role a person cares about. A backup whose promotion is in flight counts as a candidate: the
 * promotion may already have committed, and a follower may already hold the backup seat it
 * vacated, so it is neither backup nor yet primary until the result is in.
 */
export function roleOf({ path, status, leader }: RoleFacts): NodeRole {
  if (status !== "active" || path === "stopped") return "stopped";
  if (path === "member.leader") {
    if (leader?.promoting) return "candidate";
    return leader?.office.seat === 1 ? "primary" : "backup";
  }
  if (path === "member.candidate") return "candidate";
  if (path.startsWith("member")) return "follower";
  if (path === "bootstrapping" || path === "suspended" || path === "stopping") return path;
  return "connecting";
}

const isGroupLeader = (snapshot: { machine?: { id: string } }): snapshot is LeaderSnapshot =>
  snapshot.machine?.id === "groupLeader";

/**
 * The facts of a live node snapshot. The groupLeader child runs in the node's actor system, so its
 * snapshot is current whenever the node's is: every event reaches it through the node, and the
 * node's step ends only after the child has taken it. A deposed child keeps its office until the
 * node has taken its result and left `member.leader`.
 */
export function roleFactsOf(snapshot: NodeSnapshot): RoleFacts {
  const facts: RoleFacts = { path: statePathOf(snapshot.value), status: snapshot.status };
  const child = snapshot.children.role?.getSnapshot();
  if (child && isGroupLeader(child)) {
    facts.leader = { office: { ...child.context }, promoting: child.value === "promoting" };
  }
  return facts;
}

/** The office of a node that leads its grouping, from the groupLeader child (undefined otherwise). */
export function officeOf(snapshot: NodeSnapshot): Office | undefined {
  return roleFactsOf(snapshot).leader?.office;
}
