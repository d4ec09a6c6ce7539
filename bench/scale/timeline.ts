/**
 * A once-a-second record of a phase (formation): how far the nodes got, and what this process,
 * the host and etcd were doing meanwhile, so that a size that does not form shows why.
 */
import { performance } from "node:perf_hooks";
import type { Subscription } from "rxjs";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";
import { percentile } from "../stats.js";
import { type Scrape, scrape, total } from "./etcdMetrics.js";
import { cpuCores, hostBusyCores, hostCpuTimes, LoopDelayMonitor } from "./processStats.js";
import type { FormationTracker } from "./tracking.js";

export interface TimelinePoint {
  /** Seconds since the phase started. */
  t: number;
  ids: number;
  seated: number;
  needed: number;
  roles: Record<string, number>;
  /** Longest event-loop delay in the second. */
  loopMaxMs: number;
  /** CPU this process used in the second, in cores. */
  nodeCpuCores: number;
  /** CPUs busy on the whole host (every process) in the second. */
  hostBusyCores: number;
  /** Keepalives acknowledged in the second, and their round-trip p99 and max. */
  keepalives: number;
  keepaliveP99Ms: number | null;
  keepaliveMaxMs: number | null;
  /** Warnings the nodes logged so far (lease deadline passed, etcd operation failed, ...). */
  warnings: number;
  /** From the last etcd scrape (taken in the background; null while none has answered yet). */
  etcd: {
    cpuCores: number;
    leaseGrantsPerS: number;
    txnPerS: number;
    walFsyncAvgMs: number;
    proposalsPending: number;
    leases: number;
  } | null;
}

const ms1 = (x: number) => (Number.isFinite(x) ? Math.round(x * 10) / 10 : null);

export class Timeline {
  readonly points: TimelinePoint[] = [];
  private readonly t0 = performance.now();
  private readonly eld = new LoopDelayMonitor();
  private cpu = process.cpuUsage();
  private host = hostCpuTimes();
  private at = this.t0;
  private rtts: number[] = [];
  private readonly subscriptions: Subscription[];
  private readonly timer: NodeJS.Timeout;
  private lastScrape: Scrape | undefined;
  private etcd: TimelinePoint["etcd"] = null;
  private scraping = false;

  constructor(
    nodes: readonly ClusterNode[],
    private readonly tracker: FormationTracker,
    private readonly endpoint: string,
    private readonly cpus: number,
    private readonly warnings: () => number,
    everyMs: number,
    private readonly onPoint: (p: TimelinePoint) => void,
  ) {
    this.subscriptions = nodes.map((node) => node.keepaliveRoundTrips$.subscribe((ms) => this.rtts.push(ms)));
    this.timer = setInterval(() => this.tick(), everyMs);
  }

  private tick(): void {
    const now = performance.now();
    const { needed, seated } = this.tracker.seating();
    const rtts = this.rtts.sort((a, b) => a - b);
    this.rtts = [];
    const point: TimelinePoint = {
      t: Math.round((now - this.t0) / 100) / 10,
      ids: this.tracker.idCount,
      seated,
      needed,
      roles: this.tracker.roleCounts(),
      loopMaxMs: this.eld.read().maxMs,
      nodeCpuCores: cpuCores(this.cpu, this.at, now),
      hostBusyCores: hostBusyCores(this.host, hostCpuTimes(), this.cpus),
      keepalives: rtts.length,
      keepaliveP99Ms: ms1(percentile(rtts, 99)),
      keepaliveMaxMs: ms1(rtts[rtts.length - 1] ?? Number.NaN),
      warnings: this.warnings(),
      etcd: this.etcd,
    };
    this.cpu = process.cpuUsage();
    this.host = hostCpuTimes();
    this.at = now;
    this.points.push(point);
    this.onPoint(point);
    this.scrapeInBackground();
  }

  /** One scrape at a time, never awaited by the tick: a busy etcd must not stall the timeline. */
  private scrapeInBackground(): void {
    if (this.scraping) return;
    this.scraping = true;
    scrape(this.endpoint, 3_000)
      .then((s) => {
        const a = this.lastScrape;
        this.lastScrape = s;
        if (!a) return;
        const seconds = (s.at - a.at) / 1000;
        const d = (name: string, match: Record<string, string> = {}) =>
          total(s, name, match) - total(a, name, match);
        const r1 = (x: number) => Math.round(x * 10) / 10;
        this.etcd = {
          cpuCores: Math.round((d("process_cpu_seconds_total") / seconds) * 100) / 100,
          leaseGrantsPerS: r1(d("grpc_server_msg_received_total", { grpc_method: "LeaseGrant" }) / seconds),
          txnPerS: r1(d("grpc_server_msg_received_total", { grpc_method: "Txn" }) / seconds),
          walFsyncAvgMs:
            Math.round(
              ((d("etcd_disk_wal_fsync_duration_seconds_sum") * 1000) /
                d("etcd_disk_wal_fsync_duration_seconds_count")) *
                100,
            ) / 100,
          proposalsPending: total(s, "etcd_server_proposals_pending"),
          leases:
            total(s, "etcd_debugging_lease_granted_total") - total(s, "etcd_debugging_lease_revoked_total"),
        };
      })
      .catch(() => undefined)
      .finally(() => {
        this.scraping = false;
      });
  }

  /** One line for the progress log. */
  static describe(n: number, p: TimelinePoint, cpus: number): string {
    const roles = Object.entries(p.roles)
      .map(([r, c]) => `${r} ${c}`)
      .join(", ");
    const etcd = p.etcd
      ? `; etcd CPU ${p.etcd.cpuCores}, ${p.etcd.leaseGrantsPerS} grants/s, ${p.etcd.txnPerS} txn/s, fsync ${p.etcd.walFsyncAvgMs} ms`
      : "";
    return (
      `${n} nodes: ${p.ids}/${n} have IDs, ${p.seated}/${p.needed} groupings seated after ${p.t} s (${roles}); ` +
      `loop max ${p.loopMaxMs} ms, CPU ${p.nodeCpuCores} (host ${p.hostBusyCores}/${cpus}), ` +
      `keepalive RTT p99 ${p.keepaliveP99Ms ?? "—"} ms, warnings ${p.warnings}${etcd}`
    );
  }

  stop(): void {
    clearInterval(this.timer);
    this.eld.stop();
    for (const s of this.subscriptions) s.unsubscribe();
  }
}
