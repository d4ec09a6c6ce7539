import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3, IKeyValue } from "etcd3";
import type { ClusterLayout, LeaderSeat } from "../config/index.js";
import type { Logger } from "../logging.js";
import { classifyKey, decodeFailoverAd, idHighWaterMark, type NodeRecord } from "./codec.js";
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

/**
 * A fresh-ID claim whose reply was lost found its slot held by another node: the lease was revoked
 * so that the claim can never land late. The node must join again under a new lease.
 */
export class ClaimAbandonedError extends Error {
  override readonly name = "ClaimAbandonedError";
  constructor(
    readonly id: number,
    readonly leaseId: string,
  ) {
    super(
      `lease ${leaseId} revoked: a claim of node ID ${id} under it had an unknown outcome and the slot is now another node's`,
    );
  }
}

const isAbandoned = (err: unknown) => err instanceof ClaimAbandonedError;

/** `id_key` as read at one revision, and the high-water mark it gives (`idHighWaterMark`). */
export async function readIdHighWaterMark(
  client: Etcd3,
  layout: ClusterLayout,
  timeoutMs: number,
): Promise<{ revision: number; allocated: number; value?: string; problem?: string }> {
  const res = await client.get(layout.keys.idKey).options(deadlineIn(timeoutMs)).exec();
  const kv = res.kvs[0] && idKeyValue(res.kvs[0]);
  return { revision: Number(res.header.revision), value: kv?.value, ...idHighWaterMark(kv, layout.capacity) };
}

