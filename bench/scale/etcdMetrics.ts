/**
 * etcd's Prometheus metrics (`GET <client URL>/metrics`), parsed into samples, and the rates the
 * scale benchmark reports from two scrapes. Checked against etcd 3.4: it exports
 * `grpc_server_started_total`, `grpc_server_msg_received_total`, `grpc_server_handled_total`
 * (by `grpc_method`), `etcd_mvcc_{put,range,txn,delete}_total`, `etcd_debugging_lease_renewed_total`,
 * `etcd_debugging_mvcc_watcher_total`, `etcd_network_client_grpc_{received,sent}_bytes_total`,
 * `process_cpu_seconds_total`, `process_open_fds`, `process_resident_memory_bytes`.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  /** `performance.now()` when the response arrived. */
  at: number;
  samples: Sample[];
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the Prometheus text format (comments and blank lines skipped; timestamps ignored). */
export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? "").matchAll(LABEL)) labels[l[1] as string] = l[2] as string;
    const value = Number(m[4]);
    if (Number.isNaN(value) && m[4] !== "NaN") continue;
    samples.push({ name: m[1] as string, labels, value });
  }
  return samples;
}

export async function scrape(endpoint: string, timeoutMs = 5_000): Promise<Scrape> {
  const res = await fetch(`${endpoint}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${endpoint}/metrics: HTTP ${res.status}`);
  const text = await res.text();
  return { at: performance.now(), samples: parsePrometheus(text) };
}

/** Sum of every sample named `name` whose labels include `match`; NaN when there is none. */
export function total(s: Scrape, name: string, match: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const x of s.samples) {
    if (x.name !== name) continue;
    if (!Object.entries(match).every(([k, v]) => x.labels[k] === v)) continue;
    sum += x.value;
    found = true;
  }
  return found ? sum : Number.NaN;
}

/** The gRPC methods the runtime uses, reported one by one; everything else is summed as `other`. */
export const GRPC_METHODS = [
  "LeaseKeepAlive",
  "Range",
  "Txn",
  "Watch",
  "LeaseGrant",
  "LeaseRevoke",
  "Put",
  "DeleteRange",
] as const;
export type GrpcMethod = (typeof GRPC_METHODS)[number];

/** Counters of the etcd (v3 API) gRPC services; the health service's Watch is not counted. */
const ETCD_SERVICE = /^etcdserverpb\./;

function grpcByMethod(s: Scrape, name: string): Map<string, number> {
  const by = new Map<string, number>();
  for (const x of s.samples) {
    if (x.name !== name || !ETCD_SERVICE.test(x.labels.grpc_service ?? "")) continue;
    const method = x.labels.grpc_method ?? "?";
    by.set(method, (by.get(method) ?? 0) + x.value);
  }
  return by;
}

export interface GrpcRates {
  /** Requests per second: unary calls plus messages received on streams (each keepalive, each watch create/cancel). */
  total: number;
  byMethod: Record<string, number>;
  /** Calls and streams opened per second, by method (etcd3's `keepaliveOnce` opens one stream per keepalive). */
  startedByMethod: Record<string, number>;
}

export interface EtcdRates {
  seconds: number;
  grpc: GrpcRates;
  /** `grpc_server_handled_total` by code (non-OK codes only), per second. */
  failedByCode: Record<string, number>;
  leaseRenewedPerS: number;
  mvcc: { putPerS: number; rangePerS: number; txnPerS: number; deletePerS: number };
  /** Watch events etcd sent (messages on Watch streams), per second. */
  watchMessagesSentPerS: number;
  receivedBytesPerS: number;
  sentBytesPerS: number;
  /** Share of one CPU etcd used over the interval (1 = one core). */
  cpuCores: number;
  /** Gauges at the end of the interval. */
  watchers: number;
  watchStreams: number;
  openFds: number;
  rssMiB: number;
  keys: number;
}

const round = (x: number, digits = 1) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : Number.NaN);

function rateMap(before: Map<string, number>, after: Map<string, number>, seconds: number) {
  const out: Record<string, number> = {};
  let other = 0;
  for (const [method, v] of after) {
    const d = (v - (before.get(method) ?? 0)) / seconds;
    if ((GRPC_METHODS as readonly string[]).includes(method)) out[method] = round(d);
    else other += d;
  }
  for (const m of GRPC_METHODS) out[m] ??= 0;
  out.other = round(other);
  return out;
}

