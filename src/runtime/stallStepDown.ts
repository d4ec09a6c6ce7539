import { filter, firstValueFrom } from "rxjs";
import type { ClusterLayout } from "../config/index.js";
import { type BackoffPolicy, backoffDelay, type FencingToken } from "../etcd/index.js";
import type { Logger } from "../logging.js";
import type { SessionScope, Timers } from "./sessionScope.js";

/** Retries of a vacate whose outcome is unknown: soon at first, then at most every second. */
const VACATE_RETRY: BackoffPolicy = { initialMs: 100, maxMs: 1_000 };

/**
 * The stall step-down: a node whose local deadline passed while it held a leader seat vacates the
 * seat itself, by a fenced delete of its own key (compared on its token and lease, so it can only
 * delete the key of its own term). When only etcd's replies are lost (a one-way stall) requests
 * still reach etcd, so the delete does, and the backup is promoted at once instead of after the
 * lease's expiry (or, while any connection of the process still carries keepalives, never). It is
 * sent on the session's step-down connection (`EtcdSession.deleteOwnKey`), since etcd3 drops the
 * main one at its first timed-out call and no new connection opens through a one-way stall. In a
 * full partition nothing arrives and the lease's expiry frees the seat as before.
 *
 * The delete is retried with jittered backoff, once a keepalive is acknowledged again (before that
 * a retry only dials an etcd that is down or cut off), until etcd answers or the session is over. Until then
 * the node is not told its session is valid again (`beforeResume`), so it never resumes the seat
 * it is deleting; then campaigns are held off (`holdCampaigns`), so the node that took the seat is
 * not raced by the one that left it.
 */
export class StallStepDown {
  private vacating: { scope: SessionScope; settled: Promise<void> } | undefined;

  constructor(
    private readonly layout: ClusterLayout,
    private readonly callTimeoutMs: number,
    private readonly timers: Timers,
    private readonly log: Logger,
    private readonly holdCampaigns: () => void,
  ) {}

  /** Starts vacating `fence`'s seat under `scope`'s session; a no-op without a session. */
  vacate(scope: SessionScope, fence: FencingToken): void {
    const leaseId = scope.session?.leaseId;
    if (!leaseId) return;
    this.log.warn("local deadline passed while holding a seat: vacating it", {
      grouping: fence.grouping,
      seat: fence.seat,
      token: fence.token,
      lease: leaseId,
    });
    this.vacating = { scope, settled: this.resignUntilSettled(scope, fence, leaseId) };
  }

  /**
   * Called when `scope`'s session is valid again. Undefined when it vacated nothing since it was
   * last valid: the node may resume at once. Otherwise a promise that resolves once etcd has settled
   * the vacate (or the session is over) and the campaign hold has begun.
   */
  beforeResume(scope: SessionScope): Promise<void> | undefined {
    const entry = this.vacating;
    if (entry?.scope !== scope) return undefined;
    return entry.settled.then(() => {
      if (this.vacating !== entry) return;
      this.vacating = undefined;
      this.holdCampaigns();
    });
  }

  /**
   * The delete is idempotent: once our key is gone (deleted by an earlier attempt whose reply was
   * lost, or by its lease), the compare fails and etcd says so, which settles it.
   */
  private async resignUntilSettled(scope: SessionScope, fence: FencingToken, leaseId: string): Promise<void> {
    const key = this.layout.keys.leaderKey(fence.grouping, fence.seat);
    for (let attempt = 0; ; attempt++) {
      const session = scope.session;
      if (!session || !this.sameSession(scope, leaseId)) return;
      try {
        const deleted = await session.deleteOwnKey(key, fence.token, this.callTimeoutMs);
        this.log.info("stall step-down settled", { token: fence.token, seat: fence.seat, deleted });
        return;
      } catch (err) {
        if (!this.sameSession(scope, leaseId)) return;
        const retryInMs = backoffDelay(attempt, VACATE_RETRY);
        this.log.debug("stall step-down not settled, retrying", { error: String(err), retryInMs });
        await new Promise<void>((resolve) => this.timers.after(retryInMs, resolve));
        // The first attempt is the one a one-way stall lets through. Its outcome is learnt once a
        // keepalive is acknowledged again: retrying before that, with etcd down or cut off, would
        // only dial it again and again on every endpoint.
        await firstValueFrom(session.health$.pipe(filter((health) => health !== "expiredLocally")), {
          defaultValue: "lost",
        });
      }
    }
  }

  /** Once the session is over, its lease takes the key with it (or already has). */
  private sameSession(scope: SessionScope, leaseId: string): boolean {
    return scope.isCurrent && scope.session?.leaseId === leaseId && scope.session.health !== "lost";
  }
}
