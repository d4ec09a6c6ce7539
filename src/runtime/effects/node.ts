import type { Office } from "../../../machines/events.js";
import type { nodeMachine } from "../../../machines/node.js";
import type { BackupSeat } from "../../etcd/index.js";
import {
  type BackoffPolicy,
  backoffDelay,
  EtcdSession,
  type FencingToken,
  monotonicNow,
} from "../../etcd/index.js";
import type { LeaderView } from "../groupingViews.js";
import { StallStepDown } from "../stallStepDown.js";
import type { AdvertisedSlotWatch } from "./bootstrapId.js";
import type { EffectContext } from "./context.js";

type Actions = NonNullable<Parameters<(typeof nodeMachine)["provide"]>[0]["actions"]>;

/** The first reconnect comes 250–500 ms after the session was lost or failed to open; each next one waits twice as long, up to a TTL. */
const RECONNECT_FIRST_MS = 500;
const LEAVE_TIMEOUT_MS = 800;

function reconnectBackoff(ctx: Pick<EffectContext, "settings">): BackoffPolicy {
  return {
    initialMs: RECONNECT_FIRST_MS,
    maxMs: Math.max(RECONNECT_FIRST_MS, ctx.settings.leaseTtlSeconds * 1000),
  };
}

/** The node machine's effects: its session, its grouping watch, and leaving the cluster. */
export function nodeEffects(ctx: EffectContext, slotWatch: AdvertisedSlotWatch): Actions {
  const reconnects: { failures: number; memberSince?: number } = { failures: 0 };
  const stepDown = new StallStepDown(ctx.layout, ctx.callTimeoutMs, ctx.timers, ctx.log, () =>
    holdCampaignsOneTtl(ctx),
  );
  return {
    openSession: () => openSession(ctx, stepDown),
    vacateOffice: (_, { id, office }) => {
      if (id !== undefined && office)
        stepDown.vacate(ctx.scope(), { grouping: ctx.layout.groupingOfNode(id), ...office });
    },
    // Jittered, so that nodes that lost their sessions together do not all come back at once, and
    // growing until the node has been a member again for a TTL, so that a restart storm on an
    // overloaded etcd (or process) is not fed lease grants at a constant rate.
    scheduleReconnect: () => {
      // Only a membership that lasted a TTL starts the backoff over: one lost right after each join
      // (a lease revoked again and again) counts as one more failure.
      const memberForMs = reconnects.memberSince === undefined ? 0 : monotonicNow() - reconnects.memberSince;
      if (memberForMs >= ctx.settings.leaseTtlSeconds * 1000) reconnects.failures = 0;
      reconnects.memberSince = undefined;
      const delayMs = backoffDelay(reconnects.failures, reconnectBackoff(ctx));
      reconnects.failures += 1;
      ctx.log.info("opening a new etcd session after a delay", {
        attempt: reconnects.failures,
        inMs: Math.round(delayMs),
      });
      ctx.timers.after(delayMs, () => ctx.send({ type: "RECONNECT" }));
    },
    abandonSession: () => {
      const scope = ctx.scope();
      const session = scope.session;
      scope.session = undefined;
      scope.end();
      // Best effort: a lease this node gave up on should not hold its keys for another TTL.
      session?.revoke().catch(() => session.abandon());
    },
    watchGrouping: (_, { id }) => {
      reconnects.memberSince ??= monotonicNow();
      ctx.grouping.start(id, ctx.scope());
    },
    unwatchGrouping: () => ctx.grouping.stop(),
    stopAwaitingAdvertisedSlot: () => slotWatch.stop(),
    leaveCluster: (_, { id, office }) => leaveCluster(ctx, id, office),
  };
}

/** As `resign()` does: one TTL in which the node campaigns for no seat. */
function holdCampaignsOneTtl(ctx: EffectContext): void {
  ctx.store.holdCampaigns(ctx.settings.leaseTtlSeconds * 1000);
}

function openSession(ctx: EffectContext, stepDown: StallStepDown): void {
  const scope = ctx.beginScope();
  const { leaseTtlSeconds: ttlSeconds, keepaliveIntervalMs } = ctx.settings;
  EtcdSession.open(ctx.etcd, { ttlSeconds, keepaliveIntervalMs }, ctx.log).then(
    (session) => {
      if (!scope.isCurrent || ctx.snapshot().status !== "active") {
        void session.revoke().catch(() => undefined);
        return;
      }
      scope.session = session;
      scope.own(
        session.health$.subscribe((health) => {
          if (health === "expiredLocally") scope.send({ type: "SESSION_EXPIRED_LOCALLY" });
          else if (health === "lost") scope.send({ type: "SESSION_LOST" });
          else {
            // A seat vacated at the deadline must be settled before the node may see its key again.
            const settling = stepDown.beforeResume(scope);
            if (!settling) scope.send({ type: "SESSION_VALID" });
            else
              void settling.then(() => {
                if (session.health === "valid") scope.send({ type: "SESSION_VALID" });
              });
          }
        }),
      );
      scope.own(session.keepaliveRoundTrips$.subscribe((ms) => ctx.keepaliveRoundTrip(ms)));
      scope.send({ type: "SESSION_OPENED", leaseId: session.leaseId });
    },
    (err) => {
      ctx.log.warn("cannot open an etcd session", { error: String(err) });
      scope.send({ type: "SESSION_FAILED", error: String(err) });
    },
  );
}

/**
 * A primary hands its office to the backup it last saw, in one transaction (falling back to
 * resigning when there is none or it changed); a backup resigns.
 */
async function leaveOffice(ctx: EffectContext, fence: FencingToken): Promise<void> {
  const session = ctx.scope().session;
  // Without a session the lease is gone or going, and its keys with it.
  if (!session) return;
  if (fence.seat !== 1) {
    await ctx.store.resign(fence, session.leaseId);
    return;
  }
  const backup = backupSeatOf(ctx.grouping.leaders$.value?.backup);
  const result = await ctx.store.handoff(fence, session.leaseId, backup);
  ctx.log.info("left the primary seat", { outcome: result.kind, token: fence.token });
}

/** The backup as the node's last view of its grouping showed it; undefined when there is none to hand to. */
function backupSeatOf(view: LeaderView | undefined): BackupSeat | undefined {
  if (!view?.record || view.lease === "0") return undefined;
  return { token: view.token, lease: view.lease, value: JSON.stringify(view.record) };
}

/** Resigns the office, deletes the member key and revokes the lease, each step bounded; then LEFT. */
function leaveCluster(ctx: EffectContext, id: number | undefined, office: Office | undefined): void {
  const scope = ctx.scope();
  const session = scope.session;
  const leave = async () => {
    if (id !== undefined && office)
      await leaveOffice(ctx, { grouping: ctx.layout.groupingOfNode(id), ...office });
    if (id !== undefined && session) await ctx.store.deregister(id, session.leaseId);
    await session?.revoke();
  };
  const timeout = new Promise<void>((resolve) => ctx.timers.after(LEAVE_TIMEOUT_MS, resolve));
  Promise.race([leave(), timeout])
    .catch((err) => ctx.log.warn("graceful leave incomplete", { error: String(err) }))
    .finally(() => {
      scope.end();
      session?.abandon();
      ctx.send({ type: "LEFT" });
    });
}
