import { noop } from "cockatiel";
import { Etcd3, EtcdAuthenticationFailedError, EtcdPermissionDeniedError, type IOptions } from "etcd3";
import type { EtcdConnection, EtcdTls } from "../config/index.js";
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

/** Endpoints alone still describe a connection: no TLS, no user. */
export type EtcdConnectionLike = EtcdConnection | readonly string[];

function connectionOf(connection: EtcdConnectionLike): EtcdConnection {
  return "endpoints" in connection ? connection : { endpoints: [...connection] };
}

/** etcd3's type wants a CA; grpc's createSsl takes none as "the system's trusted roots". */
function credentialsOf(tls: EtcdTls): NonNullable<IOptions["credentials"]> {
  return { rootCertificate: tls.ca as Buffer, privateKey: tls.key, certChain: tls.cert };
}

/**
 * A client for the given connection (endpoints, and TLS and a user when given); every etcd
 * connection of the runtime and the CLI is made here. With a user, etcd3 authenticates before the
 * first call, sends the token with every call and stream, and authenticates again when etcd says
 * the token is no longer valid. Options given (grpcOptions, faultHandling, defaultCallOptions,
 * and credentials or auth, which replace the connection's) override ours.
 */
export function connectEtcd(connection: EtcdConnectionLike, options: ConnectOptions = {}): Etcd3 {
  const { endpoints, tls, auth } = connectionOf(connection);
  const { callTimeoutMs = DEFAULT_CALL_TIMEOUT_MS, grpcOptions, faultHandling, ...rest } = options;
  return new Etcd3({
    dialTimeout: DIAL_TIMEOUT_MS,
    defaultCallOptions: (call) => (call.isStream ? {} : deadlineIn(callTimeoutMs)),
    ...(tls === undefined ? {} : { credentials: credentialsOf(tls) }),
    ...(auth === undefined ? {} : { auth: { username: auth.username, password: auth.password } }),
    ...rest,
    hosts: [...endpoints],
    grpcOptions: { ...KEEPALIVE_CHANNEL_OPTIONS, ...grpcOptions },
    faultHandling: { ...NO_HIDDEN_RETRIES, ...faultHandling },
  });
}

const DEFAULT_PROBE_KEY = "rdeebee-cluster/reachability-probe";

/**
 * Fails with an EtcdUnreachableError whose message says what was wrong (no answer, TLS handshake,
 * user or password, permission) when etcd does not answer a read of `probeKey` within `timeoutMs`.
 * A user limited to a namespace may read only there: give a key of it (e.g. the layout's `idKey`).
 */
export async function assertEtcdReachable(
  connection: EtcdConnectionLike,
  timeoutMs = 5_000,
  probeKey = DEFAULT_PROBE_KEY,
): Promise<void> {
  const { endpoints, auth } = connectionOf(connection);
  const client = connectEtcd(connection, { dialTimeout: timeoutMs, callTimeoutMs: timeoutMs });
  try {
    await client.get(probeKey).options(deadlineIn(timeoutMs)).exec();
  } catch (err) {
    throw new EtcdUnreachableError(endpoints, unreachableReason(err, auth?.username, probeKey));
  } finally {
    client.close();
  }
}

/** The TLS alert etcd sends when it refuses the client's certificate, or gets none. */
const CLIENT_CERT_REFUSED = /alert (bad certificate|certificate required|unknown ca)/i;
const SERVER_CERT_UNVERIFIED =
  /unable to verify|self.signed|certificate verify failed|unable to get .*issuer/i;
const OTHER_TLS_FAILURE = /ssl|tls|handshake|certificate/i;

/** Why a probe failed, in words that name what to check. */
function unreachableReason(err: unknown, username: string | undefined, probeKey: string): string {
  const message = (err instanceof Error ? err.message : String(err))
    .replace(/\s*Resolution note:\s*$/, "")
    .replace(/\s+/g, " ")
    .trim();
  if (err instanceof EtcdAuthenticationFailedError)
    return `etcd refused user "${username}": wrong user name or password (${message})`;
  if (err instanceof EtcdPermissionDeniedError)
    return `user "${username}" may not read "${probeKey}": its role needs read/write permission on the cluster's namespace (${message})`;
  if (CLIENT_CERT_REFUSED.test(message))
    return `TLS handshake failed: etcd refused the client certificate (none given, or not signed by a CA etcd trusts) (${message})`;
  if (SERVER_CERT_UNVERIFIED.test(message))
    return `TLS handshake failed: etcd's server certificate is not signed by the CA given (${message})`;
  if (OTHER_TLS_FAILURE.test(message)) return `TLS handshake failed (${message})`;
  return message;
}

export class EtcdUnreachableError extends Error {
  override readonly name = "EtcdUnreachableError";
  constructor(endpoints: string[], reason: string) {
    super(`cannot reach etcd at ${endpoints.join(", ")}: ${reason.replace(/\s*Resolution note:\s*$/, "")}`);
  }
}
