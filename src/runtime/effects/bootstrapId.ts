import { filter, map, type Subscription } from "rxjs";
import type { bootstrapIdMachine } from "../../../machines/bootstrapId.js";
import { reclaimId } from "../../etcd/idClaims.js";
import { backoffDelay, type KeyEntry, OutcomeUnknownError, revokeLease } from "../../etcd/index.js";
import { currentBootId } from "../../processLiveness.js";
import type { SessionScope } from "../sessionScope.js";
import type { NodeIdFile, StoredIdentity } from "../stateDir.js";
import { type EffectContext, nodeRecord } from "./context.js";

type Actions = NonNullable<Parameters<(typeof bootstrapIdMachine)["provide"]>[0]["actions"]>;

const RETRY_BACKOFF = { initialMs: 100, maxMs: 2_000 };

/** Between wakes for advertisements this node tried already (one it could not claim may become claimable). */
const RETRY_TRIED_AD = { initialMs: 250, maxMs: 5_000 };

/**
 * While the cluster is full: a view of the advertisements, telling the node when one appears. An
 * advertisement it was woken for already (by key and mod revision) and could not claim (its member
 * is live, its key names no slot) wakes it again only after a backoff, so a stale one does not
 * make it loop; a new or changed one wakes it at once.
 */
export class AdvertisedSlotWatch {
  private subscription: Subscription | undefined;
  private tried = new Set<string>();
  private retries = 0;

  constructor(private readonly ctx: EffectContext) {}

  start(): void {
    const scope = this.ctx.scope();
    this.ctx.log.info("cluster is full; waiting for an advertised failed slot");
    this.stop();
    let retryScheduled = false;
    this.subscription = this.ctx
      .watch(this.ctx.layout.keys.failoverPrefix)
      .pipe(
        map((ads) => [...ads.entries.values()].map((e) => `${e.key}@${e.modRevision}`)),
        filter((ads) => ads.length > 0),
      )
      .subscribe({
        next: (ads) => {
          if (ads.some((ad) => !this.tried.has(ad))) {
            this.tried = new Set(ads);
            scope.send({ type: "SLOT_ADVERTISED" });
          } else if (!retryScheduled) {
            retryScheduled = true;
            scope.sendAfter(backoffDelay(this.retries++, RETRY_TRIED_AD), { type: "SLOT_ADVERTISED" });
          }
        },
        error: (err) => this.ctx.log.error("failover watch failed", { error: String(err) }),
      });
    // Nobody leads any more (the leaders this node saw were dead, and their leases have expired
    // since, as after a power cut; a poisoned key without a lease leads nobody either): nobody will
    // advertise, so the node allocates again and claims a free slot itself.
    this.subscription.add(
      this.ctx
        .watch(this.ctx.layout.keys.allLeadersPrefix)
        .pipe(filter((leaders) => [...leaders.entries.values()].every(isLeaseless)))
        .subscribe({
          next: () => {
            if (retryScheduled) return;
            retryScheduled = true;
            scope.sendAfter(backoffDelay(this.retries++, RETRY_TRIED_AD), { type: "SLOT_ADVERTISED" });
          },
          error: (err) => this.ctx.log.error("leaders watch failed", { error: String(err) }),
        }),
    );
    // A shutdown ends the scope before it closes the client the view runs on.
    scope.own(this.subscription);
  }

  /** The node holds an ID: the next wait starts afresh. */
  claimed(): void {
    this.tried.clear();
    this.retries = 0;
  }

  stop(): void {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
  }
}

/** A leader key with no lease is poisoned (no runtime writes one): it never expires, and leads nobody. */
const isLeaseless = (entry: KeyEntry) => entry.lease === "0";

/**
 * The ID a node held last, across its sessions: a node that lost its member key (its lease
 * expired in a pause or an etcd blip) takes that ID back first, so that it stays in its group.
 * With a state directory (`idFile`) it starts from the ID stored there and stores each ID it
 * holds, so the same holds across restarts.
 */
export class StickyIdentity {
  private previous: number | undefined;
  /**
   * The lease under which the ID in the state directory was held: a previous process's, dead or
   * stopped, since this one holds the directory's lock. Revoked before the first reclaim, so that
   * a restart after `kill -9` finds its member key gone instead of waiting out its TTL. Only when
   * stored in this host's current boot: a lock proves nothing about a process on another host (a
   * directory copied with a machine image, a shared volume), and after a reboot the lease is gone.
   */
  private previousLease: string | undefined;
  /** An ID this node held before but found taken by another node; reported with the one it joins with. */
  private lost: { id: number; holder?: string } | undefined;
  /** A lease under which a reclaim's outcome was unknown: its request may still reach etcd. */
  private unsettledLease: string | undefined;

  constructor(
    private readonly idFile?: NodeIdFile,
    stored?: StoredIdentity,
  ) {
    this.previous = stored?.id;
    const sameBoot = stored?.bootId !== undefined && stored.bootId === currentBootId();
    this.previousLease = sameBoot ? stored?.lease : undefined;
  }

  /** Seeded from the node's state directory, when its settings name one (read once, when it was locked). */
  static of(ctx: EffectContext): StickyIdentity {
    return new StickyIdentity(ctx.stateDir?.idFile, ctx.stateDir?.stored);
  }

  get previousId(): number | undefined {
    return this.previous;
  }

