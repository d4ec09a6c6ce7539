import { performance } from "node:perf_hooks";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { pairwise, type Subscription } from "rxjs";
import type { ClusterNode, LeadersSnapshot, NodeRole } from "../runtime/index.js";

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

const FAILOVER_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60];
const KEEPALIVE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export interface ServerMetrics {
  readonly registry: Registry;
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

/** Tracks the time from a vacant primary seat (after one was held) to a primary present again. */
function failoverTimer(observe: (seconds: number) => void) {
  let seenPrimary = false;
  let vacantSince: number | undefined;
  return (leaders: LeadersSnapshot | undefined) => {
    if (!leaders) return;
    if (leaders.primary) {
      if (vacantSince !== undefined) observe((performance.now() - vacantSince) / 1000);
      vacantSince = undefined;
      seenPrimary = true;
    } else if (seenPrimary && vacantSince === undefined) {
      vacantSince = performance.now();
    }
  };
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
  const failover = new Histogram({
    name: "rdeebee_failover_duration_seconds",
    help: "Time from this grouping's primary seat falling vacant to a primary holding it again",
    buckets: FAILOVER_BUCKETS,
    registers: [registry],
  });
  const etcdErrors = new Counter({
    name: "rdeebee_etcd_errors_total",
    help: "etcd operations of the server that failed or were refused (fence lost, lease invalid, txn error)",
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

  const subscriptions: Subscription[] = [
    node.role$.subscribe((current) => {
      for (const r of Object.keys(ALL_ROLES)) role.set({ role: r }, r === current ? 1 : 0);
    }),
    node.role$.pipe(pairwise()).subscribe(([from, to]) => transitions.inc({ from, to })),
    node.leaders$.subscribe(failoverTimer((seconds) => failover.observe(seconds))),
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
