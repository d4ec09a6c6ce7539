import type { ClusterLayout, LeaderSeat } from "../config/index.js";
import { readIdHighWaterMark } from "../etcd/clusterStore.js";
import {
  decodeFailoverAd,
  decodeLeaderValue,
  decodeMember,
  deletePoisonedLeaderKey,
  type Etcd3,
  type KeyEntry,
  type LeaderKeyRemoval,
  listPrefix,
  type NodeRecord,
  type PrefixSnapshot,
} from "../etcd/index.js";

export type { LeaderKeyRemoval } from "../etcd/index.js";

export interface SeatStatus {
  id?: number;
  name?: string;
  address?: string;
  /** The leader key's create revision: the holder's fencing token. */
  token: number;
  /** Set when the key is poisoned: its value does not name a node of the grouping. */
  problem?: string;
}

/**
 * A leader key whose value does not decode as a node record, or names a node outside its
 * grouping. Nobody holds such a seat, yet it counts as held, so nobody campaigns for it.
 */
export interface PoisonedLeaderKey {
  key: string;
  grouping: number;
  seat: LeaderSeat;
  reason: string;
  /** The lease the key is bound to, in decimal; "0" when it has none (then it never expires). */
  lease: string;
  modRevision: number;
  createRevision: number;
}

export interface ClusterStatus {
  revision: number;
  dbname: string;
  /**
   * The node-ID high-water mark (`idHighWaterMark`: `id_key`'s version, the ticket count): every
   * ID handed out is below it. A ticket whose reply was lost was never claimed, so not every ID
   * below it was handed out.
   */
  allocated: number;
  groupings: { grouping: number; groups: readonly number[]; primary?: SeatStatus; backup?: SeatStatus }[];
  groups: { group: number; members: NodeRecord[]; missing: number[] }[];
  advertised: { id: number; group?: number; advertisedBy?: number }[];
  poisonedLeaderKeys: PoisonedLeaderKey[];
  /** Every bad value found, poisoned leader keys included, as `key: reason`. */
  problems: string[];
}

export interface StatusReadOptions {
  /** Deadline of each etcd read; default 5 s. */
  timeoutMs?: number;
}

const DEFAULT_READ_TIMEOUT_MS = 5_000;

function poisonedIn(leaders: PrefixSnapshot, layout: ClusterLayout): PoisonedLeaderKey[] {
  const poisoned: PoisonedLeaderKey[] = [];
  const check = (grouping: number, seat: LeaderSeat, entry: KeyEntry | undefined) => {
    if (!entry) return;
    const decoded = decodeLeaderValue(layout, grouping, entry.value);
    if (decoded.ok) return;
    const { key, lease, modRevision, createRevision } = entry;
    poisoned.push({ key, grouping, seat, reason: decoded.problem, lease, modRevision, createRevision });
  };
  for (let grouping = 0; grouping < layout.groupingCount; grouping++) {
    const keys = layout.leaderKeys(grouping);
    check(grouping, 1, leaders.entries.get(keys[1]));
    check(grouping, 2, leaders.entries.get(keys[2]));
  }
  return poisoned;
}

/** Lists every grouping's leader keys in one read and returns the poisoned ones (for metrics and repair). */
export async function readPoisonedLeaderKeys(
  client: Etcd3,
  layout: ClusterLayout,
  options: StatusReadOptions = {},
): Promise<PoisonedLeaderKey[]> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  return poisonedIn(await listPrefix(client, layout.keys.allLeadersPrefix, { timeoutMs }), layout);
}

/** Deletes a poisoned leader key found by a status read, only if it is unchanged since (see `deletePoisonedLeaderKey`). */
export function deletePoisoned(
  client: Etcd3,
  poisoned: PoisonedLeaderKey,
  timeoutMs = DEFAULT_READ_TIMEOUT_MS,
): Promise<LeaderKeyRemoval> {
  return deletePoisonedLeaderKey(client, poisoned.key, poisoned.modRevision, timeoutMs);
}

/**
 * Reads the whole cluster from etcd at one revision: every grouping's primary and backup, every
 * group's members and missing slots (below the `id_key` high-water mark, not live: failed, stopped or
 * never handed out), the advertised failed slots and the
 * poisoned leader keys. Work and memory grow with the groups and the keys found, not the capacity.
 */
export async function readClusterStatus(
  client: Etcd3,
  layout: ClusterLayout,
  options: StatusReadOptions = {},
): Promise<ClusterStatus> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  const keys = layout.keys;
  const {
    revision,
    allocated,
    value: counterText,
    problem: counterProblem,
  } = await readIdHighWaterMark(client, layout, timeoutMs);
  const list = (prefix: string) => listPrefix(client, prefix, { timeoutMs, revision });
  const [leaders, members, ads] = await Promise.all([
    list(keys.allLeadersPrefix),
    list(keys.allMembersPrefix),
    list(keys.failoverPrefix),
  ]);
  const problems: string[] = [];
  if (counterProblem)
    problems.push(`${keys.idKey}: not a node ID counter: ${JSON.stringify(counterText?.slice(0, 40))}`);

  const poisonedLeaderKeys = poisonedIn(leaders, layout);
  for (const p of poisonedLeaderKeys) problems.push(`${p.key}: ${p.reason}`);
  const seat = (grouping: number, key: string): SeatStatus | undefined => {
    const entry = leaders.entries.get(key);
    if (!entry) return undefined;
    const decoded = decodeLeaderValue(layout, grouping, entry.value);
    return decoded.ok
      ? { ...decoded.value, token: entry.createRevision }
      : { token: entry.createRevision, problem: decoded.problem };
  };

  const membersByGroup = new Map<number, NodeRecord[]>();
  for (const entry of members.entries.values()) {
    const member = decodeMember(layout, entry.key, entry.value);
    if (member.kind === "badKey") problems.push(`${entry.key}: not a member key of this cluster's slots`);
    else if (member.kind === "badValue") problems.push(`${entry.key}: ${member.problem}`);
    else membersByGroup.set(member.group, [...(membersByGroup.get(member.group) ?? []), member.record]);
  }

  const groups = Array.from({ length: layout.config.groups }, (_, group) => {
    const live = (membersByGroup.get(group) ?? []).sort((a, b) => a.id - b.id);
    const liveIds = new Set(live.map((m) => m.id));
    const { first: firstId, last: lastId } = layout.idRangeOf(group);
    const missing: number[] = [];
    // Only IDs below the high-water mark can be missing: this loop stops there, not at the capacity.
    for (let id = firstId; id <= lastId && id < allocated; id++) if (!liveIds.has(id)) missing.push(id);
    return { group, members: live, missing };
  });

  const advertised = [...ads.entries.values()].flatMap((entry) => {
    const found = decodeFailoverAd(layout, entry.key, entry.value);
    if (!found) {
      problems.push(`${entry.key}: not a node ID`);
      return [];
    }
    const { id, ad } = found;
    if (!ad.ok) problems.push(`${entry.key}: ${ad.problem}`);
    return [{ id, group: layout.nodeGroup(id), advertisedBy: ad.ok ? ad.value.advertisedBy : undefined }];
  });

  return {
    revision,
    dbname: layout.config.dbname,
    allocated,
    groupings: layout.groupings.map((groupsOf, grouping) => {
      const leaderKeys = layout.leaderKeys(grouping);
      return {
        grouping,
        groups: groupsOf,
        primary: seat(grouping, leaderKeys[1]),
        backup: seat(grouping, leaderKeys[2]),
      };
    }),
    groups,
    advertised: advertised.sort((a, b) => a.id - b.id),
    poisonedLeaderKeys,
    problems,
  };
}
