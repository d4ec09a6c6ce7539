import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3, IKeyValue } from "etcd3";
import type { ClusterLayout, LeaderSeat } from "../config/index.js";
import type { Logger } from "../logging.js";
import { decodeCounter, decodeFailoverAd, type NodeRecord } from "./codec.js";
import { type FencedWrite, FencedWriter, type TxnOperation } from "./fencedWrite.js";
import { FenceLostError, type FencingToken } from "./fencing.js";
import { type BackupSeat, type HandoffResult, handOffPrimary } from "./handoff.js";
import {
  type Backoff,
  backoffDelay,
  certainlyNotApplied,
  deadlineIn,
  OutcomeUnknownError,
  retryWithin,
  WriteNotCommittedError,
} from "./outcome.js";

export { FenceLostError, type FencingToken } from "./fencing.js";

export type FreshIdResult = { kind: "allocated"; id: number } | { kind: "full" };
export type CampaignResult = { kind: "won"; token: number } | { kind: "lost" };

export interface ClusterStoreOptions {
  /**
   * Deadline of each etcd call, in milliseconds; settling an unknown outcome may take as long
   * again. The runtime derives it from the lease TTL.
   */
  callTimeoutMs?: number;
}

const DEFAULT_STORE_CALL_TIMEOUT_MS = 3_000;
const MAX_ALLOCATION_ROUNDS = 10_000;
const CONTENTION_BACKOFF: Backoff = { minMs: 0, baseMs: 10, maxMs: 250 };
const FENCE_LEASES_REMEMBERED = 64;

/** Settles an ID claim (allocation or failover claim) whose outcome was unknown: the ID it holds, if any. */
type SettleIdClaim = (options: { deadline: Date }) => Promise<number | undefined>;

interface UnsettledIdClaim {
  operation: string;
  attemptError: unknown;
  settle: SettleIdClaim;
}

/**
 * Every transaction of the runtime, each one a single etcd txn whose compares make it safe
 * under any number of concurrent callers. No recipe locks: a lock held by a lease can be lost
 * silently, a compare cannot.
 *
 * Every call has a deadline. When a transaction's reply is lost (or its deadline passes) etcd may
 * or may not have applied it; the outcome is then settled by reading (or, where a late arrival of
 * the request could still apply, by a write that makes it fail for good) before anything is
 * reported, and a compare that fails because of the caller's own earlier success counts as success.
 * One store per node: it remembers unsettled outcomes per lease.
 */
export class ClusterStore {
  private readonly callTimeoutMs: number;
  private readonly writer: FencedWriter;
  /** Per lease: an ID claim whose outcome could not be settled yet; settled before any new claim. */
  private readonly unsettledIdClaims = new Map<string, UnsettledIdClaim>();
  /** The lease each leader key this store won (or looked up) is bound to, by fence. */
  private readonly fenceLeases = new Map<string, string>();

  constructor(
    readonly client: Etcd3,
    readonly layout: ClusterLayout,
    private readonly log: Logger,
    options: ClusterStoreOptions = {},
  ) {
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_STORE_CALL_TIMEOUT_MS;
    if (!(this.callTimeoutMs > 0))
      throw new RangeError(`callTimeoutMs must be positive, got ${this.callTimeoutMs}`);
    this.writer = new FencedWriter(client, this.callTimeoutMs, log);
  }

  private get keys() {
    return this.layout.keys;
  }

  private callOptions(): { deadline: Date } {
    return deadlineIn(this.callTimeoutMs);
  }

  /**
   * Reads back after `attemptError` left an outcome unknown, with retries (backoff, jitter) within
   * one call timeout; OutcomeUnknownError if etcd cannot be read.
   */
  private settle<T>(
    operation: string,
    attemptError: unknown,
    read: (options: { deadline: Date }) => Promise<T>,
  ): Promise<T> {
    return retryWithin(this.callTimeoutMs, this.callTimeoutMs, read).catch((err: unknown) => {
      throw new OutcomeUnknownError(operation, attemptError, err);
    });
  }

