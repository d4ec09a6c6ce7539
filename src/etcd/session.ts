import { performance } from "node:perf_hooks";
import { Etcd3, EtcdLeaseInvalidError, type IOptions, type Lease } from "etcd3";
import { BehaviorSubject, distinctUntilChanged, type Observable, Subject } from "rxjs";
import type { Logger } from "../logging.js";
import { type Backoff, backoffDelay, deadlineIn } from "./outcome.js";

export interface SessionOptions {
  ttlSeconds: number;
  keepaliveIntervalMs: number;
  /** Safety margin taken off the local deadline; defaults to max(200 ms, 10% of the TTL). */
  marginMs?: number;
  /** Deadline of the lease grant and of the revoke; defaults to TTL − margin (a later grant would be born expired). */
  callTimeoutMs?: number;
}

/**
 * The step-down connection's own channel options: a distinct option set gets its own gRPC
 * subchannel (grpc-js pools subchannels by target and options), so it is a TCP connection nothing
 * else uses, and it does not go idle between its warm-ups.
 */
const STEP_DOWN_CHANNEL_OPTIONS = {
  "grpc.primary_user_agent": "rdeebee-cluster-step-down",
  "grpc.client_idle_timeout_ms": 2_000_000_000,
} as const;

/** The shortest wait before a keepalive retry. */
const RETRY_MIN_MS = 50;
/** The first retry's upper bound, doubled with every further failure up to the keepalive interval. */
const RETRY_BASE_MS = 100;

/**
 * `valid`: a keepalive was acknowledged recently enough that etcd cannot have expired the lease.
 * `expiredLocally`: the local deadline passed without an acknowledgement; etcd may expire the lease at any time.
 * `lost`: etcd said the lease is gone (or it was revoked); the session is over.
 */
export type SessionHealth = "valid" | "expiredLocally" | "lost";

/** Monotonic milliseconds; never jumps with the wall clock. */
export const monotonicNow = (): number => performance.now();

/**
 * One etcd lease kept alive every interval, with a local validity deadline:
 * send time of the last acknowledged keepalive + TTL - margin, on the monotonic clock.
 * etcd counts the TTL from when it receives the keepalive, which is after we sent it, so the
 * deadline passes before etcd can expire the lease. etcd3's own `lost` event comes only after
 * about two TTLs, which is why the deadline is kept here.
 */
export class EtcdSession {
  readonly leaseId: string;
  private validUntil: number;
  private readonly healthSubject: BehaviorSubject<SessionHealth>;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Keepalives failed in a row; sets the retry backoff. */
  private failures = 0;
  private attempts = 0;
  readonly marginMs: number;
  /**
   * Round-trip time of every acknowledged keepalive, in milliseconds; emitted once the deadline
   * has moved, so `remainingMs()` read then already counts it.
   */
  readonly keepaliveRoundTrips$ = new Subject<number>();
  /** When the step-down connection was last used; it is warmed up at most once a TTL. */
  private stepDownWarmedAt = Number.NEGATIVE_INFINITY;

  private constructor(
    private readonly lease: Lease,
    leaseId: string,
    grantSentAt: number,
    private readonly options: SessionOptions,
    private readonly log: Logger,
    private readonly stepDownClients: readonly Etcd3[],
    private readonly client: Etcd3,
  ) {
    this.leaseId = leaseId;
    this.marginMs = marginOf(options);
    this.validUntil = grantSentAt + options.ttlSeconds * 1000 - this.marginMs;
    this.healthSubject = new BehaviorSubject<SessionHealth>("valid");
    this.armDeadline();
    this.scheduleKeepalive();
  }

  static async open(client: Etcd3, options: SessionOptions, log: Logger): Promise<EtcdSession> {
    const sentAt = monotonicNow();
    const lease = client.lease(options.ttlSeconds, {
      autoKeepAlive: false,
      ...deadlineIn(callTimeoutOf(options)),
    });
    lease.on("lost", () => undefined); // loss is tracked by our own deadline and keepalive results
    const leaseId = await lease.grant();
    const session = new EtcdSession(
      lease,
      String(leaseId),
      sentAt,
      options,
      log,
      stepDownClientsOf(client),
      client,
    );
    session.warmStepDown();
    return session;
  }

