import {
  BehaviorSubject,
  distinctUntilChanged,
  map,
  type Observable,
  of,
  Subscription,
  switchMap,
  take,
} from "rxjs";
import type { LeadersChanged, SeatHolder } from "../../machines/events.js";
import type { ClusterLayout } from "../config/index.js";
import { type Etcd3, listPrefix, type PrefixSnapshot } from "../etcd/index.js";
import type { Logger } from "../logging.js";
import {
  GroupingViews,
  type LeadersSnapshot,
  type LeaderView,
  leadersOf,
  type MembersByGroup,
  type MemberViewsByGroup,
} from "./groupingViews.js";
import type { NodeRole } from "./roles.js";
import type { SessionScope } from "./sessionScope.js";

export interface GroupingEventsOptions {
  layout: ClusterLayout;
  log: Logger;
  etcd: Etcd3;
  /** A prefix view (see `watchPrefix`). */
  watch: (prefix: string) => Observable<PrefixSnapshot>;
  callTimeoutMs: number;
  /** The node's role: only the primary follows the failed slots. */
  role$: Observable<NodeRole>;
}

/** A leader key as the machines see it: `mine` when it is bound to this session's lease. */
function seatOf(view: LeaderView | undefined, leaseId: string | undefined): SeatHolder | undefined {
  if (!view) return undefined;
  const seat: SeatHolder = { token: view.token, mine: view.lease === leaseId };
  if (view.record) seat.nodeId = view.record.id;
  // Every leader key this runtime writes has a lease; a poisoned one without is nobody's.
  if (view.problem !== undefined && view.lease === "0") seat.poisonRevision = view.modRevision;
  return seat;
}

/** LEADERS_CHANGED for a view of the two leader keys, as seen from the session of `scope`. */
export function leadersChanged(leaders: LeadersSnapshot, scope: SessionScope): LeadersChanged {
  const leaseId = scope.session?.leaseId;
  return {
    type: "LEADERS_CHANGED",
    primary: seatOf(leaders.primary, leaseId),
    backup: seatOf(leaders.backup, leaseId),
  };
}

/** The public view of the members: their records, as written in their keys. */
function withoutLeases(members: MemberViewsByGroup): MembersByGroup {
  return new Map(
    [...members].map(([group, views]) => [group, views.map(({ lease: _, ...record }) => record)]),
  );
}

/**
 * The adapter from a member's etcd views to node machine events: each view of its grouping's
 * leader keys becomes LEADERS_CHANGED (unless older than the session's own last write), the failed
 * and unadvertised slots become MEMBERS_CHANGED while the node is primary, and its own member key
 * vanishing becomes SESSION_LOST. It also keeps the latest leaders and members for the public API.
 */
export class GroupingEvents {
  readonly leaders$ = new BehaviorSubject<LeadersSnapshot | undefined>(undefined);
  readonly members$ = new BehaviorSubject<MembersByGroup>(new Map());
  private watching: { views: GroupingViews; grouping: number; subscription: Subscription } | undefined;

  constructor(private readonly options: GroupingEventsOptions) {}

  /** Follows the grouping of member `id`; its events go to the node through `scope`. */
  start(id: number, scope: SessionScope): void {
    this.stop();
    const { layout, log, watch, role$ } = this.options;
    const grouping = layout.groupingOfNode(id);
    const group = layout.nodeGroup(id);
    const views = new GroupingViews(watch, layout, grouping, log);
    const onError = (err: unknown) => log.error("grouping view failed", { error: String(err) });
    const subscription = new Subscription();
    subscription.add(
      views.leaders$.subscribe({
        next: (leaders) => {
          this.reportPoisonedSeats(grouping, leaders);
          this.leaders$.next(leaders);
          if (leaders.revision >= scope.lastWriteRevision) scope.send(leadersChanged(leaders, scope));
        },
        error: onError,
      }),
    );
    subscription.add(
      views.members$.subscribe({
        next: (members) => {
          this.members$.next(withoutLeases(members));
          // The views are read after this node's member key was written, so its absence means the
          // key was deleted under a live lease (an operator, a repair): the identity is gone. The
          // same ID under another lease is another node's key (deleted and at once re-created).
          const own = members.get(group)?.find((member) => member.id === id);
          if (!own || own.lease !== scope.session?.leaseId) {
            const key = layout.keys.memberKey(group, id);
            if (own)
              log.warn("own member key is held under another lease; renewing the session", {
                key,
                lease: own.lease,
              });
            else log.warn("own member key is gone; renewing the session", { key });
            scope.send({ type: "SESSION_LOST" });
          }
        },
        error: onError,
      }),
    );
    // Only the primary advertises, so only the primary watches the ID counter and the
    // advertisements: with every member watching them, each new ID reached all n nodes.
    subscription.add(
      role$
        .pipe(
          map((role) => role === "primary"),
          distinctUntilChanged(),
          switchMap((primary) => (primary ? views.missingSlots$ : of<readonly number[]>([]))),
        )
        .subscribe({ next: (missing) => scope.send({ type: "MEMBERS_CHANGED", missing }), error: onError }),
    );
    this.watching = { views, grouping, subscription };
  }

  stop(): void {
    this.watching?.subscription.unsubscribe();
    this.watching = undefined;
  }

  /** A fresh read of the leader keys (not a possibly lagging watch), for decisions after a wait. */
  readLeaders(scope: SessionScope): void {
    const { etcd, layout, callTimeoutMs } = this.options;
    scope.run(
      "readLeaders",
      async () => {
        const grouping = this.watchedGrouping();
        const snapshot = await listPrefix(etcd, layout.keys.leaderPrefix(grouping), {
          timeoutMs: callTimeoutMs,
        });
        return leadersChanged(leadersOf(snapshot, layout, grouping), scope);
      },
      () => ({ type: "RETRY" }),
    );
  }

  /** The failed, unadvertised slots as they are now, once, for an advertiser that just started. */
  readMissingSlots(scope: SessionScope): void {
    const watching = this.watching;
    if (!watching) return;
    watching.subscription.add(
      watching.views.missingSlots$
        .pipe(take(1))
        .subscribe((missing) => scope.send({ type: "MEMBERS_CHANGED", missing })),
    );
  }

  private watchedGrouping(): number {
    if (!this.watching) throw new Error("not watching a grouping: the node is not a member");
    return this.watching.grouping;
  }

  /** Says so loudly, on every view of the seats (at least once per re-read interval). */
  private reportPoisonedSeats(grouping: number, leaders: LeadersSnapshot): void {
    for (const [seat, view] of [
      [1, leaders.primary],
      [2, leaders.backup],
    ] as const) {
      if (view?.problem === undefined) continue;
      this.options.log.error("poisoned leader key: the seat counts as held until it is removed", {
        key: this.options.layout.keys.leaderKey(grouping, seat),
        problem: view.problem,
        lease: view.lease,
        modRevision: view.modRevision,
        remedy:
          view.lease === "0"
            ? "the grouping's other leader removes it; or run `rdeebee-cluster repair --yes`"
            : "it goes when its lease expires; or run `rdeebee-cluster repair --yes`",
      });
    }
  }
}