  /**
   * The node holds `id` now: stored in the state directory before the node reports itself a
   * member, so a restart right after `start()` resolved takes this ID back. A crash between the
   * claim and the write only loses that (the next start tries the older ID, or none); a failed
   * write is logged and the node runs on. Logs when the ID is not the one it held before.
   */
  async held(ctx: EffectContext, id: number, leaseId: string): Promise<void> {
    if (this.lost && this.lost.id !== id)
      ctx.log.warn("joined with a different node ID: the previous one was taken by another node", {
        id,
        previousId: this.lost.id,
        group: ctx.layout.nodeGroup(id),
        previousGroup: ctx.layout.nodeGroup(this.lost.id),
        takenBy: this.lost.holder,
      });
    this.previous = id;
    this.lost = undefined;
    await this.idFile?.write(id, leaseId).catch((err: unknown) =>
      ctx.log.error("could not store the node ID in the state directory; a restart may not keep it", {
        id,
        file: this.idFile?.file,
        error: String(err),
      }),
    );
  }

  /** Revokes the previous process's lease (once): its member key goes with it, so the slot is free to reclaim. */
  async revokePreviousLease(ctx: EffectContext): Promise<void> {
    const lease = this.previousLease;
    if (lease === undefined) return;
    const result = await revokeLease(ctx.etcd, lease, new Date(Date.now() + ctx.callTimeoutMs));
    this.previousLease = undefined;
    if (result === "revoked")
      ctx.log.info("revoked the lease of this node's previous process, which is gone", {
        lease,
        previousId: this.previous,
      });
  }

  /** Forgets a previous ID this node cannot take back (outside the layout); the next ID it holds replaces it. */
  forget(): void {
    this.previous = undefined;
  }

  taken(id: number, holder: string | undefined): void {
    this.previous = undefined;
    this.lost = { id, holder };
  }

  reclaimOutcomeUnknown(leaseId: string): void {
    this.unsettledLease = leaseId;
  }

  /**
   * True when a reclaim under `leaseId` may still land late: its compare passes as soon as the
   * slot's member key is gone, so no other ID may be taken under this lease.
   */
  mayLandLate(leaseId: string): boolean {
    return this.unsettledLease === leaseId;
  }
}

/**
 * bootstrapId's effects: take back the node's previous ID, else claim an advertised slot, else
 * allocate a fresh ID, else wait for an advertisement.
 */
export function bootstrapIdEffects(
  ctx: EffectContext,
  slotWatch: AdvertisedSlotWatch,
  sticky = StickyIdentity.of(ctx),
): Actions {
  /** The previous ID taken back, or undefined when there is none or another node holds it. */
  const reclaimPrevious = async (scope: SessionScope): Promise<number | undefined> => {
    const previous = sticky.previousId;
    if (previous === undefined) return undefined;
    if (!ctx.layout.isNodeId(previous)) {
      ctx.log.warn("previous node ID is outside this cluster's layout; joining with another ID", {
        previousId: previous,
        capacity: ctx.layout.capacity,
      });
      sticky.forget();
      return undefined;
    }
    await sticky.revokePreviousLease(ctx);
    const leaseId = scope.leaseId;
    const result = await reclaimId(
      ctx.etcd,
      ctx.layout,
      previous,
      nodeRecord(ctx),
      leaseId,
      ctx.callTimeoutMs,
    ).catch((err: unknown) => {
      if (err instanceof OutcomeUnknownError) sticky.reclaimOutcomeUnknown(leaseId);
      throw err;
    });
    if (result.kind === "reclaimed") {
      ctx.log.info("took back the previous node ID", { id: previous, slot: result.via });
      return previous;
    }
    if (sticky.mayLandLate(leaseId)) {
      // A late copy of the unsettled reclaim would write a second member key under this lease once
      // the holder's key goes; under a revoked lease etcd refuses it ("requested lease not found").
      ctx.log.warn(
        "previous node ID is taken by another node, but an earlier reclaim of it under this lease may still reach etcd; revoking the lease to join with another ID under a new one",
        { previousId: previous, takenBy: result.holder, lease: leaseId },
      );
      sticky.taken(previous, result.holder);
      await scope.session?.revoke();
      throw new Error(
        `lease ${leaseId} revoked: a reclaim of node ID ${previous} under it may still reach etcd`,
      );
    }
    ctx.log.warn("previous node ID is taken by another node; joining with another ID", {
      previousId: previous,
      takenBy: result.holder,
    });
    sticky.taken(previous, result.holder);
    return undefined;
  };
  return {
    claimAdvertisedSlot: () =>
      ctx.scope().run(
        "claimAdvertisedSlot",
        async (scope) => {
          const id =
            (await reclaimPrevious(scope)) ??
            (await ctx.store.claimAdvertisedSlot(nodeRecord(ctx), scope.leaseId));
          if (id === undefined) return { type: "NO_SLOT_CLAIMED" };
          slotWatch.claimed();
          await sticky.held(ctx, id, scope.leaseId);
          return { type: "SLOT_CLAIMED", id };
        },
        (error) => ({ type: "ETCD_FAILED", error }),
      ),
    allocateFreshId: () =>
      ctx.scope().run(
        "allocateFreshId",
        async (scope) => {
          const result = await ctx.store.allocateFreshId(
            nodeRecord(ctx),
            scope.leaseId,
            () => scope.isCurrent,
          );
          if (result.kind === "full") return { type: "CLUSTER_FULL" };
          slotWatch.claimed();
          await sticky.held(ctx, result.id, scope.leaseId);
          return { type: "ID_ALLOCATED", id: result.id };
        },
        (error) => ({ type: "ETCD_FAILED", error }),
      ),
    awaitAdvertisedSlot: () => slotWatch.start(),
    stopAwaitingAdvertisedSlot: () => slotWatch.stop(),
    scheduleRetry: (_, { failures }) =>
      ctx.scope().sendAfter(backoffDelay(failures - 1, RETRY_BACKOFF), { type: "RETRY" }),
  };
}
