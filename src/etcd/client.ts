import { noop } from "cockatiel";
import { Etcd3, type IOptions } from "etcd3";
import { deadlineIn } from "./outcome.js";

export type { Etcd3 } from "etcd3";

/** etcd3's options without `hosts` (the endpoints are given apart), plus our own. */
export interface ConnectOptions extends Omit<IOptions, "hosts"> {
  /** Deadline of every unary call that sets none itself, in milliseconds. */
  callTimeoutMs?: number;
}

const DEFAULT_CALL_TIMEOUT_MS = 5_000;
const DIAL_TIMEOUT_MS = 2_000;

/**
 * gRPC keepalive, so that a connection that went silent (a partition, a blackhole) is closed and
 * redialled instead of holding watch streams and calls on a dead socket for TCP's ~15 minutes.
 * etcd's `--grpc-keepalive-min-time` (default 5 s) closes connections that ping more often, so the
 * interval stays above it; etcd also refuses pings without an open stream, hence no pings when idle.
 */
const KEEPALIVE_CHANNEL_OPTIONS = {
  "grpc.keepalive_time_ms": 6_000,
  "grpc.keepalive_timeout_ms": 4_000,
  "grpc.keepalive_permit_without_calls": 0,
} as const;

/**
 * No hidden retries, and no circuit breaker. etcd3's default global policy re-sends a call whose
 * reply was lost (3 attempts, no backoff), so a transaction's compare then fails on our own first
 * attempt's write. Its default per-host breaker opens after 3 failures for 5 s; the failures it
 * counts (UNAVAILABLE while etcd elects a leader or restarts) hit every host at once, so every
 * breaker would then refuse calls locally after etcd is back, delaying keepalives and failover.
 * Without it a dead member costs at most one call's deadline; callers retry with backoff and
 * each call picks a host at random.
 */
const NO_HIDDEN_RETRIES = { global: noop, host: () => noop } as const;

/**
 * A client for the given endpoints; every etcd connection of the runtime and the CLI is made here.
 * Options given (credentials, auth, grpcOptions, faultHandling, defaultCallOptions) override ours.
 */
export function connectEtcd(endpoints: string[], options: ConnectOptions = {}): Etcd3 {
  const { callTimeoutMs = DEFAULT_CALL_TIMEOUT_MS, grpcOptions, faultHandling, ...rest } = options;
  return new Etcd3({
    dialTimeout: DIAL_TIMEOUT_MS,
    defaultCallOptions: (call) => (call.isStream ? {} : deadlineIn(callTimeoutMs)),
    ...rest,
    hosts: endpoints,
    grpcOptions: { ...KEEPALIVE_CHANNEL_OPTIONS, ...grpcOptions },
    faultHandling: { ...NO_HIDDEN_RETRIES, ...faultHandling },
  });
}

/** Fails with a message naming the endpoints when etcd does not answer within `timeoutMs`. */
export async function assertEtcdReachable(endpoints: string[], timeoutMs = 5_000): Promise<void> {
  const client = connectEtcd(endpoints, { dialTimeout: timeoutMs });
  try {
    await client.get("rdeebee-cluster/reachability-probe").options(deadlineIn(timeoutMs)).exec();
  } catch (err) {
    throw new EtcdUnreachableError(endpoints, err instanceof Error ? err.message : String(err));
  } finally {
    client.close();
  }
}

export class EtcdUnreachableError extends Error {
  override readonly name = "EtcdUnreachableError";
  constructor(endpoints: string[], reason: string) {
    super(`cannot reach etcd at ${endpoints.join(", ")}: ${reason.replace(/\s*Resolution note:\s*$/, "")}`);
  }
}
