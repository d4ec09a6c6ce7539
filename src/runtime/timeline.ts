import { readFileSync } from "node:fs";
import type { Office } from "../../machines/events.js";
import type { InspectionRecord } from "./inspection.js";
import { type NodeRole, roleOf, statePathOf } from "./roles.js";

export interface TimelineEntry {
  t: number;
  node: string;
  id?: number;
  fromState?: string;
  toState: string;
  fromRole?: NodeRole;
  toRole: NodeRole;
  event?: string;
}

export const ROOT_ACTOR_ID = "node";

/** Reads inspection JSON-lines files; a line that does not parse is reported with file and line number. */
export function readInspectionFiles(paths: readonly string[]): InspectionRecord[] {
  const records: InspectionRecord[] = [];
  for (const path of paths) {
    const lines = readFileSync(path, "utf8").split("\n");
    lines.forEach((line, index) => {
      if (line.trim() === "") return;
      try {
        records.push(JSON.parse(line) as InspectionRecord);
      } catch {
        // A process killed mid-write leaves at most a torn last line.
        if (index < lines.length - 2) throw new Error(`${path}:${index + 1}: not a JSON inspection record`);
      }
    });
  }
  return records.sort((a, b) => a.t - b.t);
}

/**
 * Every change of a node machine's state, with the role it means, across all nodes, in time order.
 * A recorded node snapshot carries the office its groupLeader child last reported, not the child's
 * state, so a promotion in flight shows as the backup it was until the new office is reported.
 */
export function roleTimeline(records: readonly InspectionRecord[]): TimelineEntry[] {
  const last = new Map<string, { state: string; role: NodeRole }>();
  const entries: TimelineEntry[] = [];
  for (const r of records) {
    if (r.type !== "@xstate.snapshot" || r.actor !== ROOT_ACTOR_ID || r.value === undefined) continue;
    const context = (r.context ?? {}) as { id?: number; office?: Office };
    const state = statePathOf(r.value as Parameters<typeof statePathOf>[0]);
    const leader = context.office && { office: context.office, promoting: false };
    const role = roleOf({ path: state, status: r.status ?? "active", leader });
    const prev = last.get(r.node);
    if (prev?.state === state && prev.role === role) continue;
    last.set(r.node, { state, role });
    entries.push({
      t: r.t,
      node: r.node,
      id: context.id,
      fromState: prev?.state,
      toState: state,
      fromRole: prev?.role,
      toRole: role,
      event: (r.event as { type?: string } | undefined)?.type,
    });
  }
  return entries;
}
