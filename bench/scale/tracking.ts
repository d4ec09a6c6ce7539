/** Following the status of many in-process nodes cheaply: formation counters, waits with timeouts. */
import { performance } from "node:perf_hooks";
import { Writable } from "node:stream";
import type { Subscription } from "rxjs";
import winston from "winston";
import type { Logger } from "../../src/logging.js";
import type { ClusterNode, NodeStatus } from "../../src/runtime/clusterNode.js";

export class PhaseTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PhaseTimeout";
  }
}

/** For the waits of `support.ts`: a timed-out phase. */
export const phaseTimeout = (message: string): Error => new PhaseTimeout(message);

/**
 * Incremental formation state of `nodes` (one grouping count per grouping, updated per status
 * change, so that 1,000 nodes cost O(groupings) per change, not O(n)). Formed: every node has an
 * ID and every grouping with at least two members has a primary and a backup (node-local roles).
 */
export class FormationTracker {
  /** `performance.now()` in the status callback that completed each milestone. */
  allIdsAt: number | undefined;
  formedAt: number | undefined;
  maxPrimaries = 0;
  maxBackups = 0;
  /** The most nodes that had an ID at once, and when (`performance.now()`). */
  peakIds = 0;
  peakAt: number | undefined;
  private withId = 0;
  private readonly last: (NodeStatus | undefined)[];
  private readonly size: number[];
  private readonly primaries: number[];
  private readonly backups: number[];
  private readonly subscriptions: Subscription[];
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly nodes: readonly ClusterNode[],
    groupings: number,
  ) {
    this.last = nodes.map(() => undefined);
    this.size = Array.from({ length: groupings }, () => 0);
    this.primaries = Array.from({ length: groupings }, () => 0);
    this.backups = Array.from({ length: groupings }, () => 0);
    this.subscriptions = nodes.map((node, i) => node.status$.subscribe((s) => this.update(i, s)));
  }

  private apply(s: NodeStatus | undefined, sign: 1 | -1): void {
    if (!s || s.id === undefined || s.role === "stopped") return;
    this.withId += sign;
    if (s.grouping === undefined) return;
    this.size[s.grouping] = (this.size[s.grouping] ?? 0) + sign;
    if (s.role === "primary") this.primaries[s.grouping] = (this.primaries[s.grouping] ?? 0) + sign;
    if (s.role === "backup") this.backups[s.grouping] = (this.backups[s.grouping] ?? 0) + sign;
  }

  private update(i: number, s: NodeStatus): void {
    this.apply(this.last[i], -1);
    this.last[i] = s;
    this.apply(s, 1);
    const k = s.grouping;
    if (k !== undefined) {
      this.maxPrimaries = Math.max(this.maxPrimaries, this.primaries[k] ?? 0);
      this.maxBackups = Math.max(this.maxBackups, this.backups[k] ?? 0);
    }
    if (this.withId > this.peakIds) {
      this.peakIds = this.withId;
      this.peakAt = performance.now();
    }
    if (this.allIdsAt === undefined && this.withId === this.nodes.length) this.allIdsAt = performance.now();
    if (this.formedAt === undefined && this.formed()) this.formedAt = performance.now();
    for (const l of this.listeners) l();
  }

  get idCount(): number {
    return this.withId;
  }

  /** Groupings with at least two members, and how many of them have a primary and a backup. */
  seating(): { needed: number; seated: number } {
    let needed = 0;
    let seated = 0;
    this.size.forEach((size, k) => {
      if (size < 2) return;
      needed += 1;
      if ((this.primaries[k] ?? 0) > 0 && (this.backups[k] ?? 0) > 0) seated += 1;
    });
    return { needed, seated };
  }

  formed(): boolean {
    if (this.withId !== this.nodes.length) return false;
    const { needed, seated } = this.seating();
    return needed === seated;
  }

  roleCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const s of this.last) {
      const role = s?.role ?? "connecting";
      counts[role] = (counts[role] ?? 0) + 1;
    }
    return counts;
  }

  /** Resolves once `check` holds (checked now and after every status change); rejects after `timeoutMs`. */
  until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (check()) {
        resolve();
        return;
      }
      const listener = () => {
        if (!check()) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new PhaseTimeout(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
    });
  }

  close(): void {
    for (const s of this.subscriptions) s.unsubscribe();
    this.listeners.clear();
  }
}

/**
 * One logger for every node (a winston logger per node would be counted as node memory): drops
 * info and debug, and counts warnings and errors by message, so the report can say what the
 * runtime complained about at each size.
 */
export class CountingLogger {
  readonly logger: Logger;
  private counts = new Map<string, number>();
  private examples = new Map<string, string>();

  constructor() {
    const sink = new Writable({
      objectMode: true,
      write: (info: { level?: string; message?: unknown; error?: unknown }, _enc, cb) => {
        const key = `${info.level ?? "?"}: ${String(info.message)}`;
        this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
        if (info.error !== undefined && !this.examples.has(key)) this.examples.set(key, String(info.error));
        cb();
      },
    });
    this.logger = winston.createLogger({
      level: "warn",
      transports: [new winston.transports.Stream({ stream: sink })],
    });
  }

  /** Warnings and errors counted since the last `take()`. */
  peekTotal(): number {
    let sum = 0;
    for (const c of this.counts.values()) sum += c;
    return sum;
  }

  /** The counts since the last call, and starts over. */
  take(): Record<string, { count: number; firstError?: string }> {
    const out = Object.fromEntries(
      [...this.counts]
        .sort((a, b) => b[1] - a[1])
        .map(([key, count]) => [key, { count, firstError: this.examples.get(key) }]),
    );
    this.counts = new Map();
    this.examples = new Map();
    return out;
  }
}
