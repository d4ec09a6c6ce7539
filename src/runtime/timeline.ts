import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Office } from "../../machines/events.js";
import { ConfigError } from "../config/index.js";
import type { InspectionRecord } from "./inspection.js";
import { type NodeRole, roleOf, statePathOf } from "./roles.js";

/** A role transition of one node, or the end of a recording that has no stop in it. */
export type TimelineEntry =
  | {
      kind: "transition";
      t: number;
      node: string;
      id?: number;
      fromState?: string;
      toState: string;
      fromRole?: NodeRole;
      toRole: NodeRole;
      event?: string;
    }
  | {
      /** The node's recording ends (or a new run of it begins) without it having stopped: killed, or still running. */
      kind: "vanished";
      /** Its last recorded event of any kind: when it was last seen. */
      t: number;
      node: string;
      id?: number;
      lastState: string;
      lastRole: NodeRole;
    };

export const ROOT_ACTOR_ID = "node";

/** An input file that cannot be read as inspection records; exit 2, naming the file (a ConfigError). */
export class TimelineInputError extends ConfigError {
  constructor(file: string, problem: string) {
    super(file, [problem]);
  }
}

const isRecord = (value: unknown): value is InspectionRecord => {
  const r = value as Partial<InspectionRecord> | null;
  return (
    typeof r === "object" &&
    r !== null &&
    typeof r.t === "number" &&
    Number.isFinite(r.t) &&
    typeof r.node === "string" &&
    typeof r.type === "string" &&
    typeof r.actor === "string"
  );
};

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new TimelineInputError(path, "no such file");
    if (code === "EACCES" || code === "EPERM")
      throw new TimelineInputError(path, "not readable (permission denied)");
    throw new TimelineInputError(path, `cannot be read: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The recordings a path names: the file itself, or a directory's `*.jsonl` files (as `local --inspect-dir` writes them). */
function recordingFiles(path: string): string[] {
  let isDirectory = false;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    return [path]; // readText says why
  }
  if (!isDirectory) return [path];
  const files = readdirSync(path)
    .filter((name) => name.endsWith(".jsonl"))
    .sort()
    .map((name) => join(path, name));
  if (files.length === 0) throw new TimelineInputError(path, "a directory with no .jsonl recordings in it");
  return files;
}

/** The records of one recording; anything but inspection records is refused with its line number. */
export function readInspectionFile(path: string): InspectionRecord[] {
  const lines = readText(path).split("\n");
  let lastLine = lines.length - 1;
  while (lastLine > 0 && lines[lastLine]?.trim() === "") lastLine--;
  const records: InspectionRecord[] = [];
  for (const [index, line] of lines.entries()) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // A process killed mid-write leaves at most a torn last line.
      if (index === lastLine && records.length > 0) continue;
      throw new TimelineInputError(`${path}:${index + 1}`, "not JSON: not an --inspect-file recording");
    }
    if (!isRecord(value))
      throw new TimelineInputError(
        `${path}:${index + 1}`,
        "not an inspection record (needs t, node, type and actor): not an --inspect-file recording",
      );
    records.push(value);
  }
  if (records.length === 0) throw new TimelineInputError(path, "empty: no inspection records in it");
  return records;
}

/** Reads inspection JSON-lines files (or directories of them), all records in time order. */
export function readInspectionFiles(paths: readonly string[]): InspectionRecord[] {
  return paths
    .flatMap(recordingFiles)
    .flatMap(readInspectionFile)
    .sort((a, b) => a.t - b.t);
}

interface NodeRun {
  state: string;
  role: NodeRole;
  id?: number;
  lastSeen: number;
}

/**
 * Every change of a node machine's state, with the role it means, across all nodes, in time order,
 * and a `vanished` entry where a node's recording ends without a stop (at its last event of any
 * kind), or where a new run of the same node begins without the previous one having stopped.
 * A recorded node snapshot carries the office its groupLeader child last reported, not the child's
 * state, so a promotion reads backup → primary.
 */
export function roleTimeline(records: readonly InspectionRecord[]): TimelineEntry[] {
  const runs = new Map<string, NodeRun>();
  const entries: TimelineEntry[] = [];
  const vanish = (node: string, run: NodeRun) => {
    if (run.role !== "stopped")
      entries.push({
        kind: "vanished",
        t: run.lastSeen,
        node,
        id: run.id,
        lastState: run.state,
        lastRole: run.role,
      });
    runs.delete(node);
  };
  for (const r of records) {
    const isRoot = r.actor === ROOT_ACTOR_ID;
    const run = runs.get(r.node);
    if (run && isRoot && r.type === "@xstate.actor") vanish(r.node, run);
    const current = runs.get(r.node);
    if (current) current.lastSeen = r.t;
    if (r.type !== "@xstate.snapshot" || !isRoot || r.value === undefined) continue;

    const context = (r.context ?? {}) as { id?: number; office?: Office };
    const state = statePathOf(r.value as Parameters<typeof statePathOf>[0]);
    const leader = context.office && { office: context.office, promoting: false };
    const role = roleOf({ path: state, status: r.status ?? "active", leader });
    const id = typeof context.id === "number" ? context.id : undefined;
    runs.set(r.node, { state, role, id, lastSeen: r.t });
    if (current?.state === state && current.role === role) continue;
    entries.push({
      kind: "transition",
      t: r.t,
      node: r.node,
      id,
      fromState: current?.state,
      toState: state,
      fromRole: current?.role,
      toRole: role,
      event: (r.event as { type?: string } | undefined)?.type,
    });
  }
  for (const [node, run] of runs) vanish(node, run);
  return entries.sort((a, b) => a.t - b.t);
}
