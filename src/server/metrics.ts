import { performance } from "node:perf_hooks";
import type * as PromClient from "prom-client";
import { pairwise, type Subscription } from "rxjs";
import { importOptional } from "../optionalDependency.js";
import type { ClusterNode, NodeRole } from "../runtime/index.js";
import { FaultToNewPrimaryTimer, PrimaryKeyGapTimer } from "./failoverTimers.js";

/**
 * prom-client is an optional peer dependency: loaded when this module is, which only the example
 * server does (`serve` imports this module on demand, the library never does).
 */
const { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } = await importOptional<
  typeof PromClient
>("prom-client", "the example server's /metrics");

const ALL_ROLES: Record<NodeRole, true> = {
  connecting: true,
  bootstrapping: true,
  follower: true,
  candidate: true,
  primary: true,
  backup: true,
  suspended: true,
  stopping: true,
  stopped: true,
};

const FAILOVER_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60];
const KEEPALIVE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export interface ServerMetrics {
  readonly registry: PromClient.Registry;
  /** Counts a failed or refused etcd operation, by reason. */
  etcdError(reason: string): void;
  /** The registry in the Prometheus text format. */
  text(): Promise<string>;
  readonly contentType: string;
  /** Stops following the node. */
  close(): void;
}

export interface MetricsOptions {
  /**
   * Counts the poisoned leader keys of the whole cluster, read at every scrape (without it there
   * is no `rdeebee_poisoned_leader_keys` gauge); e.g.
   * `() => node.readPoisonedLeaderKeys().then((keys) => keys.length)`.
   * A read that fails leaves the gauge at its last value and counts an etcd error.
   */
  countPoisonedLeaderKeys?: () => Promise<number>;
}

/** Prometheus metrics of one node, in a registry of their own (not prom-client's global one). */
export function createMetrics(node: ClusterNode, options: MetricsOptions = {}): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const role = new Gauge({
    name: "rdeebee_node_role",
    help: "1 for this node's current role, 0 for every other role",
    labelNames: ["role"] as const,
    registers: [registry],
  });
  const transitions = new Counter({
    name: "rdeebee_role_transitions_total",
    help: "Role changes of this node",
    labelNames: ["from", "to"] as const,
    registers: [registry],
  });
  const faultToNewPrimary = new Histogram({
    name: "rdeebee_fault_to_new_primary_seconds",
    help:
      "Fault to new primary as this node saw it. From: the first sign here that the grouping's primary failed " +
      "(its primary key absent from this node's watch, or this node leaving the primary role because its " +
      "lease passed the local deadline or its fence was lost). To: the first sign of a different primary " +
      "(a primary key with another fencing token in the watch, or this node becoming primary). " +
      "Time before this node could see the fault, such as a crashed primary's lease TTL, is not in it.",
    buckets: FAILOVER_BUCKETS,
    registers: [registry],
  });
  const primaryKeyGap = new Histogram({
    name: "rdeebee_primary_key_gap_seconds",
    help:
      "Primary key gap as this node's watch saw it. From: the first view of the grouping's leader keys " +
      "without the primary key, after one with it. To: the first view with a primary key again. " +
      "A crashed primary's lease TTL is not in it: etcd deletes the key only when the lease expires.",
    buckets: FAILOVER_BUCKETS,
    registers: [registry],
  });
  const etcdErrors = new Counter({
    name: "rdeebee_etcd_errors_total",
    help: "etcd operations of the server that failed or were refused (fence lost, lease invalid, txn error, read failed)",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const keepalive = new Histogram({
    name: "rdeebee_keepalive_latency_seconds",
    help: "Round-trip time of acknowledged lease keepalives",
    buckets: KEEPALIVE_BUCKETS,
    registers: [registry],
  });

  const { countPoisonedLeaderKeys } = options;
  // Only when it can be read: a gauge that always says 0 would claim there is nothing to repair.
  const poisoned =
    countPoisonedLeaderKeys &&
    new Gauge({
      name: "rdeebee_poisoned_leader_keys",
      help: "Leader keys whose value is not a node record of their grouping; each leaves a seat held by nobody",
      registers: [registry],
    });
  /** Read before every scrape, so that a failed read is counted in the same scrape. */
  const refreshPoisoned = async () => {
    if (!poisoned || !countPoisonedLeaderKeys) return;
    try {
      poisoned.set(await countPoisonedLeaderKeys());
    } catch {
      etcdErrors.inc({ reason: "poisoned_leader_keys_read" });
    }
  };

  const now = () => performance.now();
  const gapTimer = new PrimaryKeyGapTimer(now);
  const faultTimer = new FaultToNewPrimaryTimer(now);
  const subscriptions: Subscription[] = [
    node.role$.subscribe((current) => {
      for (const r of Object.keys(ALL_ROLES)) role.set({ role: r }, r === current ? 1 : 0);
    }),
    node.role$.pipe(pairwise()).subscribe(([from, to]) => transitions.inc({ from, to })),
    node.leaders$.subscribe((leaders) => {
      const gap = gapTimer.onLeaders(leaders);
      if (gap !== undefined) primaryKeyGap.observe(gap);
      const failover = faultTimer.onLeaders(leaders);
      if (failover !== undefined) faultToNewPrimary.observe(failover);
    }),
    node.status$.subscribe((status) => {
      const failover = faultTimer.onStatus(status);
      if (failover !== undefined) faultToNewPrimary.observe(failover);
    }),
    node.keepaliveRoundTrips$.subscribe((ms) => keepalive.observe(ms / 1000)),
  ];

  return {
    registry,
    contentType: registry.contentType,
    etcdError: (reason) => etcdErrors.inc({ reason }),
    text: async () => {
      await refreshPoisoned();
      return registry.metrics();
    },
    close: () => {
      for (const s of subscriptions) s.unsubscribe();
    },
  };
}