const idKeyValue = (kv: { value: Buffer; version: string }) => ({
  value: kv.value.toString(),
  version: Number(kv.version),
});

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
const MAX_ALLOCATION_ROUNDS = 1_000_000;
/** Between tickets: nobody contends for one; only a taken slot (advertised and claimed, a reset `id_key`) waits. */
const TICKET_BACKOFF: Backoff = { minMs: 0, baseMs: 5, maxMs: 20 };
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
   * Takes a fresh ID and registers the member key for it, in two writes that nobody waits for (no
   * compare on a shared key, so no retry round): a ticket (an unconditional put on `id_key`
   * returning the previous version, so every put gets a different one), then the claim of member slot `ticket`: *if* the member key is absent
   * *then* write it under the lease and delete the slot's advertisement (a primary that saw the
   * ticket's slot without a member may have advertised it meanwhile). A slot found taken (an
   * advertisement claimed first, a reset `id_key`) costs a new ticket. A ticket at or beyond the
   * capacity means full. A node never holds two IDs: an earlier claim under the same lease whose
   * outcome was unknown is settled first, and one that may still land late revokes the lease.
   */
  async allocateFreshId(
    record: Omit<NodeRecord, "id">,
    leaseId: string,
    stillWanted: () => boolean = () => true,
  ): Promise<FreshIdResult> {
    const earlier = await this.settleEarlierIdClaim(leaseId);
    if (earlier !== undefined) return { kind: "allocated", id: earlier };
    for (let round = 0; round < MAX_ALLOCATION_ROUNDS; round++) {
      if (round > 0) await sleep(backoffDelay(round - 1, TICKET_BACKOFF));
      if (!stillWanted()) throw new Error("fresh-ID allocation abandoned: its session is over");
      const ticket = await this.takeTicket();
      if (ticket >= this.layout.capacity) {
        const free = await this.claimFreeSlotOfLeaderlessCluster(record, leaseId);
        return free === undefined ? { kind: "full" } : { kind: "allocated", id: free };
      }
      const id = await this.claimTicket(ticket, record, leaseId);
      if (id !== undefined) return { kind: "allocated", id };
    }
    throw new Error(`no fresh ID after ${MAX_ALLOCATION_ROUNDS} tickets from ${this.keys.idKey}`);
  }

  /**
   * A full cluster without a single leader key bound to a lease (every member died together: a power cut, with no
   * state directories to take IDs back) has nobody to advertise its free slots, and never would:
   * a leader needs a member. So a newcomer claims the lowest free slot itself, by the same claim as
   * a ticket's (member key absent). Once anyone leads, newcomers wait for advertisements again.
   */
  private async claimFreeSlotOfLeaderlessCluster(
    record: Omit<NodeRecord, "id">,
    leaseId: string,
  ): Promise<number | undefined> {
    const leaderKeys = await this.client
      .getAll()
      .prefix(this.keys.allLeadersPrefix)
      .options(this.callOptions())
      .exec();
    // A leader key without a lease is poisoned (no runtime writes one) and never expires: it leads nobody.
    if (leaderKeys.kvs.some((kv) => String(kv.lease) !== "0")) return undefined;
    const memberKeys = await this.client
      .getAll()
      .prefix(this.keys.allMembersPrefix)
      .options(this.callOptions())
      .keys();
    const held = new Set(
      memberKeys.flatMap((key) => {
        const kind = classifyKey(this.layout, key);
        return kind.kind === "member" ? [kind.id] : [];
      }),
    );
    this.log.warn("cluster is full and nobody leads it; claiming a free slot directly", {
      members: held.size,
    });
    for (let id = 0; id < this.layout.capacity; id++) {
      if (held.has(id)) continue;
      const claimed = await this.claimTicket(id, record, leaseId);
      if (claimed !== undefined) return claimed;
    }
    return undefined;
  }

  /**
   * One ticket: the high-water mark just before an unconditional put on `id_key` (see
   * `idHighWaterMark`), which writes the mark read before it plus one, a lower bound, so that a
   * reader of the value alone sees a count that is exact when nobody raced. A put whose reply is
   * lost is not settled: its ticket is burnt, a gap that the primaries advertise as a failed slot
   * and a later node fills; the caller retries. Once the mark read is at the capacity, no put.
   */
  private async takeTicket(): Promise<number> {
    const mark = await this.allocatedCount();
    // Every ID was handed out already: a put would only burn a ticket beyond the capacity.
    if (mark >= this.layout.capacity) return mark;
    const next = mark + 1;
    const prev = await this.client
      .put(this.keys.idKey)
      .value(String(next))
      .options(this.callOptions())
      .getPrevious();
    return this.highWaterMark(prev.key ? idKeyValue(prev) : undefined);
  }

  private highWaterMark(kv: { value: string; version: number } | undefined): number {
    const { allocated, problem } = idHighWaterMark(kv, this.layout.capacity);
    if (problem)
      this.log.warn("ignoring bad node ID counter", { key: this.keys.idKey, value: kv?.value.slice(0, 64) });
    return allocated;
  }

  /** Claims member slot `ticket`; its ID when this lease now holds it, undefined when another does. */
  private async claimTicket(
    ticket: number,
    record: Omit<NodeRecord, "id">,
    leaseId: string,
  ): Promise<number | undefined> {
    const claim = this.ticketClaim(ticket, record, leaseId);
    let holder: string | undefined;
    try {
      holder = await claim(this.callOptions());
    } catch (err) {
      if (certainlyNotApplied(err)) throw err;
      return this.settleIdClaim(leaseId, {
        operation: `claim of ticket ${ticket}`,
        attemptError: err,
        settle: (options) => this.settleTicketClaim(ticket, claim, leaseId, options),
      });
    }
    return holder === leaseId ? ticket : undefined;
  }

  /** The claim transaction of slot `id`; resolves to the lease that holds the slot after it. */
  private ticketClaim(id: number, record: Omit<NodeRecord, "id">, leaseId: string) {
    const memberKey = this.keys.memberKey(this.layout.nodeGroup(id), id);
    const value = JSON.stringify({ ...record, id });
    return async (options: { deadline: Date }): Promise<string | undefined> => {
      const txn = await this.client
        .if(memberKey, "Create", "==", 0)
        .then(
          this.client.put(memberKey).value(value).lease(leaseId),
          this.client.delete().key(this.keys.failoverKey(id)),
        )
        .else(this.client.get(memberKey))
        .options(options)
        .commit();
      return txn.succeeded ? leaseId : txn.responses[0]?.response_range?.kvs[0]?.lease;
    };
  }

  /**
   * Settles a ticket claim whose reply was lost. Its only compare is "member key absent", which no
   * write of ours can make fail for good; so it is repeated on the same slot until etcd answers.
   * Held under this lease: claimed. Held under another: a copy of the lost claim could still land
   * once that key goes, giving the lease a second member key, so the lease is revoked (etcd then
   * refuses the copy) and the node joins again under a new one.
   */
  private async settleTicketClaim(
    ticket: number,
    claim: (options: { deadline: Date }) => Promise<string | undefined>,
    leaseId: string,
    options: { deadline: Date },
  ): Promise<number | undefined> {
    if ((await claim(options)) === leaseId) return ticket;
    this.log.warn(
      "a claim whose reply was lost found its slot taken; revoking the lease so that it cannot land late",
      {
        id: ticket,
        lease: leaseId,
      },
    );
    await this.client.leaseClient.leaseRevoke({ ID: leaseId }, options);
    throw new ClaimAbandonedError(ticket, leaseId);
  }

  /** The high-water mark of node IDs (`idHighWaterMark`), read from `id_key`. */
  async allocatedCount(): Promise<number> {
    const found = (await this.client.get(this.keys.idKey).options(this.callOptions()).exec()).kvs[0];
    return this.highWaterMark(found && idKeyValue(found));
  }

  /**
   * Settles a failover claim whose reply was lost: rewrites the advertisement the claim compared,
   * so that a late copy of the claim can never commit, unless it changed already; then the member
   * key tells whether the claim won.
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

  /** Settles a claim whose reply was lost; remembers it (and throws OutcomeUnknownError) if etcd cannot say yet. */
  private async settleIdClaim(leaseId: string, claim: UnsettledIdClaim): Promise<number | undefined> {
    try {
      const id = await retryWithin(this.callTimeoutMs, this.callTimeoutMs, claim.settle, isAbandoned);
      this.unsettledIdClaims.delete(leaseId);
      return id;
    } catch (err) {
      if (isAbandoned(err)) {
        this.unsettledIdClaims.delete(leaseId);
        throw err;
      }
      this.unsettledIdClaims.set(leaseId, claim);
      throw new OutcomeUnknownError(claim.operation, claim.attemptError, err);
    }
  }

  private async settleEarlierIdClaim(leaseId: string): Promise<number | undefined> {
    const earlier = this.unsettledIdClaims.get(leaseId);
    return earlier ? this.settleIdClaim(leaseId, earlier) : undefined;
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
