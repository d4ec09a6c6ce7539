import type { Etcd3 } from "etcd3";
import type { ClusterLayout } from "../../src/config/index.js";
import { decodeLeaderValue, decodeMember, listPrefix } from "../../src/etcd/index.js";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";
import { crashNode } from "../../src/runtime/testing.js";
import { waitUntil } from "./waitUntil.js";

const READ_TIMEOUT_MS = 5_000;

export interface GroupingLeaders {
  grouping: number;
  primary?: number;
  backup?: number;
}

/** The node IDs in each grouping's two leader keys, read from etcd and decoded by the runtime's codec. */
export async function leadersInEtcd(client: Etcd3, layout: ClusterLayout): Promise<GroupingLeaders[]> {
  const leaders = await listPrefix(client, layout.keys.allLeadersPrefix, { timeoutMs: READ_TIMEOUT_MS });
  return layout.groupings.map((_, grouping) => {
    const keys = layout.leaderKeys(grouping);
    const holder = (key: string) => {
      const entry = leaders.entries.get(key);
      const decoded = entry && decodeLeaderValue(layout, grouping, entry.value);
      return decoded?.ok ? decoded.value.id : undefined;
    };
    return { grouping, primary: holder(keys[1]), backup: holder(keys[2]) };
  });
}

/** The IDs of live member keys, by group, read from etcd and decoded by the runtime's codec. */
export async function membersInEtcd(client: Etcd3, layout: ClusterLayout): Promise<Map<number, number[]>> {
  const members = await listPrefix(client, layout.keys.allMembersPrefix, { timeoutMs: READ_TIMEOUT_MS });
  const result = new Map<number, number[]>();
  for (let group = 0; group < layout.config.groups; group++) result.set(group, []);
  for (const entry of members.entries.values()) {
    const member = decodeMember(layout, entry.key, entry.value);
    if (member.kind !== "member") throw new Error(`${entry.key}: not a valid member key and value`);
    result.get(member.group)?.push(member.record.id);
  }
  for (const ids of result.values()) ids.sort((a, b) => a - b);
  return result;
}

/**
 * True when every grouping that has at least two live nodes has exactly one primary and one
 * backup, on different nodes, as both etcd and the nodes' own roles say.
 */
export async function leadershipSettled(
  client: Etcd3,
  layout: ClusterLayout,
  nodes: ClusterNode[],
): Promise<boolean> {
  const live = nodes.filter((n) => n.id !== undefined && n.role !== "stopped");
  const inEtcd = await leadersInEtcd(client, layout);
  return inEtcd.every(({ grouping, primary, backup }) => {
    const inGrouping = live.filter((n) => n.status.grouping === grouping);
    const primaries = inGrouping.filter((n) => n.role === "primary");
    const backups = inGrouping.filter((n) => n.role === "backup");
    if (inGrouping.length < 2) return primaries.length <= 1 && backups.length === 0;
    return (
      primaries.length === 1 &&
      backups.length === 1 &&
      primaries[0]?.id === primary &&
      backups[0]?.id === backup &&
      primary !== backup
    );
  });
}

/** Crashes a follower among `nodes` and waits until its failed slot is advertised: the node, its ID, the advertisement. */
export async function crashFollowerUntilAdvertised(
  nodes: readonly ClusterNode[],
  client: Etcd3,
  layout: ClusterLayout,
  timeoutMs: number,
): Promise<{ victim: ClusterNode; id: number; ad: unknown }> {
  const victim = nodes.find((n) => n.role === "follower");
  const id = victim?.id;
  if (!victim || id === undefined) throw new Error("no follower with an ID to crash");
  crashNode(victim);
  const ad = await waitUntil(
    `the advertisement of slot ${id}`,
    () => client.get(layout.keys.failoverKey(id)).json(),
    timeoutMs,
  );
  return { victim, id, ad };
}
