import type { SnapshotFrom, StateValue } from "xstate";
import type { Office } from "../../machines/events.js";
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
 * The role a person cares about, from the node machine's state path and office. Works on live
 * snapshots and on recorded ones (see `inspection.ts`) alike.
 */
export function roleFromState(path: string, office: Office | undefined, status = "active"): NodeRole {
  if (status !== "active" || path === "stopped") return "stopped";
  if (path === "member.leader") return office?.slot === 1 ? "primary" : "backup";
  if (path === "member.candidate") return "candidate";
  if (path.startsWith("member")) return "follower";
  if (path === "bootstrapping" || path === "suspended" || path === "stopping") return path;
  return "connecting";
}

export function statePath(snapshot: NodeSnapshot): string {
  return statePathOf(snapshot.value);
}

/**
 * Live role: as `roleFromState`, but a leader's office is read from the groupLeader child, which
 * owns it (the node's copy follows one event later). A backup whose promotion is in flight counts
 * as a candidate: the promotion may already have committed, and a follower may already hold the
 * backup seat it vacated, so it is neither backup nor yet primary until the result is in.
 */
export function roleOf(snapshot: NodeSnapshot): NodeRole {
  const role = roleFromState(statePath(snapshot), snapshot.context.office, snapshot.status);
  if (role !== "primary" && role !== "backup") return role;
  const leader = snapshot.children.role?.getSnapshot() as
    | { value?: unknown; context?: Partial<Office> }
    | undefined;
  if (leader?.value === "promoting") return "candidate";
  if (leader?.context?.slot === 1) return "primary";
  if (leader?.context?.slot === 2) return "backup";
  return role;
}
