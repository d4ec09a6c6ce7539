import type { Etcd3 } from "etcd3";
import type { ClusterLayout } from "../../src/config/index.js";
import type { ClusterNode } from "../../src/runtime/clusterNode.js";

export interface GroupingLeaders {
  grouping: number;
  primary?: number;
  backup?: number;
}

/** The node IDs in each grouping's two leader keys, read from etcd. */
export async function leadersInEtcd(client: Etcd3, layout: ClusterLayout): Promise<GroupingLeaders[]> {
  return Promise.all(
    layout.groupings.map(async (_, grouping) => {
      const keys = layout.leaderKeys(grouping);
      const [primary, backup] = await Promise.all([keys[1], keys[2]].map((k) => client.get(k).json()));
      return {
        grouping,
        primary: (primary as { id?: number } | null)?.id,
        backup: (backup as { id?: number } | null)?.id,
      };
    }),
  );
}

/** The IDs of live member keys, by group, read from etcd. */
export async function membersInEtcd(client: Etcd3, layout: ClusterLayout): Promise<Map<number, number[]>> {
  const result = new Map<number, number[]>();
  for (let group = 0; group < layout.config.groups; group++) {
    const keys = await client.getAll().prefix(layout.keys.membershipPrefix(group)).keys();
    result.set(
      group,
      keys.map((k) => Number(k.slice(layout.keys.membershipPrefix(group).length))).sort((a, b) => a - b),
    );
  }
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

/** Never more than one node per grouping in each leader role, and never one node in both. */
export function atMostOneLeaderPerSlot(nodes: ClusterNode[]): string | undefined {
  const seen = new Map<string, number>();
  for (const node of nodes) {
    const { role, grouping, id } = node.status;
    if (role !== "primary" && role !== "backup") continue;
    const key = `${grouping}/${role}`;
    const holder = seen.get(key);
    if (holder !== undefined) return `grouping ${grouping} has two ${role}s: nodes ${holder} and ${id}`;
    seen.set(key, id ?? -1);
  }
  return undefined;
}
