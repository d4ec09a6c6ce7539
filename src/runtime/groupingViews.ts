import {
  combineLatest,
  distinctUntilChanged,
  map,
  type Observable,
  of,
  shareReplay,
  switchMap,
  tap,
  timer,
} from "rxjs";
import type { ClusterLayout } from "../config/index.js";
import { idHighWaterMark } from "../etcd/codec.js";
import {
  classifyKey,
  decodeFailoverAd,
  decodeLeaderValue,
  decodeMember,
  type NodeRecord,
  type PrefixSnapshot,
} from "../etcd/index.js";
import type { Logger } from "../logging.js";

export interface LeaderView {
  /** The node holding the seat; undefined when the key is poisoned (see `problem`). */
  record?: NodeRecord;
  /** Why the value does not name a node of this grouping; the seat still counts as held. */
  problem?: string;
  token: number;
  modRevision: number;
  /** The lease the key is bound to; "0" for none. */
  lease: string;
}

export interface LeadersSnapshot {
  revision: number;
  primary?: LeaderView;
  backup?: LeaderView;
}

/** A leader key's view; its value judged by the one rule for leader values, `decodeLeaderValue`. */
function decodeLeader(
  snapshot: PrefixSnapshot,
  layout: ClusterLayout,
  grouping: number,
  key: string,
): LeaderView | undefined {
  const entry = snapshot.entries.get(key);
  if (!entry) return undefined;
  const seat = { token: entry.createRevision, modRevision: entry.modRevision, lease: entry.lease };
  const decoded = decodeLeaderValue(layout, grouping, entry.value);
  return decoded.ok ? { ...seat, record: decoded.value } : { ...seat, problem: decoded.problem };
}

/**
 * The primary and backup found in a snapshot of a grouping's leader keys. A poisoned key counts as
 * held, not vacant: campaigning for a key that exists would only fail again and again.
 */
export function leadersOf(
  snapshot: PrefixSnapshot,
  layout: ClusterLayout,
  grouping: number,
): LeadersSnapshot {
  const keys = layout.leaderKeys(grouping);
  return {
    revision: snapshot.revision,
    primary: decodeLeader(snapshot, layout, grouping, keys[1]),
    backup: decodeLeader(snapshot, layout, grouping, keys[2]),
  };
}

/** A member key's record and the lease it is bound to: one ID under another lease is another holder. */
export interface MemberView extends NodeRecord {
  lease: string;
}

/** Live members of each group of the grouping, by group, sorted by ID. */
export type MembersByGroup = ReadonlyMap<number, readonly NodeRecord[]>;

/** The same, with each member key's lease. */
export type MemberViewsByGroup = ReadonlyMap<number, readonly MemberView[]>;

/** The member records of one group's snapshot; keys or values that do not belong are logged and left out. */
function membersOf(
  snapshot: PrefixSnapshot,
  layout: ClusterLayout,
  group: number,
  log: Logger,
): MemberView[] {
  const records: MemberView[] = [];
  for (const entry of snapshot.entries.values()) {
    const member = decodeMember(layout, entry.key, entry.value);
    if (member.kind === "badValue")
      log.warn("ignoring bad member value", { key: entry.key, problem: member.problem });
    else if (member.kind === "badKey" || member.group !== group)
      log.warn("ignoring member key outside its group's slots", { key: entry.key });
    else records.push({ ...member.record, lease: entry.lease });
  }
  return records.sort((a, b) => a.id - b.id);
}

/**
 * Groupings whose failed slots the primary of `grouping` advertises besides its own: the orphans
 * (neither leader key present) whose nearest grouping after them, in ring order, with a primary
 * key is `grouping`. Without this a grouping whose members all died would never be refilled, since
 * only a primary advertises. Two primaries that briefly both adopt one orphan are harmless: an
 * advertisement is created only while absent, and a claim takes it in one transaction.
 */
export function adoptedOrphans(leaders: PrefixSnapshot, layout: ClusterLayout, grouping: number): number[] {
  const count = layout.groupings.length;
  const hasPrimary = new Set<number>();
  const hasAnyLeader = new Set<number>();
  for (const key of leaders.entries.keys()) {
    const name = classifyKey(layout, key);
    if (name.kind !== "leader") continue;
    hasAnyLeader.add(name.grouping);
    if (name.seat === 1) hasPrimary.add(name.grouping);
  }
  const adopted: number[] = [];
  for (let step = 1; step < count; step++) {
    const k = (grouping - step + count) % count;
    if (hasPrimary.has(k)) break;
    if (!hasAnyLeader.has(k)) adopted.push(k);
  }
  return adopted.sort((a, b) => a - b);
}

/**
 * How long a slot below the high-water mark that this view never saw with a member must stay
 * empty before it counts as failed: a fresh ID's ticket comes a round trip before its claim, so a
 * primary elected during formation would otherwise advertise slots whose claims are on the way,
 * and a newcomer claiming the advertisement first costs the ticket holder another ticket. Only
 * burnt tickets (a lost reply) and slots that died before this view began wait for it.
 */
export const UNSEEN_SLOT_GRACE_MS = 2_000;