  /**
   * Deletes `key` if it was created at revision `createRevision` and is bound to this session's
   * lease (the caller's own leader key, so it can never delete another term's), over the session's
   * step-down connections (one per endpoint): TCP connections of their own, open before any stall
   * and idle since their last warm-up, so no timed-out call has made etcd3 drop them. When only etcd's replies are lost, etcd3
   * replaces the main connection after its first timed-out call, and a new connection cannot be
   * opened through a one-way stall; these still carry the request. True when etcd deleted the
   * key; false when the compare failed (the key is gone or not this session's). Throws when the
   * outcome is unknown, which the caller settles.
   */
  async deleteOwnKey(key: string, createRevision: number, timeoutMs: number): Promise<boolean> {
    // Without step-down connections (a client whose endpoints could not be read) the main one still
    // settles it once the link is back, so the node is never kept suspended for want of a connection.
    const clients = this.stepDownClients.length > 0 ? this.stepDownClients : [this.client];
    // On every endpoint's connection at once: the first to arrive deletes, the others find the key gone.
    const answers = await Promise.allSettled(
      clients.map((client) =>
        client
          .if(key, "Create", "==", createRevision)
          .and(key, "Lease", "==", this.leaseId)
          .then(client.delete().key(key))
          .options(deadlineIn(timeoutMs))
          .commit(),
      ),
    );
    const known = answers.flatMap((a) => (a.status === "fulfilled" ? [a.value.succeeded] : []));
    if (known.length === 0) throw (answers[0] as PromiseRejectedResult).reason;
    return known.includes(true);
  }

  /**
   * One request on each step-down connection, at most once a TTL and only right after an
   * acknowledged keepalive, so that it is connected when it is needed (a connection without calls
   * is not redialled after a restart of etcd). Its deadline is a TTL: should a stall begin while it
   * is in flight, it does not time out (which makes etcd3 drop the connection) before the local deadline.
   */
  private warmStepDown(): void {
    const ttlMs = this.options.ttlSeconds * 1000;
    if (this.closed || monotonicNow() - this.stepDownWarmedAt < ttlMs) return;
    this.stepDownWarmedAt = monotonicNow();
    for (const client of this.stepDownClients) {
      client.leaseClient.leaseTimeToLive({ ID: this.leaseId }, deadlineIn(ttlMs)).catch((err: unknown) => {
        this.log.debug("step-down connection warm-up failed", { lease: this.leaseId, error: String(err) });
      });
    }
  }

  /** Keepalives sent so far, acknowledged or not. */
  get keepaliveAttempts(): number {
    return this.attempts;
  }

  get health$(): Observable<SessionHealth> {
    return this.healthSubject.pipe(distinctUntilChanged());
  }

  get health(): SessionHealth {
    return this.healthSubject.value;
  }

  /** True while the local deadline has not passed; check it right before acting as leader. */
  isValid(): boolean {
    return this.health === "valid" && monotonicNow() < this.validUntil;
  }

  /** Milliseconds left before the local deadline (negative once passed). */
  remainingMs(): number {
    return this.validUntil - monotonicNow();
  }

