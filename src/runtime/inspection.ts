import { closeSync, openSync, writeSync } from "node:fs";
import type { InspectionEvent } from "xstate";

/** One XState inspection event as written to a JSON-lines file. */
export interface InspectionRecord {
  /** Wall-clock milliseconds since the epoch, for lining up nodes. */
  t: number;
  node: string;
  type: InspectionEvent["type"];
  /** The actor the event is about (recipient, or snapshot owner); `node` for a node's root actor. */
  actor: string;
  rootId: string;
  source?: string;
  event?: unknown;
  value?: unknown;
  context?: unknown;
  status?: string;
  action?: { type: string; params: unknown };
}

type ActorLike = { id?: string; sessionId?: string; send?: unknown };

const actorName = (ref: unknown): string => {
  const actor = ref as ActorLike | undefined;
  return actor?.id ?? actor?.sessionId ?? "unknown";
};

/** JSON-safe copy: functions dropped, actor references replaced by their IDs, cycles cut. */
export function plain(value: unknown): unknown {
  const seen = new WeakSet<object>();
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === "function") return undefined;
    if (typeof v === "bigint") return v.toString();
    if (v && typeof v === "object") {
      if ("sessionId" in v && "send" in v) return { actor: actorName(v) };
      if (seen.has(v)) return "[circular]";
      seen.add(v);
    }
    return v;
  });
  return text === undefined ? undefined : JSON.parse(text);
}

/** Turns an inspection event into a record; undefined for kinds not worth keeping (microsteps). */
export function toInspectionRecord(
  node: string,
  event: InspectionEvent,
  now = Date.now(),
): InspectionRecord | undefined {
  const base = { t: now, node, type: event.type, actor: actorName(event.actorRef), rootId: event.rootId };
  switch (event.type) {
    case "@xstate.snapshot": {
      const snapshot = event.snapshot as { value?: unknown; context?: unknown; status?: string };
      return {
        ...base,
        event: plain(event.event),
        value: plain(snapshot.value),
        context: plain(snapshot.context),
        status: snapshot.status,
      };
    }
    case "@xstate.event":
      return {
        ...base,
        source: event.sourceRef ? actorName(event.sourceRef) : undefined,
        event: plain(event.event),
      };
    case "@xstate.action":
      return { ...base, action: { type: event.action.type, params: plain(event.action.params) } };
    case "@xstate.actor":
      return base;
    default:
      return undefined;
  }
}

/**
 * Appends every inspection event of one node to a JSON-lines file, one synchronous write per
 * line so that what was written survives the process being killed.
 */
export class InspectionFileWriter {
  private fd: number | undefined;

  constructor(
    readonly path: string,
    private readonly node: string,
  ) {
    this.fd = openSync(path, "a");
  }

  readonly inspect = (event: InspectionEvent): void => {
    if (this.fd === undefined) return;
    const record = toInspectionRecord(this.node, event);
    if (record) writeSync(this.fd, `${JSON.stringify(record)}\n`);
  };

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
