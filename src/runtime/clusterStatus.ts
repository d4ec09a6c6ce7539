import type { ClusterLayout } from "../config/index.js";
import type { Etcd3 } from "../etcd/index.js";
import {
  decodeCounter,
  decodeValue,
  failoverAdSchema,
  type NodeRecord,
  nodeRecordSchema,
  snapshotOf,
} from "../etcd/index.js";

export interface SeatStatus {
  id?: number;
  name?: string;
  address?: string;
  /** The leader key's create revision: the holder's fencing token. */
  token: number;
  /** Set when the key's value does not decode. */
  problem?: string;
}

export interface ClusterStatus {
  revision: number;
  dbname: string;
  /** IDs handed out so far (the `id_key` counter). */
  allocated: number;
  groupings: { grouping: number; groups: readonly number[]; primary?: SeatStatus; backup?: SeatStatus }[];
  groups: { group: number; members: NodeRecord[]; missing: number[] }[];
  advertised: { id: number; group?: number; advertisedBy?: number }[];
  problems: string[];
}

/**
 * Reads the whole cluster from etcd at one revision: every grouping's primary and backup, every
 * group's members and missing slots (handed out, not live), and the advertised failed slots.
 */
export async function readClusterStatus(client: Etcd3, layout: ClusterLayout): Promise<ClusterStatus> {
  const keys = layout.keys;
  const first = await client.get(keys.idKey).exec();
  const revision = Number(first.header.revision);
  const list = async (prefix: string) =>
    snapshotOf(prefix, await client.getAll().prefix(prefix).revision(String(revision)).exec());
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

  const seat = (key: string): SeatStatus | undefined => {
    const entry = leaders.entries.get(key);
    if (!entry) return undefined;
    const decoded = decodeValue(nodeRecordSchema, entry.value);
    if (!decoded.ok) {
      problems.push(`${key}: ${decoded.problem}`);
      return { token: entry.createRevision, problem: decoded.problem };
    }
    return { ...decoded.value, token: entry.createRevision };
  };

  const groups = Array.from({ length: layout.config.groups }, (_, group) => {
    const prefix = keys.membershipPrefix(group);
    const live: NodeRecord[] = [];
    for (const entry of members.entries.values()) {
      if (!entry.key.startsWith(prefix)) continue;
      const decoded = decodeValue(nodeRecordSchema, entry.value);
      if (decoded.ok && String(decoded.value.id) === entry.key.slice(prefix.length)) live.push(decoded.value);
      else problems.push(`${entry.key}: ${decoded.ok ? "id differs from key" : decoded.problem}`);
    }
    live.sort((a, b) => a.id - b.id);
    const liveIds = new Set(live.map((m) => m.id));
    const missing = layout.slotsOf(group).filter((id) => id < allocated && !liveIds.has(id));
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
    problems,
  };
}
