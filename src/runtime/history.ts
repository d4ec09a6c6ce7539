import { closeSync, openSync, writeSync } from "node:fs";
import type { EtcdSession } from "../etcd/index.js";
import type { NodeRole } from "./roles.js";

export type LeaderAction = "campaign" | "promote" | "advertise" | "write" | "resign" | "handoff";

/** What a node did, with the facts needed to check it afterwards (see test/faults). */
export type HistoryRecord = {
  node: string;
  /** `process.hrtime.bigint()` in nanoseconds, as a decimal string: monotonic within one process. */
  mono: string;
  /** Wall-clock milliseconds, for lining up processes. */
  t: number;
  lease?: string;
  /** Milliseconds left before the local lease deadline when the record was made (negative: passed). */
  deadlineMs?: number;
} & (
  | { kind: "transition"; from: string; to: string; role: NodeRole; id?: number; event: string }
  | {
      kind: "identity";
      id: number;
      group: number;
      /** How the node got the ID; `reclaimed` with `previousId` equal to `id`: it took its own ID back. */
      joinedVia?: "fresh" | "advertised" | "reclaimed";
      previousId?: number;
    }
  | {
      kind: "leader";
      action: LeaderAction;
      grouping: number;
      /** The leader seat (1 primary, 2 backup); named `slot` in the records the fault suite reads. */
      slot: 1 | 2;
      /** The fencing token the action ran under (for campaign/promote: the token it won). */
      token?: number;
      /** `unknown`: the reply was lost and settling it failed; the write may have committed. */
      outcome: "ok" | "refused" | "unknown" | "error";
      /** Revision of the committed transaction. */
      revision?: number;
      detail?: string;
    }
);

/** Distributes Omit over the union, so each record kind keeps its own fields. */
export type HistoryFacts = HistoryRecord extends infer R
  ? R extends HistoryRecord
    ? Omit<R, "node" | "mono" | "t" | "lease" | "deadlineMs">
    : never
  : never;

/** Stamps facts with the node, both clocks and the session's lease and time left, and hands them to the sink. */
export class HistoryRecorder {
  constructor(
    private readonly node: string,
    private readonly sink: ((record: HistoryRecord) => void) | undefined,
    private readonly session: () => EtcdSession | undefined,
  ) {}

  record(facts: HistoryFacts): void {
    if (!this.sink) return;
    const session = this.session();
    this.sink({
      node: this.node,
      mono: process.hrtime.bigint().toString(),
      t: Date.now(),
      lease: session?.leaseId,
      deadlineMs: session ? Math.round(session.remainingMs()) : undefined,
      ...facts,
    } as HistoryRecord);
  }
}

/** Appends history records as JSON lines, one synchronous write each, so they survive `kill -9`. */
export class HistoryFileWriter {
  private fd: number | undefined;

  constructor(readonly path: string) {
    this.fd = openSync(path, "a");
  }

  readonly record = (record: HistoryRecord): void => {
    if (this.fd !== undefined) writeSync(this.fd, `${JSON.stringify(record)}\n`);
  };

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
