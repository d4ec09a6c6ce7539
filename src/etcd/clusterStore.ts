import type { Etcd3 } from "etcd3";
import type { ClusterLayout, LeaderSlot } from "../config/index.js";
import type { Logger } from "../logging.js";
import { decodeCounter, decodeValue, failoverAdSchema, type NodeRecord } from "./values.js";

/** A leader's proof of office: the create revision of the leader key it holds. */
export interface FencingToken {
  grouping: number;
  slot: LeaderSlot;
  token: number;
}

export type FreshIdResult = { kind: "allocated"; id: number } | { kind: "full" };
export type CampaignResult = { kind: "won"; token: number } | { kind: "lost" };

/** Raised when a fenced transaction finds that the leader key is no longer the caller's. */
export class FenceLostError extends Error {
  override readonly name = "FenceLostError";
  constructor(readonly fence: FencingToken) {
    super(
      `leader key of grouping ${fence.grouping} slot ${fence.slot} no longer has create revision ${fence.token}`,
    );
  }
}

const MAX_ALLOCATION_ROUNDS = 10_000;

/**
 * Every transaction of the runtime, each one a single etcd txn whose compares make it safe
 * under any number of concurrent callers. No recipe locks: a lock held by a lease can be lost
 * silently, a compare cannot.
 */
export class ClusterStore {
  constructor(
    readonly client: Etcd3,
    readonly layout: ClusterLayout,
    private readonly log: Logger,
  ) {}

  private get keys() {
    return this.layout.keys;
  }

  /**
   * Takes the next fresh ID from `id_key` and registers the member key for it, in one transaction:
   * the counter's mod revision must be unchanged and the member key absent. Concurrent callers
   * each get a different ID; a caller that loses the race re-reads and tries the next one, for as
   * long as `stillWanted` says its session is current.
   */
  async allocateFreshId(
    record: Omit<NodeRecord, "id">,
    leaseId: string,
    stillWanted: () => boolean = () => true,
  ): Promise<FreshIdResult> {
    for (let round = 0; round < MAX_ALLOCATION_ROUNDS; round++) {
      if (!stillWanted()) throw new Error("fresh-ID allocation abandoned: its session is over");
      const counter = await this.client.get(this.keys.idKey).exec();
      const kv = counter.kvs[0];
      const next = kv ? decodeCounter(kv.value.toString(), this.layout.capacity) : 0;
      if (next === undefined) {
        throw new Error(
          `${this.keys.idKey}: value "${kv?.value.toString().slice(0, 64)}" is not a node ID counter (0..${this.layout.capacity})`,
        );
      }
      if (next >= this.layout.capacity) return { kind: "full" };
      const memberKey = this.keys.memberKey(this.layout.nodeGroup(next), next);
      const counterUnchanged = () =>
        kv
          ? this.client.if(this.keys.idKey, "Mod", "==", kv.mod_revision)
          : this.client.if(this.keys.idKey, "Create", "==", 0);
      const txn = await counterUnchanged()
        .and(memberKey, "Create", "==", 0)
        .then(
          this.client.put(this.keys.idKey).value(String(next + 1)),
          this.client
            .put(memberKey)
            .value(JSON.stringify({ ...record, id: next }))
            .lease(leaseId),
        )
        .else(this.client.get(memberKey))
        .commit();
      if (txn.succeeded) return { kind: "allocated", id: next };
      const memberTaken = (txn.responses[0]?.response_range?.kvs.length ?? 0) > 0;
      if (memberTaken) {
        // The slot is held although the counter points at it (a hand-edited counter): skip it.
        await counterUnchanged()
          .then(this.client.put(this.keys.idKey).value(String(next + 1)))
          .commit();
      }
    }
    throw new Error(`no fresh ID after ${MAX_ALLOCATION_ROUNDS} rounds of contention on ${this.keys.idKey}`);
  }

  /** The IDs handed out so far (every ID below the counter); 0 when the counter is absent or bad, so nothing is claimed. */
  async allocatedCount(): Promise<number> {
    const value = await this.client.get(this.keys.idKey).string();
    if (value === null) return 0;
    const count = decodeCounter(value, this.layout.capacity);
    if (count === undefined)
      this.log.warn("ignoring bad node ID counter", { key: this.keys.idKey, value: value.slice(0, 64) });
    return count ?? 0;
  }

