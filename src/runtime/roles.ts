import type { SnapshotFrom } from "xstate";
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

/** The role a person cares about, read off the node machine's state. */
export function roleOf(snapshot: NodeSnapshot): NodeRole {
  if (snapshot.status !== "active" || snapshot.matches("stopped")) return "stopped";
  if (snapshot.matches({ member: "leader" }))
    return snapshot.context.office?.slot === 1 ? "primary" : "backup";
  if (snapshot.matches({ member: "candidate" })) return "candidate";
  if (snapshot.matches("member")) return "follower";
  if (snapshot.matches("bootstrapping")) return "bootstrapping";
  if (snapshot.matches("suspended")) return "suspended";
  if (snapshot.matches("stopping")) return "stopping";
  return "connecting";
}

/** A state value as one dotted path, e.g. `member.leader`. */
export function statePath(snapshot: NodeSnapshot): string {
  const walk = (value: unknown): string[] =>
    typeof value === "string"
      ? [value]
      : Object.entries(value as Record<string, unknown>).flatMap(([k, v]) =>
          walk(v).map((rest) => `${k}.${rest}`),
        );
  return walk(snapshot.value).join(",");
}