/** Per grouping membership: the slots seen with a member, and since when each never-seen slot has been empty. */
class UnseenSlotGrace {
  private readonly seenLive = new Set<number>();
  private readonly emptySince = new Map<number, number>();

  sawLive(live: Iterable<number>): void {
    for (const id of live) {
      this.seenLive.add(id);
      this.emptySince.delete(id);
    }
  }

  failed(id: number, now: number): boolean {
    if (this.seenLive.has(id)) return true;
    const since = this.emptySince.get(id) ?? now;
    this.emptySince.set(id, since);
    return now - since >= UNSEEN_SLOT_GRACE_MS;
  }
}

const idsOf = (members: MemberViewsByGroup) =>
  new Set([...members.values()].flatMap((records) => records.map((r) => r.id)));

const sameIds = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((id, i) => id === b[i]);

/**
 * The etcd keys a member of one grouping reacts to, as RxJS streams: its two leader keys, the
 * members of the grouping's groups, and the slots that have failed and are not advertised yet
 * (its own and those of the orphaned groupings it adopts). Each stream is one prefix view; views
 * are shared while subscribed.
 */
export class GroupingViews {
  readonly leaders$: Observable<LeadersSnapshot>;
  readonly members$: Observable<MemberViewsByGroup>;
  /** For the primary: failed, unadvertised slots of this grouping and of the orphans it adopts. */
  readonly missingSlots$: Observable<readonly number[]>;
  private readonly groupViews = new Map<number, Observable<readonly MemberView[]>>();

  constructor(
    private readonly watch: (prefix: string) => Observable<PrefixSnapshot>,
    private readonly layout: ClusterLayout,
    grouping: number,
    private readonly log: Logger,
  ) {
    const keys = layout.keys;
    const unseenSlots = new UnseenSlotGrace();
    this.leaders$ = watch(keys.leaderPrefix(grouping)).pipe(
      map((s) => leadersOf(s, layout, grouping)),
      shareReplay({ bufferSize: 1, refCount: true }),
    );
    this.members$ = this.membersOfGroups(layout.groupsOf(grouping)).pipe(
      // Every member seen while in the grouping, so a slot that dies before this node is primary has no grace.
      tap((members) => unseenSlots.sawLive(idsOf(members))),
      shareReplay({ bufferSize: 1, refCount: true }),
    );

    const allocated$ = watch(keys.idKey).pipe(
      map((s) => {
        const entry = s.entries.get(keys.idKey);
        const kv = entry && { value: entry.value, version: entry.version };
        const { allocated, problem } = idHighWaterMark(kv, layout.capacity);
        if (problem)
          log.warn("ignoring bad node ID counter", { key: keys.idKey, value: entry?.value.slice(0, 64) });
        return allocated;
      }),
      distinctUntilChanged(),
    );
    const advertised$ = watch(keys.failoverPrefix).pipe(
      map((s) => new Set([...s.entries.values()].map((e) => decodeFailoverAd(layout, e.key, e.value)?.id))),
    );
    const advertisedGroupings$ = watch(keys.allLeadersPrefix).pipe(
      map((s) => [grouping, ...adoptedOrphans(s, layout, grouping)]),
      distinctUntilChanged(sameIds),
    );
    const live$ = advertisedGroupings$.pipe(
      switchMap((groupings) => {
        const groups = groupings.flatMap((k) => layout.groupsOf(k));
        return this.membersOfGroups(groups).pipe(map((members) => ({ groups, live: idsOf(members) })));
      }),
    );
    this.missingSlots$ = combineLatest([
      live$,
      allocated$,
      advertised$,
      timer(0, UNSEEN_SLOT_GRACE_MS / 2),
    ]).pipe(
      map(([{ groups, live }, allocated, advertised]) => {
        const now = performance.now();
        unseenSlots.sawLive(live);
        // Only IDs already handed out can have failed: the work grows with them, not the capacity.
        const missing: number[] = [];
        for (const group of groups) {
          const { first, last } = layout.idRangeOf(group);
          for (let id = first; id <= Math.min(last, allocated - 1); id++)
            if (!live.has(id) && !advertised.has(id) && unseenSlots.failed(id, now)) missing.push(id);
        }
        return missing;
      }),
      distinctUntilChanged(sameIds),
      shareReplay({ bufferSize: 1, refCount: true }),
    );
  }

  private membersOfGroups(groups: readonly number[]): Observable<MemberViewsByGroup> {
    if (groups.length === 0) return of(new Map());
    return combineLatest(groups.map((g) => this.groupView(g).pipe(map((r) => [g, r] as const)))).pipe(
      map((entries) => new Map(entries)),
    );
  }

  private groupView(group: number): Observable<readonly MemberView[]> {
    let view = this.groupViews.get(group);
    if (!view) {
      view = this.watch(this.layout.keys.membershipPrefix(group)).pipe(
        map((s) => membersOf(s, this.layout, group, this.log)),
        shareReplay({ bufferSize: 1, refCount: true }),
      );
      this.groupViews.set(group, view);
    }
    return view;
  }
}