  /**
   * Claims one advertised failed slot: in one transaction the advertisement must be unchanged and
   * the member key absent; the advertisement is deleted and the member key written. Exactly one
   * caller wins each slot. Returns the claimed ID, or undefined when no slot could be claimed.
   */
  async claimAdvertisedSlot(record: Omit<NodeRecord, "id">, leaseId: string): Promise<number | undefined> {
    const [ads, allocated] = await Promise.all([
      this.client.getAll().prefix(this.keys.failoverPrefix).exec(),
      this.allocatedCount(),
    ]);
    const candidates = ads.kvs
      .map((kv) => ({ kv, id: this.keys.nodeIdOf(kv.key.toString(), this.keys.failoverPrefix) }))
      .filter((c): c is typeof c & { id: number } => {
        // Only an ID that was handed out can have failed; anything else is not a real advertisement.
        if (c.id !== undefined && c.id < allocated) return true;
        this.log.warn("ignoring failover advertisement for a slot never handed out", {
          key: c.kv.key.toString(),
        });
        return false;
      })
      .sort((a, b) => a.id - b.id);
    for (const { kv, id } of candidates) {
      const decoded = decodeValue(failoverAdSchema, kv.value.toString());
      if (!decoded.ok)
        this.log.warn("failover advertisement has a bad value; claiming by key", {
          key: kv.key.toString(),
          problem: decoded.problem,
        });
      const memberKey = this.keys.memberKey(this.layout.nodeGroup(id), id);
      const txn = await this.client
        .if(kv.key, "Mod", "==", kv.mod_revision)
        .and(memberKey, "Create", "==", 0)
        .then(
          this.client.delete().key(kv.key),
          this.client
            .put(memberKey)
            .value(JSON.stringify({ ...record, id }))
            .lease(leaseId),
        )
        .commit();
      if (txn.succeeded) return id;
    }
    return undefined;
  }

  /**
   * Campaigns for one leader key of a grouping. Wins only when the key is absent and the other
   * slot is not held under this node's lease, so primary and backup are never the same node.
   * The token is the new key's create revision.
   */
  async campaign(
    grouping: number,
    slot: LeaderSlot,
    record: NodeRecord,
    leaseId: string,
  ): Promise<CampaignResult> {
    const key = this.keys.leaderKey(grouping, slot);
    const other = this.keys.leaderKey(grouping, slot === 1 ? 2 : 1);
    const txn = await this.client
      .if(key, "Create", "==", 0)
      .and(other, "Lease", "!=", leaseId)
      .then(this.client.put(key).value(JSON.stringify(record)).lease(leaseId))
      .commit();
    return txn.succeeded ? { kind: "won", token: Number(txn.header.revision) } : { kind: "lost" };
  }

  /**
   * The backup takes the primary key in one transaction: the primary key must be absent and the
   * backup key still the caller's; the backup key is deleted so that a new backup is elected.
   */
  async promote(backup: FencingToken, record: NodeRecord, leaseId: string): Promise<CampaignResult> {
    const primaryKey = this.keys.leaderKey(backup.grouping, 1);
    const backupKey = this.keys.leaderKey(backup.grouping, 2);
    const txn = await this.client
      .if(primaryKey, "Create", "==", 0)
      .and(backupKey, "Create", "==", backup.token)
      .then(
        this.client.put(primaryKey).value(JSON.stringify(record)).lease(leaseId),
        this.client.delete().key(backupKey),
      )
      .commit();
    return txn.succeeded ? { kind: "won", token: Number(txn.header.revision) } : { kind: "lost" };
  }

  /** Deletes the leader key if it is still the caller's; true when it was. */
  async resign(fence: FencingToken): Promise<boolean> {
    const key = this.keys.leaderKey(fence.grouping, fence.slot);
    const txn = await this.client
      .if(key, "Create", "==", fence.token)
      .then(this.client.delete().key(key))
      .commit();
    return txn.succeeded;
  }

  /** Deletes this node's member key if it is still bound to the caller's lease. */
  async deregister(nodeId: number, leaseId: string): Promise<boolean> {
    const key = this.keys.memberKey(this.layout.nodeGroup(nodeId), nodeId);
    const txn = await this.client
      .if(key, "Lease", "==", leaseId)
      .then(this.client.delete().key(key))
      .commit();
    return txn.succeeded;
  }

  /**
   * Advertises a failed slot as the grouping's leader: fenced on the leader key, and only while the
   * slot has no member and no advertisement. Returns false when there was nothing to advertise;
   * throws FenceLostError when the caller no longer leads.
   */
  async advertiseFailedSlot(fence: FencingToken, nodeId: number, advertisedBy: number): Promise<boolean> {
    const group = this.layout.nodeGroup(nodeId);
    const leaderKey = this.keys.leaderKey(fence.grouping, fence.slot);
    const adKey = this.keys.failoverKey(nodeId);
    const ad = { id: nodeId, group, advertisedBy, token: fence.token };
    const txn = await this.client
      .if(leaderKey, "Create", "==", fence.token)
      .and(this.keys.memberKey(group, nodeId), "Create", "==", 0)
      .and(adKey, "Create", "==", 0)
      .then(this.client.put(adKey).value(JSON.stringify(ad)))
      .else(this.client.get(leaderKey))
      .commit();
    if (txn.succeeded) return true;
    const held = txn.responses[0]?.response_range?.kvs[0];
    if (!held || Number(held.create_revision) !== fence.token) throw new FenceLostError(fence);
    return false;
  }

  /**
   * Runs the caller's operations only while `fence` still holds its leader key: the write path
   * for the embedding server. Throws FenceLostError when the leader key has changed.
   */
  async fencedTxn(
    fence: FencingToken,
    build: (client: Etcd3) => Parameters<ReturnType<Etcd3["if"]>["then"]>,
  ) {
    const leaderKey = this.keys.leaderKey(fence.grouping, fence.slot);
    const txn = await this.client
      .if(leaderKey, "Create", "==", fence.token)
      .then(...build(this.client))
      .commit();
    if (!txn.succeeded) throw new FenceLostError(fence);
    return txn;
  }
}
