import { combineLatest, distinctUntilChanged, map, type Observable, shareReplay } from "rxjs";
import type { ClusterLayout } from "../config/index.js";
import type { Etcd3 } from "../etcd/index.js";
import {
  decodeCounter,
  decodeValue,
  type NodeRecord,
  nodeRecordSchema,
  type PrefixSnapshot,
  watchPrefix,
} from "../etcd/index.js";
import type { Logger } from "../logging.js";

export interface LeaderView {
  /** Undefined when the key holds a value that does not decode: held, by a node we cannot name. */
  record?: NodeRecord;
  token: number;
  lease: string;
}

export interface LeadersSnapshot {
  revision: number;
  primary?: LeaderView;
  backup?: LeaderView;
}

function decodeLeader(
  snapshot: PrefixSnapshot,
  key: string,
  eligible: (id: number) => boolean,
  log: Logger,
): LeaderView | undefined {
  const entry = snapshot.entries.get(key);
  if (!entry) return undefined;
  const decoded = decodeValue(nodeRecordSchema, entry.value);
  const seat = { token: entry.createRevision, lease: entry.lease };
  if (decoded.ok && eligible(decoded.value.id)) return { ...seat, record: decoded.value };
  if (decoded.ok) {
    log.warn("ignoring leader value naming a node outside this grouping; the seat counts as held", {
      key: entry.key,
      id: decoded.value.id,
    });
    return seat;
  }
  // Treated as held, not vacant: campaigning for a key that exists would only fail again and again.
  log.warn("ignoring bad leader value; the seat counts as held", {
    key: entry.key,
    problem: decoded.problem,
  });
  return seat;
}

/** The primary and backup found in a snapshot of a grouping's leader keys. */
export function leadersOf(
  snapshot: PrefixSnapshot,
  layout: ClusterLayout,
  grouping: number,
  log: Logger,
): LeadersSnapshot {
  const keys = layout.leaderKeys(grouping);
  const eligible = (id: number) => layout.isNodeId(id) && layout.groupingOfNode(id) === grouping;
  return {
    revision: snapshot.revision,
    primary: decodeLeader(snapshot, keys[1], eligible, log),
    backup: decodeLeader(snapshot, keys[2], eligible, log),
  };
}

/** Live members of each group of the grouping, by group, sorted by ID. */
export type MembersByGroup = ReadonlyMap<number, readonly NodeRecord[]>;

/**
 * The etcd keys a member of one grouping reacts to, as RxJS streams: its two leader keys, the
 * members of the grouping's groups, and the slots that have failed and are not advertised yet.
 * Values that do not decode are logged once per revision and treated as absent.
 */
export class GroupingViews {
  readonly leaders$: Observable<LeadersSnapshot>;
  readonly members$: Observable<MembersByGroup>;
  readonly missingSlots$: Observable<readonly number[]>;

  constructor(client: Etcd3, layout: ClusterLayout, grouping: number, log: Logger) {
    const keys = layout.keys;
    const groups = layout.groupsOf(grouping);

    this.leaders$ = watchPrefix(client, keys.leaderPrefix(grouping), log).pipe(
      map((s) => leadersOf(s, layout, grouping, log)),
      shareReplay({ bufferSize: 1, refCount: true }),
    );

    const groupMembers$ = groups.map((group) =>
      watchPrefix(client, keys.membershipPrefix(group), log).pipe(
        map((s) => {
          const records: NodeRecord[] = [];
          for (const entry of s.entries.values()) {
            const id = keys.nodeIdOf(entry.key, keys.membershipPrefix(group));
            const decoded = decodeValue(nodeRecordSchema, entry.value);
            if (id === undefined || !layout.isNodeId(id) || layout.nodeGroup(id) !== group) {
              log.warn("ignoring member key outside its group's slots", { key: entry.key });
            } else if (!decoded.ok || decoded.value.id !== id) {
              log.warn("ignoring bad member value", {
                key: entry.key,
                problem: decoded.ok ? "id differs from key" : decoded.problem,
              });
            } else records.push(decoded.value);
          }
          return [group, records.sort((a, b) => a.id - b.id)] as const;
        }),
      ),
    );
    this.members$ = combineLatest(groupMembers$).pipe(
      map((entries) => new Map(entries)),
      shareReplay({ bufferSize: 1, refCount: true }),
    );

    const allocated$ = watchPrefix(client, keys.idKey, log).pipe(
      map((s) => {
        const entry = s.entries.get(keys.idKey);
        if (!entry) return 0;
        const count = decodeCounter(entry.value, layout.capacity);
        // A bad counter counts as nothing handed out: no slot is taken for failed on its word.
        if (count === undefined)
          log.warn("ignoring bad node ID counter", { key: keys.idKey, value: entry.value.slice(0, 64) });
        return count ?? 0;
      }),
    );
    const advertised$ = watchPrefix(client, keys.failoverPrefix, log).pipe(
      map((s) => new Set([...s.entries.keys()].map((k) => keys.nodeIdOf(k, keys.failoverPrefix)))),
    );
    const slots = groups.flatMap((g) => layout.slotsOf(g));
    this.missingSlots$ = combineLatest([this.members$, allocated$, advertised$]).pipe(
      map(([members, allocated, advertised]) => {
        const live = new Set([...members.values()].flatMap((records) => records.map((r) => r.id)));
        return slots.filter((id) => id < allocated && !live.has(id) && !advertised.has(id));
      }),
      distinctUntilChanged((a, b) => a.length === b.length && a.every((id, i) => id === b[i])),
    );
  }
}