  /**
   * Takes the next fresh ID from `id_key` and registers the member key for it, in one transaction:
   * the counter's mod revision must be unchanged and the member key absent. Concurrent callers
   * each get a different ID; a caller that loses the race re-reads and tries the next one (after a
   * jittered backoff), for as long as `stillWanted` says its session is current. A node never
   * holds two IDs: an earlier claim under the same lease whose outcome was unknown is settled first.
   */
  async allocateFreshId(
    record: Omit<NodeRecord, "id">,
    leaseId: string,
    stillWanted: () => boolean = () => true,
  ): Promise<FreshIdResult> {
    const earlier = await this.settleEarlierIdClaim(leaseId);
    if (earlier !== undefined) return { kind: "allocated", id: earlier };
    for (let round = 0; round < MAX_ALLOCATION_ROUNDS; round++) {
      if (round > 0) await sleep(backoffDelay(round - 1, CONTENTION_BACKOFF));
      if (!stillWanted()) throw new Error("fresh-ID allocation abandoned: its session is over");
      const counter = (await this.client.get(this.keys.idKey).options(this.callOptions()).exec()).kvs[0];
      const text = counter?.value.toString();
      const { allocated: next, problem } = decodeCounter(text, this.layout.capacity);
      if (problem) throw new Error(`${this.keys.idKey}: value "${text?.slice(0, 64)}" is ${problem}`);
      if (next >= this.layout.capacity) return { kind: "full" };
      const id = await this.tryAllocate(counter, next, record, leaseId);
      if (id !== undefined) return { kind: "allocated", id };
    }
    throw new Error(`no fresh ID after ${MAX_ALLOCATION_ROUNDS} rounds of contention on ${this.keys.idKey}`);
  }

  /** The counter unchanged since it was read as `counter` (or still absent). */
  private counterUnchanged(counter: IKeyValue | undefined) {
    return counter
      ? this.client.if(this.keys.idKey, "Mod", "==", counter.mod_revision)
      : this.client.if(this.keys.idKey, "Create", "==", 0);
  }

  /**
   * Settles an ID claim whose reply was lost: rewrites the key the claim compared, so that a late
   * copy of the claim can never commit, unless that key changed already; then the member key tells
   * whether the claim won.
   */
  private settleByRewriting(
    unchanged: () => ReturnType<Etcd3["if"]>,
    rewrite: () => TxnOperation,
    claim: { id: number; memberKey: string; leaseId: string },
  ): SettleIdClaim {
    return async (options) => {
      const fenced = await unchanged()
        .then(rewrite())
        .else(this.client.get(claim.memberKey))
        .options(options)
        .commit();
      const member = fenced.responses[0]?.response_range?.kvs[0];
      return !fenced.succeeded && heldBy(member, claim.leaseId) ? claim.id : undefined;
    };
  }

  /** One allocation attempt for ID `next`; the ID when this lease now holds it. */
  private async tryAllocate(
    counter: IKeyValue | undefined,
    next: number,
    record: Omit<NodeRecord, "id">,
    leaseId: string,
  ): Promise<number | undefined> {
    const memberKey = this.keys.memberKey(this.layout.nodeGroup(next), next);
    let txn: Awaited<ReturnType<ReturnType<Etcd3["if"]>["commit"]>>;
    try {
      txn = await this.counterUnchanged(counter)
        .and(memberKey, "Create", "==", 0)
        .then(
          this.client.put(this.keys.idKey).value(String(next + 1)),
          this.client
            .put(memberKey)
            .value(JSON.stringify({ ...record, id: next }))
            .lease(leaseId),
        )
        .else(this.client.get(memberKey))
        .options(this.callOptions())
        .commit();
    } catch (err) {
      if (certainlyNotApplied(err)) throw err;
      // A late copy of the attempt commits only while the counter is unchanged: settle by changing it.
      return this.settleIdClaim(leaseId, {
        operation: `allocation of ID ${next}`,
        attemptError: err,
        settle: this.settleByRewriting(
          () => this.counterUnchanged(counter),
          () => this.client.put(this.keys.idKey).value(counter ? counter.value : String(next)),
          { id: next, memberKey, leaseId },
        ),
      });
    }
    if (txn.succeeded) return next;
    const member = txn.responses[0]?.response_range?.kvs[0];
    if (heldBy(member, leaseId)) return next;
    if (member) await this.skipTakenSlot(counter, next);
    return undefined;
  }

