import {
  type ComparatorBuilder,
  type Etcd3,
  EtcdLeaseInvalidError,
  type IKeyValue,
  type IResponseOp,
} from "etcd3";
import type { Logger } from "../logging.js";
import { FenceLostError, type FencingToken } from "./fencing.js";
import {
  certainlyNotApplied,
  deadlineIn,
  retryWithin,
  WriteNotCommittedError,
  WriteOutcomeUnknownError,
} from "./outcome.js";

/** One operation of a transaction's branch, as etcd3's builders accept it. */
export type TxnOperation = Parameters<ComparatorBuilder["then"]>[number];

/** A fenced write that committed. */
export interface FencedWrite {
  /** The etcd revision at which it committed. */
  revision: number;
  /**
   * etcd's replies to the caller's operations, in order; undefined when the commit was learnt from
   * the write's marker because its own reply was lost.
   */
  responses: IResponseOp[] | undefined;
  /** The same revision as etcd3 reports it, for callers written against a raw txn response. */
  header: { revision: string };
}

const COMMITTED = "committed";
const ABORTED = "aborted";
/** Deletes of earlier markers piggybacked on one write; etcd allows 128 operations per txn by default. */
const MARKER_DELETES_PER_WRITE = 16;
/** Leases whose committed markers are remembered for deletion; older ones have expired with their lease. */
const LEASES_REMEMBERED = 8;

/**
 * Fenced writes whose outcome can always be decided, although the caller's operations cannot be
 * read back in general.
 *
 * Each write W carries a marker key M of its own (a random name): W commits only if the leader key
 * still has the fence's create revision and is bound to lease L, and M is absent; W then also puts
 * M = "committed" under L. When W's reply is lost, a second transaction R settles it: if M is absent,
 * put M = "aborted" under L; else read M. etcd orders W and R:
 * - W first: M says committed, so W is reported committed.
 * - R first: M exists, so W's compare fails whenever W arrives. M lives as long as L; once L is gone
 *   the leader key (which W requires to be under L) is gone too, and its create revision never
 *   recurs, so W can never commit. W is reported as not committed.
 * - R cannot reach etcd before the deadline, or finds L gone (M and the answer went with it): the
 *   outcome is reported unknown. Never "refused" while W might have committed.
 * A marker of a committed write is deleted by a later write under the same lease: by then no copy
 * of W can still be in flight (each write is sent once, and a retrying client re-sends only before
 * it answers), so nothing needs M any more. Abort markers stay until their lease ends.
 */
export class FencedWriter {
  private readonly committedMarkers = new Map<string, string[]>();

  constructor(
    private readonly client: Etcd3,
    private readonly callTimeoutMs: number,
    private readonly log: Logger,
  ) {}

  async write(
    fence: FencingToken,
    leaderKey: string,
    leaseId: string,
    markerKey: string,
    operations: TxnOperation[],
  ): Promise<FencedWrite> {
    const cleanup = (this.committedMarkers.get(leaseId) ?? []).slice(0, MARKER_DELETES_PER_WRITE);
    let txn: Awaited<ReturnType<ComparatorBuilder["commit"]>>;
    try {
      txn = await this.client
        .if(leaderKey, "Create", "==", fence.token)
        .and(leaderKey, "Lease", "==", leaseId)
        .and(markerKey, "Create", "==", 0)
        .then(
          ...operations,
          this.client.put(markerKey).value(COMMITTED).lease(leaseId),
          ...cleanup.map((key) => this.client.delete().key(key)),
        )
        .else(this.client.get(leaderKey), this.client.get(markerKey))
        .options(deadlineIn(this.callTimeoutMs))
        .commit();
    } catch (err) {
      // The lease is gone, so is the leader key bound to it: this write never applies.
      if (err instanceof EtcdLeaseInvalidError) throw new FenceLostError(fence);
      if (certainlyNotApplied(err)) throw new WriteNotCommittedError(fence, err);
      return this.settle(fence, leaseId, markerKey, cleanup, err);
    }
    if (txn.succeeded) {
      this.noteCommitted(leaseId, markerKey, cleanup);
      return committedAt(txn.header.revision, txn.responses.slice(0, operations.length));
    }
    const leader = txn.responses[0]?.response_range?.kvs[0];
    const marker = txn.responses[1]?.response_range?.kvs[0];
    if (marker) return this.fromMarker(fence, leaseId, markerKey, marker, cleanup, undefined);
    if (!leader || Number(leader.create_revision) !== fence.token || leader.lease !== leaseId)
      throw new FenceLostError(fence);
    throw new WriteNotCommittedError(fence, new Error("etcd refused the write although its compares held"));
  }

  /** Decides a write whose reply was lost, by aborting it if it has not committed (see the class comment). */
  private async settle(
    fence: FencingToken,
    leaseId: string,
    markerKey: string,
    cleanup: string[],
    cause: unknown,
  ): Promise<FencedWrite> {
    let txn: Awaited<ReturnType<ComparatorBuilder["commit"]>>;
    try {
      txn = await retryWithin(
        this.callTimeoutMs,
        this.callTimeoutMs,
        (options) =>
          this.client
            .if(markerKey, "Create", "==", 0)
            .then(this.client.put(markerKey).value(ABORTED).lease(leaseId))
            .else(this.client.get(markerKey))
            .options(options)
            .commit(),
        (err) => err instanceof EtcdLeaseInvalidError,
      );
    } catch (err) {
      throw new WriteOutcomeUnknownError(
        fence,
        markerKey,
        cause,
        err instanceof EtcdLeaseInvalidError
          ? new Error(`lease ${leaseId} is gone, and with it the marker that would tell`)
          : err,
      );
    }
    if (txn.succeeded) throw new WriteNotCommittedError(fence, cause);
    const marker = txn.responses[0]?.response_range?.kvs[0];
    if (!marker)
      throw new WriteOutcomeUnknownError(fence, markerKey, cause, new Error("etcd returned no marker"));
    return this.fromMarker(fence, leaseId, markerKey, marker, cleanup, cause);
  }

  private fromMarker(
    fence: FencingToken,
    leaseId: string,
    markerKey: string,
    marker: IKeyValue,
    cleanup: string[],
    cause: unknown,
  ): FencedWrite {
    const value = marker.value.toString();
    if (value === COMMITTED) {
      this.noteCommitted(leaseId, markerKey, cleanup);
      return committedAt(marker.create_revision, undefined);
    }
    if (value === ABORTED)
      throw new WriteNotCommittedError(fence, cause ?? new Error(`${markerKey} says the write was aborted`));
    this.log.warn("fenced-write marker has a value this runtime never writes", {
      key: markerKey,
      value: value.slice(0, 64),
    });
    throw new WriteOutcomeUnknownError(
      fence,
      markerKey,
      cause,
      new Error(`the marker holds "${value.slice(0, 64)}"`),
    );
  }

  /** `markerKey` committed together with the deletes of `deleted`. */
  private noteCommitted(leaseId: string, markerKey: string, deleted: string[]): void {
    const kept = (this.committedMarkers.get(leaseId) ?? []).filter((key) => !deleted.includes(key));
    this.committedMarkers.delete(leaseId);
    this.committedMarkers.set(leaseId, [...kept, markerKey]);
    for (const oldest of this.committedMarkers.keys()) {
      if (this.committedMarkers.size <= LEASES_REMEMBERED) break;
      this.committedMarkers.delete(oldest);
    }
  }
}

function committedAt(revision: string, responses: IResponseOp[] | undefined): FencedWrite {
  return { revision: Number(revision), responses, header: { revision } };
}
