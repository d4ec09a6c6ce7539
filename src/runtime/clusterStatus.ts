import type { ClusterLayout, LeaderSlot } from "../config/index.js";
import type { Etcd3, KeyEntry, PrefixSnapshot } from "../etcd/index.js";
import {
  decodeCounter,
  decodeValue,
  deletePoisonedLeaderKey,
  failoverAdSchema,
  type LeaderKeyRemoval,
  type NodeRecord,
  nodeRecordSchema,
  snapshotOf,
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
  slot: LeaderSlot;
  reason: string;
  /** The lease the key is bound to, in decimal; "0" when it has none (then it never expires). */
  lease: string;
  modRevision: number;
  createRevision: number;
}

export interface ClusterStatus {
  revision: number;
  dbname: string;
  /** IDs handed out so far (the `id_key` counter). */
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

const deadline = (timeoutMs: number) => ({ deadline: new Date(Date.now() + timeoutMs) });

/**
 * Why the value of grouping `grouping`'s leader key is poisoned, or undefined when it names a node
 * of that grouping. The one rule for "poisoned", for status, repair and metrics.
 */
export function leaderValueProblem(
  layout: ClusterLayout,
  grouping: number,
  value: string,
): string | undefined {
  const decoded = decodeValue(nodeRecordSchema, value);
  if (!decoded.ok) return decoded.problem;
  const { id } = decoded.value;
  if (!layout.isNodeId(id) || layout.groupingOfNode(id) !== grouping)
    return `names node ${id}, which is not in this grouping`;
  return undefined;
}

function poisonedIn(leaders: PrefixSnapshot, layout: ClusterLayout): PoisonedLeaderKey[] {
  const poisoned: PoisonedLeaderKey[] = [];
  const check = (grouping: number, slot: LeaderSlot, entry: KeyEntry | undefined) => {
    if (!entry) return;
    const reason = leaderValueProblem(layout, grouping, entry.value);
    if (reason === undefined) return;
    const { key, lease, modRevision, createRevision } = entry;
    poisoned.push({ key, grouping, slot, reason, lease, modRevision, createRevision });
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
  const prefix = layout.keys.allLeadersPrefix;
  const listed = await client
    .getAll()
    .prefix(prefix)
    .options(deadline(options.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS))
    .exec();
  return poisonedIn(snapshotOf(prefix, listed), layout);
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
 * group's members and missing slots (handed out, not live), the advertised failed slots and the
 * poisoned leader keys. Work and memory grow with the groups and the keys found, not the capacity.
 */
export async function readClusterStatus(
  client: Etcd3,
  layout: ClusterLayout,
  options: StatusReadOptions = {},
): Promise<ClusterStatus> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  const keys = layout.keys;
  const first = await client.get(keys.idKey).options(deadline(timeoutMs)).exec();
  const revision = Number(first.header.revision);
  const list = async (prefix: string) =>
    snapshotOf(
      prefix,
      await client.getAll().prefix(prefix).revision(String(revision)).options(deadline(timeoutMs)).exec(),
    );
  const [leaders, members, ads] = await Promise.all([
    list(keys.allLeadersPrefix),
    list(keys.allMembersPrefix),
    list(keys.failoverPrefix),
  ]);
  const problems: string[] = [];
  const counterText = first.kvs[0]?.value.toString();
  const counter = counterText === undefined ? 0 : decodeCounter(counterText, layout.capacity);
  if (counter === undefined)
    problems.push(`${keys.idKey}: not a node ID counter: ${JSON.stringify(counterText?.slice(0, 40))}`);
  const allocated = Math.min(counter ?? 0, layout.capacity);

  const poisonedLeaderKeys = poisonedIn(leaders, layout);
  const poisonByKey = new Map(poisonedLeaderKeys.map((p) => [p.key, p]));
  for (const p of poisonedLeaderKeys) problems.push(`${p.key}: ${p.reason}`);
  const seat = (key: string): SeatStatus | undefined => {
    const entry = leaders.entries.get(key);
    if (!entry) return undefined;
    const poison = poisonByKey.get(key);
    if (poison) return { token: entry.createRevision, problem: poison.reason };
    // Not poisoned, so the value decodes.
    const decoded = decodeValue(nodeRecordSchema, entry.value);
    return { ...(decoded.ok ? decoded.value : {}), token: entry.createRevision };
  };

  const membersByGroup = new Map<number, NodeRecord[]>();
  for (const entry of members.entries.values()) {
    const slot = /^(0|[1-9]\d{0,8})\/(0|[1-9]\d{0,8})$/.exec(entry.key.slice(keys.allMembersPrefix.length));
    const group = Number(slot?.[1]);
    const id = Number(slot?.[2]);
    const decoded = decodeValue(nodeRecordSchema, entry.value);
    if (!slot || !layout.isNodeId(id) || layout.nodeGroup(id) !== group)
      problems.push(`${entry.key}: not a member key of this cluster's slots`);
    else if (!decoded.ok || decoded.value.id !== id)
      problems.push(`${entry.key}: ${decoded.ok ? "id differs from key" : decoded.problem}`);
    else {
      const live = membersByGroup.get(group) ?? [];
      live.push(decoded.value);
      membersByGroup.set(group, live);
    }
  }

  const groups = Array.from({ length: layout.config.groups }, (_, group) => {
    const live = (membersByGroup.get(group) ?? []).sort((a, b) => a.id - b.id);
    const liveIds = new Set(live.map((m) => m.id));
    const { first: firstId, last: lastId } = layout.idRangeOf(group);
    const missing: number[] = [];
    // Only IDs handed out can be missing: this loop stops at the counter, not at the capacity.
    for (let id = firstId; id <= lastId && id < allocated; id++) if (!liveIds.has(id)) missing.push(id);
    return { group, members: live, missing };
  });

  const advertised = [...ads.entries.values()].flatMap((entry) => {
    const id = keys.nodeIdOf(entry.key, keys.failoverPrefix);
    if (id === undefined || !layout.isNodeId(id)) {
      problems.push(`${entry.key}: not a node ID`);
      return [];
    }
    const decoded = decodeValue(failoverAdSchema, entry.value);
    if (!decoded.ok) problems.push(`${entry.key}: ${decoded.problem}`);
    return [
      { id, group: layout.nodeGroup(id), advertisedBy: decoded.ok ? decoded.value.advertisedBy : undefined },
    ];
  });

  return {
    revision,
    dbname: layout.config.dbname,
    allocated,
    groupings: layout.groupings.map((groupsOf, grouping) => {
      const leaderKeys = layout.leaderKeys(grouping);
      return { grouping, groups: groupsOf, primary: seat(leaderKeys[1]), backup: seat(leaderKeys[2]) };
    }),
    groups,
    advertised: advertised.sort((a, b) => a.id - b.id),
    poisonedLeaderKeys,
    problems,
  };
}