  /** The slot is held although the counter points at it (a hand-edited counter): move the counter past it. */
  private async skipTakenSlot(counter: IKeyValue | undefined, next: number): Promise<void> {
    try {
      await this.counterUnchanged(counter)
        .then(this.client.put(this.keys.idKey).value(String(next + 1)))
        .options(this.callOptions())
        .commit();
    } catch (err) {
      // Harmless either way: the next round reads the counter again.
      this.log.debug("could not move the node ID counter past a taken slot", { error: String(err) });
    }
  }

  /** Settles a claim whose reply was lost; remembers it (and throws OutcomeUnknownError) if etcd cannot say yet. */
  private async settleIdClaim(leaseId: string, claim: UnsettledIdClaim): Promise<number | undefined> {
    try {
      const id = await retryWithin(this.callTimeoutMs, this.callTimeoutMs, claim.settle);
      this.unsettledIdClaims.delete(leaseId);
      return id;
    } catch (err) {
      this.unsettledIdClaims.set(leaseId, claim);
      throw new OutcomeUnknownError(claim.operation, claim.attemptError, err);
    }
  }

  private async settleEarlierIdClaim(leaseId: string): Promise<number | undefined> {
    const earlier = this.unsettledIdClaims.get(leaseId);
    return earlier ? this.settleIdClaim(leaseId, earlier) : undefined;
  }

  /** The IDs handed out so far (every ID below the counter); 0 when the counter is absent or bad, so nothing is claimed. */
  async allocatedCount(): Promise<number> {
    const value = (await this.client.get(this.keys.idKey).options(this.callOptions()).string()) ?? undefined;
    const { allocated, problem } = decodeCounter(value, this.layout.capacity);
    if (problem)
      this.log.warn("ignoring bad node ID counter", { key: this.keys.idKey, value: value?.slice(0, 64) });
    return allocated;
  }

  /**
   * Claims one advertised failed slot: in one transaction the advertisement must be unchanged and
   * the member key absent; the advertisement is deleted and the member key written. Exactly one
   * caller wins each slot. Returns the claimed ID, or undefined when no slot could be claimed.
   * Like allocation, it first settles an earlier claim under the same lease whose outcome was unknown.
   */
  async claimAdvertisedSlot(record: Omit<NodeRecord, "id">, leaseId: string): Promise<number | undefined> {
    const earlier = await this.settleEarlierIdClaim(leaseId);
    if (earlier !== undefined) return earlier;
    const ads = await this.client
      .getAll()
      .prefix(this.keys.failoverPrefix)
      .options(this.callOptions())
      .exec();
    const allocated = await this.allocatedCount();
    const candidates = ads.kvs
      .flatMap((kv) => {
        const found = decodeFailoverAd(this.layout, kv.key.toString(), kv.value.toString());
        // Only an ID that was handed out can have failed; anything else is not a real advertisement.
        if (found && found.id < allocated) return [{ kv, ...found }];
        this.log.warn("ignoring failover advertisement for a slot never handed out", {
          key: kv.key.toString(),
        });
        return [];
      })
      .sort((a, b) => a.id - b.id);
    for (const { kv, id, ad } of candidates) {
      if (!ad.ok)
        this.log.warn("failover advertisement has a bad value; claiming by key", {
          key: kv.key.toString(),
          problem: ad.problem,
        });
      const claimed = await this.tryClaim(kv, id, record, leaseId);
      if (claimed !== undefined) return claimed;
    }
    return undefined;
  }

  private async tryClaim(
    ad: IKeyValue,
    id: number,
    record: Omit<NodeRecord, "id">,
    leaseId: string,
  ): Promise<number | undefined> {
    const memberKey = this.keys.memberKey(this.layout.nodeGroup(id), id);
    const adUnchanged = () => this.client.if(ad.key, "Mod", "==", ad.mod_revision);
    let txn: Awaited<ReturnType<ReturnType<Etcd3["if"]>["commit"]>>;
    try {
      txn = await adUnchanged()
        .and(memberKey, "Create", "==", 0)
        .then(
          this.client.delete().key(ad.key),
          this.client
            .put(memberKey)
            .value(JSON.stringify({ ...record, id }))
            .lease(leaseId),
        )
        .else(this.client.get(memberKey))
        .options(this.callOptions())
        .commit();
    } catch (err) {
      if (certainlyNotApplied(err)) throw err;
      // A late copy of the claim commits only while the advertisement is unchanged: settle by rewriting it.
      return this.settleIdClaim(leaseId, {
        operation: `claim of failed slot ${id}`,
        attemptError: err,
        settle: this.settleByRewriting(adUnchanged, () => this.client.put(ad.key).value(ad.value), {
          id,
          memberKey,
          leaseId,
        }),
      });
    }
    if (txn.succeeded) return id;
    return heldBy(txn.responses[0]?.response_range?.kvs[0], leaseId) ? id : undefined;
  }

