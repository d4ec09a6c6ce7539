import { setTimeout as sleep } from "node:timers/promises";
import { type FaultCluster, NEMESIS_PREFIX } from "./faultCluster.js";

const TICK_KEY = `${NEMESIS_PREFIX}tick`;

/**
 * Compacts etcd's history to the current revision about every `everyMs` (jittered), each time
 * after writing a key of its own, so that a watch that was away meanwhile resumes below the
 * compacted revision. It never compacts past what the observer has seen, which must stay whole.
 */
export class Compactor {
  compactions = 0;
  /** Rounds that failed (etcd down or without quorum); they are expected during outages. */
  failures = 0;
  private ticks = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly cluster: FaultCluster,
    private readonly everyMs: number,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** One round now: a write, then a compaction to the observer's revision. */
  async compactNow(): Promise<number> {
    const c = this.cluster;
    this.ticks += 1;
    await c.plant(TICK_KEY, String(this.ticks));
    await c.observer.catchUp(c.client);
    const revision = await c.etcd.compact(c.observer.revision);
    this.compactions += 1;
    return revision;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await sleep(this.everyMs * (0.75 + Math.random() / 2));
      if (this.stopped) return;
      await this.compactNow().catch(() => {
        this.failures += 1;
      });
    }
  }
}