/** Rates between two scrapes of the same etcd. */
export function ratesBetween(a: Scrape, b: Scrape): EtcdRates {
  const seconds = (b.at - a.at) / 1000;
  const per = (name: string, match: Record<string, string> = {}) =>
    round((total(b, name, match) - total(a, name, match)) / seconds);
  const received = rateMap(
    grpcByMethod(a, "grpc_server_msg_received_total"),
    grpcByMethod(b, "grpc_server_msg_received_total"),
    seconds,
  );
  const started = rateMap(
    grpcByMethod(a, "grpc_server_started_total"),
    grpcByMethod(b, "grpc_server_started_total"),
    seconds,
  );
  const failedByCode: Record<string, number> = {};
  for (const x of b.samples) {
    if (x.name !== "grpc_server_handled_total" || x.labels.grpc_code === "OK") continue;
    const code = x.labels.grpc_code ?? "?";
    const before = a.samples.find(
      (y) =>
        y.name === x.name &&
        y.labels.grpc_code === code &&
        y.labels.grpc_method === x.labels.grpc_method &&
        y.labels.grpc_service === x.labels.grpc_service,
    );
    const d = x.value - (before?.value ?? 0);
    if (d > 0) failedByCode[code] = round((failedByCode[code] ?? 0) + d / seconds);
  }
  return {
    seconds: round(seconds, 2),
    grpc: {
      total: round(Object.values(received).reduce((s, x) => s + x, 0)),
      byMethod: received,
      startedByMethod: started,
    },
    failedByCode,
    leaseRenewedPerS: per("etcd_debugging_lease_renewed_total"),
    mvcc: {
      putPerS: per("etcd_mvcc_put_total"),
      rangePerS: per("etcd_mvcc_range_total"),
      txnPerS: per("etcd_mvcc_txn_total"),
      deletePerS: per("etcd_mvcc_delete_total"),
    },
    watchMessagesSentPerS: per("grpc_server_msg_sent_total", { grpc_method: "Watch" }),
    receivedBytesPerS: per("etcd_network_client_grpc_received_bytes_total"),
    sentBytesPerS: per("etcd_network_client_grpc_sent_bytes_total"),
    cpuCores: round(
      (total(b, "process_cpu_seconds_total") - total(a, "process_cpu_seconds_total")) / seconds,
      2,
    ),
    watchers: total(b, "etcd_debugging_mvcc_watcher_total"),
    watchStreams: total(b, "etcd_debugging_mvcc_watch_stream_total"),
    openFds: total(b, "process_open_fds"),
    rssMiB: round(total(b, "process_resident_memory_bytes") / 2 ** 20),
    keys: total(b, "etcd_debugging_mvcc_keys_total"),
  };
}

/** Counter deltas (not rates) between two scrapes: what one phase cost in total. */
export function countsBetween(a: Scrape, b: Scrape): Record<string, number> {
  const d = (name: string, match: Record<string, string> = {}) =>
    total(b, name, match) - total(a, name, match);
  const recv = (method: string) => d("grpc_server_msg_received_total", { grpc_method: method });
  return {
    seconds: round((b.at - a.at) / 1000, 2),
    leaseGrant: recv("LeaseGrant"),
    range: recv("Range"),
    txn: recv("Txn"),
    put: recv("Put"),
    leaseRevoke: recv("LeaseRevoke"),
    watchRequests: d("grpc_server_msg_received_total", {
      grpc_method: "Watch",
      grpc_service: "etcdserverpb.Watch",
    }),
    leaseKeepAlive: recv("LeaseKeepAlive"),
    /** Watch responses etcd sent (each carries one or more events). */
    watchResponsesSent: d("grpc_server_msg_sent_total", {
      grpc_method: "Watch",
      grpc_service: "etcdserverpb.Watch",
    }),
    leasesExpired: d("etcd_debugging_server_lease_expired_total"),
    mvccTxn: d("etcd_mvcc_txn_total"),
    mvccPut: d("etcd_mvcc_put_total"),
    mvccRange: d("etcd_mvcc_range_total"),
    etcdCpuSeconds: round(d("process_cpu_seconds_total"), 2),
    walFsyncs: d("etcd_disk_wal_fsync_duration_seconds_count"),
    walFsyncAvgMs: round(
      (d("etcd_disk_wal_fsync_duration_seconds_sum") * 1000) /
        d("etcd_disk_wal_fsync_duration_seconds_count"),
      2,
    ),
    backendCommitAvgMs: round(
      (d("etcd_disk_backend_commit_duration_seconds_sum") * 1000) /
        d("etcd_disk_backend_commit_duration_seconds_count"),
      2,
    ),
    proposalsCommitted: d("etcd_server_proposals_committed_total"),
  };
}