  /**
   * Campaigns for one leader key of a grouping. Wins only when the key is absent and the other
   * seat is not held under this node's lease, so primary and backup are never the same node.
   * The token is the key's create revision. When the reply is lost, the key is read: held under
   * this lease means won. (A copy of the request still in flight may win after that read; the
   * node then finds the key under its own lease in its leader view and resumes the office.)
   */
  async campaign(
    grouping: number,
    seat: LeaderSeat,
    record: NodeRecord,
    leaseId: string,
  ): Promise<CampaignResult> {
    const key = this.keys.leaderKey(grouping, seat);
    const other = this.keys.leaderKey(grouping, seat === 1 ? 2 : 1);
    try {
      const txn = await this.client
        .if(key, "Create", "==", 0)
        .and(other, "Lease", "!=", leaseId)
        .then(this.client.put(key).value(JSON.stringify(record)).lease(leaseId))
        .else(this.client.get(key))
        .options(this.callOptions())
        .commit();
      if (txn.succeeded) return this.won(grouping, seat, Number(txn.header.revision), leaseId);
      return this.wonIfHeld(grouping, seat, txn.responses[0]?.response_range?.kvs[0], leaseId);
    } catch (err) {
      if (certainlyNotApplied(err)) throw err;
      const held = await this.readBack(`campaign for ${key}`, err, key);
      return this.wonIfHeld(grouping, seat, held, leaseId);
    }
  }

  /**
   * The backup takes the primary key in one transaction: the primary key must be absent and the
   * backup key still the caller's; the backup key is deleted so that a new backup is elected.
   * When the reply is lost, the primary key is read: held under this lease means won.
   */
  async promote(backup: FencingToken, record: NodeRecord, leaseId: string): Promise<CampaignResult> {
    const primaryKey = this.keys.leaderKey(backup.grouping, 1);
    const backupKey = this.keys.leaderKey(backup.grouping, 2);
    try {
      const txn = await this.client
        .if(primaryKey, "Create", "==", 0)
        .and(backupKey, "Create", "==", backup.token)
        .then(
          this.client.put(primaryKey).value(JSON.stringify(record)).lease(leaseId),
          this.client.delete().key(backupKey),
        )
        .else(this.client.get(primaryKey))
        .options(this.callOptions())
        .commit();
      if (txn.succeeded) return this.won(backup.grouping, 1, Number(txn.header.revision), leaseId);
      return this.wonIfHeld(backup.grouping, 1, txn.responses[0]?.response_range?.kvs[0], leaseId);
    } catch (err) {
      if (certainlyNotApplied(err)) throw err;
      const held = await this.readBack(`promotion to ${primaryKey}`, err, primaryKey);
      return this.wonIfHeld(backup.grouping, 1, held, leaseId);
    }
  }

  private won(grouping: number, seat: LeaderSeat, token: number, leaseId: string): CampaignResult {
    this.rememberFenceLease({ grouping, seat, token }, leaseId);
    return { kind: "won", token };
  }

  private wonIfHeld(
    grouping: number,
    seat: LeaderSeat,
    held: IKeyValue | undefined,
    leaseId: string,
  ): CampaignResult {
    return held && heldBy(held, leaseId)
      ? this.won(grouping, seat, Number(held.create_revision), leaseId)
      : { kind: "lost" };
  }

  /** `key` as it is now, read to settle `operation` after `attemptError`. */
  private readBack(operation: string, attemptError: unknown, key: string): Promise<IKeyValue | undefined> {
    return this.settle(
      operation,
      attemptError,
      async (options) => (await this.client.get(key).options(options).exec()).kvs[0],
    );
  }

