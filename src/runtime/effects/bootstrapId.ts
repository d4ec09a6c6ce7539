import { filter, type Subscription } from "rxjs";
import type { bootstrapIdMachine } from "../../../machines/bootstrapId.js";
import { backoffDelay } from "../../etcd/index.js";
import { type EffectContext, nodeRecord } from "./context.js";

type Actions = NonNullable<Parameters<(typeof bootstrapIdMachine)["provide"]>[0]["actions"]>;

const RETRY_BACKOFF = { initialMs: 100, maxMs: 2_000 };

/** While the cluster is full: a view of the advertisements, telling the node when one appears. */
export class AdvertisedSlotWatch {
  private subscription: Subscription | undefined;

  constructor(private readonly ctx: EffectContext) {}

  start(): void {
    const scope = this.ctx.scope();
    this.ctx.log.info("cluster is full; waiting for an advertised failed slot");
    this.stop();
    this.subscription = this.ctx
      .watch(this.ctx.layout.keys.failoverPrefix)
      .pipe(filter((ads) => ads.entries.size > 0))
      .subscribe({
        next: () => scope.send({ type: "SLOT_ADVERTISED" }),
        error: (err) => this.ctx.log.error("failover watch failed", { error: String(err) }),
      });
    // A shutdown ends the scope before it closes the client the view runs on.
    scope.own(this.subscription);
  }

  stop(): void {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
  }
}

/** bootstrapId's effects: claim an advertised slot, else allocate a fresh ID, else wait for an advertisement. */
export function bootstrapIdEffects(ctx: EffectContext, slotWatch: AdvertisedSlotWatch): Actions {
  return {
    claimAdvertisedSlot: () =>
      ctx.scope().run(
        "claimAdvertisedSlot",
        async (scope) => {
          const id = await ctx.store.claimAdvertisedSlot(nodeRecord(ctx), scope.leaseId);
          return id === undefined ? { type: "NO_SLOT_CLAIMED" } : { type: "SLOT_CLAIMED", id };
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
          return result.kind === "full" ? { type: "CLUSTER_FULL" } : { type: "ID_ALLOCATED", id: result.id };
        },
        (error) => ({ type: "ETCD_FAILED", error }),
      ),
    awaitAdvertisedSlot: () => slotWatch.start(),
    stopAwaitingAdvertisedSlot: () => slotWatch.stop(),
    scheduleRetry: (_, { failures }) =>
      ctx.scope().sendAfter(backoffDelay(failures - 1, RETRY_BACKOFF), { type: "RETRY" }),
  };
}
