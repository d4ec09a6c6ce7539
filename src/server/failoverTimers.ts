import type { LeadersSnapshot, NodeStatus } from "../runtime/index.js";

/** Milliseconds on a monotonic clock (`performance.now()` in the server). */
export type Clock = () => number;

/**
 * The primary key gap as one node's watch shows it: from the first view of its grouping's leader
 * keys without the primary key (after a view with one) to the first view with a primary key again.
 * `onLeaders` returns the gap in seconds when a view closes one.
 */
export class PrimaryKeyGapTimer {
  private seenPrimary = false;
  private absentSince: number | undefined;

  constructor(private readonly now: Clock) {}

  onLeaders(leaders: LeadersSnapshot | undefined): number | undefined {
    if (!leaders) return undefined;
    if (leaders.primary) {
      const since = this.absentSince;
      this.absentSince = undefined;
      this.seenPrimary = true;
      return since === undefined ? undefined : (this.now() - since) / 1000;
    }
    if (this.seenPrimary && this.absentSince === undefined) this.absentSince = this.now();
    return undefined;
  }
}

/**
 * Fault to new primary as one node sees it. It starts at the first sign here that the primary
 * failed: the primary key absent from this node's view, or this node leaving the primary role (its
 * lease past the local deadline, its fence lost), whichever comes first. It ends at the first sign
 * of a different primary: a primary key with another fencing token in the view, or this node
 * becoming primary. `onLeaders` and `onStatus` return the span in seconds when they end one.
 */
export class FaultToNewPrimaryTimer {
  /** Token of the primary last seen, in the view or as this node's own fence. */
  private knownToken: number | undefined;
  /** This node's own token while it is primary. */
  private ownToken: number | undefined;
  private fault: { since: number; token: number } | undefined;

  constructor(private readonly now: Clock) {}

  onLeaders(leaders: LeadersSnapshot | undefined): number | undefined {
    if (!leaders) return undefined;
    if (leaders.primary) return this.primarySeen(leaders.primary.token);
    if (this.knownToken !== undefined) this.faultSeen(this.knownToken);
    return undefined;
  }

  onStatus(status: NodeStatus): number | undefined {
    if (status.role === "primary" && status.fence?.seat === 1) {
      const token = status.fence.token;
      this.ownToken = token;
      // Back in office under the same token (its lease outlived a suspension): no failover to time.
      if (this.fault?.token === token) this.fault = undefined;
      return this.primarySeen(token);
    }
    const left = this.ownToken;
    this.ownToken = undefined;
    // A graceful stop is not a fault, and a stopped node sees no successor.
    if (left !== undefined && status.role !== "stopping" && status.role !== "stopped") this.faultSeen(left);
    return undefined;
  }

  private faultSeen(token: number): void {
    this.fault ??= { since: this.now(), token };
  }

  private primarySeen(token: number): number | undefined {
    this.knownToken = token;
    const fault = this.fault;
    if (!fault || fault.token === token) return undefined;
    this.fault = undefined;
    return (this.now() - fault.since) / 1000;
  }
}