  /**
   * Deletes the leader key if it is still the caller's; true when it was. When the reply is lost,
   * a key that is gone or no longer the caller's counts as resigned.
   */
  async resign(fence: FencingToken, leaseId: string): Promise<boolean> {
    const key = this.keys.leaderKey(fence.grouping, fence.seat);
    const compares: KeyCompare[] = [
      ["Create", "==", fence.token],
      ["Lease", "==", leaseId],
    ];
    return this.deleteWhileHeld(`resignation from ${key}`, key, compares, (held) =>
      holdsFence(held, fence, leaseId),
    );
  }

  /**
   * A stopping primary moves its office to `backup` in one fenced transaction, or resigns when
   * there is no backup or it is not as seen (see `handOffPrimary`). Idempotent: a lost reply is
   * settled by reading the primary key back.
   */
  handoff(primary: FencingToken, leaseId: string, backup: BackupSeat | undefined): Promise<HandoffResult> {
    const keys = {
      primaryKey: this.keys.leaderKey(primary.grouping, 1),
      backupKey: this.keys.leaderKey(primary.grouping, 2),
    };
    return handOffPrimary(this.client, keys, primary, leaseId, backup, this.callTimeoutMs);
  }

  /**
   * Deletes this node's member key if it is still bound to the caller's lease. When the reply is
   * lost, a key that is gone or no longer under the lease counts as deregistered.
   */
  async deregister(nodeId: number, leaseId: string): Promise<boolean> {
    const key = this.keys.memberKey(this.layout.nodeGroup(nodeId), nodeId);
    return this.deleteWhileHeld(`deregistration of ${key}`, key, [["Lease", "==", leaseId]], (held) =>
      heldBy(held, leaseId),
    );
  }

  /**
   * Deletes `key` if every one of `compares` holds; true when it did. When the reply is lost, the key is read
   * back: still held by the caller (`stillHeld`) means the delete did not apply; otherwise it counts
   * as done (gone, or no longer the caller's).
   */
  private async deleteWhileHeld(
    operation: string,
    key: string,
    compares: readonly KeyCompare[],
    stillHeld: (held: IKeyValue | undefined) => boolean,
  ): Promise<boolean> {
    try {
      const [first, ...rest] = compares;
      if (!first) throw new RangeError(`${operation}: a delete needs a compare`);
      let guarded = this.client.if(key, ...first);
      for (const compare of rest) guarded = guarded.and(key, ...compare);
      const txn = await guarded.then(this.client.delete().key(key)).options(this.callOptions()).commit();
      return txn.succeeded;
    } catch (err) {
      if (certainlyNotApplied(err)) throw err;
      if (stillHeld(await this.readBack(operation, err, key))) throw err;
      return true;
    }
  }

  /**
   * Advertises a failed slot as the grouping's leader: fenced on the leader key (its token and the
   * caller's lease: a primary that handed its seat off keeps no claim to it), and only while the
   * slot has no member and no advertisement. Returns false when there was nothing to advertise;
   * throws FenceLostError when the caller no longer leads. An advertisement already there with
   * the caller's token is the caller's own (a lost reply) and counts as advertised.
   */
  async advertiseFailedSlot(
    fence: FencingToken,
    leaseId: string,
    nodeId: number,
    advertisedBy: number,
  ): Promise<boolean> {
    const group = this.layout.nodeGroup(nodeId);
    const leaderKey = this.keys.leaderKey(fence.grouping, fence.seat);
    const adKey = this.keys.failoverKey(nodeId);
    const ad = { id: nodeId, group, advertisedBy, token: fence.token };
    let leader: IKeyValue | undefined;
    let existing: IKeyValue | undefined;
    try {
      const txn = await this.client
        .if(leaderKey, "Create", "==", fence.token)
        .and(leaderKey, "Lease", "==", leaseId)
        .and(this.keys.memberKey(group, nodeId), "Create", "==", 0)
        .and(adKey, "Create", "==", 0)
        .then(this.client.put(adKey).value(JSON.stringify(ad)))
        .else(this.client.get(leaderKey), this.client.get(adKey))
        .options(this.callOptions())
        .commit();
      if (txn.succeeded) return true;
      leader = txn.responses[0]?.response_range?.kvs[0];
      existing = txn.responses[1]?.response_range?.kvs[0];
    } catch (err) {
      if (certainlyNotApplied(err)) throw err;
      [leader, existing] = await this.settle(`advertisement of slot ${nodeId}`, err, (options) =>
        Promise.all([
          this.client.get(leaderKey).options(options).exec(),
          this.client.get(adKey).options(options).exec(),
        ]).then(([l, a]) => [l.kvs[0], a.kvs[0]] as const),
      );
      // Not there yet: the attempt has not applied (a late copy would only write the same advertisement).
      if (!existing && holdsFence(leader, fence, leaseId)) throw err;
    }
    if (existing && this.advertisedWith(existing, fence.token)) return true;
    if (!holdsFence(leader, fence, leaseId)) throw new FenceLostError(fence);
    return false;
  }