  private setHealth(health: SessionHealth): void {
    if (this.health === "lost") return;
    this.healthSubject.next(health);
  }

  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    if (this.closed) return;
    this.deadlineTimer = setTimeout(() => this.checkDeadline(), Math.max(0, this.remainingMs()));
  }

  private checkDeadline(): void {
    if (this.closed) return;
    if (this.remainingMs() <= 0) {
      if (this.health === "valid") {
        this.log.warn("lease deadline passed without a keepalive acknowledgement", { lease: this.leaseId });
      }
      this.setHealth("expiredLocally");
    } else this.armDeadline();
  }

  /**
   * The next keepalive goes out after the interval, or sooner when less validity is left than the
   * interval would leave room for (a slow grant, a slow acknowledgement): a third of what is left,
   * but never sooner than RETRY_MIN_MS.
   */
  private nextKeepaliveDelay(): number {
    return Math.max(RETRY_MIN_MS, Math.min(this.options.keepaliveIntervalMs, this.remainingMs() / 3));
  }

  /**
   * After a failure: exponential backoff with full jitter, from RETRY_MIN_MS up to the interval,
   * before and after the local deadline alike, so an unreachable etcd is not polled in a loop.
   */
  private retryDelay(): number {
    const backoff: Backoff = {
      minMs: RETRY_MIN_MS,
      baseMs: RETRY_BASE_MS,
      maxMs: Math.max(RETRY_MIN_MS, this.options.keepaliveIntervalMs),
    };
    return backoffDelay(this.failures - 1, backoff);
  }

  private scheduleKeepalive(delayMs = this.nextKeepaliveDelay()): void {
    if (this.closed) return;
    this.keepaliveTimer = setTimeout(() => void this.keepalive(), delayMs);
  }

  private async keepalive(): Promise<void> {
    const sentAt = monotonicNow();
    this.attempts += 1;
    try {
      // A slow acknowledgement still counts (a loaded process or etcd), but not so late that no
      // retry on a fresh stream fits before the local deadline.
      const res = await this.lease.keepaliveOnce(
        deadlineIn(Math.max(this.options.keepaliveIntervalMs, this.remainingMs() / 2)),
      );
      if (this.closed) return;
      const ttl = Number(res.TTL);
      if (ttl <= 0) throw new EtcdLeaseInvalidError(this.leaseId);
      this.failures = 0;
      this.validUntil = Math.max(this.validUntil, sentAt + ttl * 1000 - this.marginMs);
      this.armDeadline();
      this.keepaliveRoundTrips$.next(monotonicNow() - sentAt);
      if (monotonicNow() < this.validUntil) this.setHealth("valid");
      this.scheduleKeepalive();
      this.warmStepDown();
    } catch (err) {
      if (this.closed) return;
      if (err instanceof EtcdLeaseInvalidError) {
        this.log.warn("lease is gone in etcd", { lease: this.leaseId });
        this.markLost();
        return;
      }
      this.failures += 1;
      const delayMs = this.retryDelay();
      this.log.debug("keepalive failed, retrying", {
        lease: this.leaseId,
        failures: this.failures,
        retryInMs: Math.round(delayMs),
        error: String(err),
      });
      this.scheduleKeepalive(delayMs);
    }
  }

  private markLost(): void {
    this.stopTimers();
    for (const client of this.stepDownClients) client.close();
    this.setHealth("lost");
    this.healthSubject.complete();
    this.keepaliveRoundTrips$.complete();
  }

  private stopTimers(): void {
    this.closed = true;
    clearTimeout(this.keepaliveTimer);
    clearTimeout(this.deadlineTimer);
  }

  /** Revokes the lease: every key bound to it goes at once. */
  async revoke(): Promise<void> {
    this.stopTimers();
    try {
      await this.lease.revoke(deadlineIn(callTimeoutOf(this.options)));
    } finally {
      this.markLost();
    }
  }

  /** Stops keepalives without revoking: the lease expires after its TTL, as on a crash. */
  abandon(): void {
    this.lease.release();
    this.markLost();
  }
}

/**
 * One client per endpoint of `client`, with its credentials and channel options of their own (so
 * connections of their own): etcd3 picks a random endpoint per call, and the step-down must go
 * on a connection that is already open. None when `client` does not show its options.
 */
function stepDownClientsOf(client: Etcd3): Etcd3[] {
  // etcd3 keeps the options it was built with on the instance (pinned by test/integration/stallStepDown.test.ts).
  const options = (client as unknown as { options?: IOptions }).options;
  const hosts = typeof options?.hosts === "string" ? [options.hosts] : (options?.hosts ?? []);
  return hosts.map(
    (host) =>
      new Etcd3({
        ...options,
        hosts: [host],
        grpcOptions: { ...options?.grpcOptions, ...STEP_DOWN_CHANNEL_OPTIONS },
      }),
  );
}

function marginOf(options: SessionOptions): number {
  return options.marginMs ?? Math.max(200, options.ttlSeconds * 100);
}

function callTimeoutOf(options: SessionOptions): number {
  return options.callTimeoutMs ?? Math.max(RETRY_MIN_MS, options.ttlSeconds * 1000 - marginOf(options));
}