  /**
   * Runs the caller's operations only while `fence` still holds its leader key: the write path
   * for the embedding server. Resolves once they committed; throws FenceLostError when they did
   * not because the leader key changed, WriteNotCommittedError when etcd failed and the write was
   * then aborted, WriteOutcomeUnknownError when etcd cannot tell which (see FencedWriter).
   * `leaseId` is the lease the leader key is bound to; by default the one this store won it
   * under, or else the one etcd shows.
   */
  async fencedTxn(
    fence: FencingToken,
    build: (client: Etcd3) => Parameters<ReturnType<Etcd3["if"]>["then"]>,
    leaseId?: string,
  ): Promise<FencedWrite> {
    const leaderKey = this.keys.leaderKey(fence.grouping, fence.seat);
    const lease = leaseId ?? (await this.leaseOfFence(fence, leaderKey));
    const operations: TxnOperation[] = build(this.client);
    return this.writer.write(fence, leaderKey, lease, this.writeMarkerKey(fence), operations);
  }

  /** Key of one fenced write's outcome marker: a random name under the grouping's marker prefix. */
  private writeMarkerKey(fence: FencingToken): string {
    return this.keys.writeMarkerKey(fence.grouping, randomUUID());
  }

  /** An advertisement this leader wrote under `token` (a lost reply of its own earlier attempt). */
  private advertisedWith(kv: IKeyValue, token: number): boolean {
    const found = decodeFailoverAd(this.layout, kv.key.toString(), kv.value.toString());
    return found?.ad.ok === true && found.ad.value.token === token;
  }

  private async leaseOfFence(fence: FencingToken, leaderKey: string): Promise<string> {
    const known = this.fenceLeases.get(fenceId(fence));
    if (known !== undefined) return known;
    let held: IKeyValue | undefined;
    try {
      held = (await this.client.get(leaderKey).options(this.callOptions()).exec()).kvs[0];
    } catch (err) {
      throw new WriteNotCommittedError(fence, err);
    }
    if (!held || Number(held.create_revision) !== fence.token || held.lease === "0")
      throw new FenceLostError(fence);
    this.rememberFenceLease(fence, held.lease);
    return held.lease;
  }

  private rememberFenceLease(fence: FencingToken, leaseId: string): void {
    this.fenceLeases.set(fenceId(fence), leaseId);
    for (const oldest of this.fenceLeases.keys()) {
      if (this.fenceLeases.size <= FENCE_LEASES_REMEMBERED) break;
      this.fenceLeases.delete(oldest);
    }
  }
}

const fenceId = (fence: FencingToken) => `${fence.grouping}/${fence.seat}/${fence.token}`;

/** A compare on one key's create revision or lease, as `deleteWhileHeld` applies them. */
type KeyCompare = ["Create" | "Lease", "==", number | string];

/** `kv` is the leader key of `fence`'s term: its create revision and the lease it was won or handed under. */
function holdsFence(kv: IKeyValue | undefined, fence: FencingToken, leaseId: string): boolean {
  return kv !== undefined && Number(kv.create_revision) === fence.token && kv.lease === leaseId;
}

function heldBy(kv: IKeyValue | undefined, leaseId: string): boolean {
  return kv !== undefined && kv.lease === leaseId;
}
