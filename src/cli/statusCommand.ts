import { ClusterLayout, loadClusterConfig, resolveEtcdSettings } from "../config/index.js";
import { type ClusterStatus, type PoisonedLeaderKey, readClusterStatus } from "../runtime/clusterStatus.js";
import { assertEtcdReachable, connectEtcd } from "../runtime/index.js";
import type { EtcdCommandFlags } from "./nodeOptions.js";

export interface StatusCommandOptions extends EtcdCommandFlags {
  json?: boolean;
}

const seat = (s: ClusterStatus["groupings"][number]["primary"]) =>
  s === undefined
    ? "(vacant)"
    : s.problem
      ? `(poisoned: ${s.problem})`
      : `node ${s.id} ${s.name} token ${s.token}`;

/** One line naming a poisoned leader key, its reason, lease and mod revision. */
export function poisonedKeyText(p: PoisonedLeaderKey): string {
  const lease = p.lease === "0" ? "no lease" : `lease ${p.lease}`;
  return `poisoned leader key ${p.key}: ${p.reason} (${lease}, mod revision ${p.modRevision})`;
}

/** The problems that are not poisoned leader keys (those are listed with more detail). */
export function otherProblems(status: ClusterStatus): string[] {
  const poisoned = new Set(status.poisonedLeaderKeys.map((p) => `${p.key}: ${p.reason}`));
  return status.problems.filter((p) => !poisoned.has(p));
}

/** Sorted IDs as ranges: [3, 5, 6, 7] → "3, 5..7", so a group of dead slots stays one short line. */
export function idRangesText(ids: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ids.length; ) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === (ids[j] ?? 0) + 1) j++;
    parts.push(j > i + 1 ? `${ids[i]}..${ids[j]}` : ids.slice(i, j + 1).join(", "));
    i = j + 1;
  }
  return parts.join(", ");
}

export function formatClusterStatus(status: ClusterStatus): string {
  const lines = [`${status.dbname} at revision ${status.revision}: ${status.allocated} node IDs handed out`];
  for (const g of status.groupings) {
    lines.push(`grouping ${g.grouping} (groups ${g.groups.join(", ")})`);
    lines.push(`  primary: ${seat(g.primary)}`);
    lines.push(`  backup:  ${seat(g.backup)}`);
  }
  for (const g of status.groups) {
    const members = g.members.map((m) => `${m.id} (${m.name})`).join(", ") || "none";
    lines.push(
      `group ${g.group}: members ${members}${g.missing.length ? `; missing ${idRangesText(g.missing)}` : ""}`,
    );
  }
  lines.push(`advertised failed slots: ${status.advertised.map((a) => a.id).join(", ") || "none"}`);
  for (const p of status.poisonedLeaderKeys) lines.push(poisonedKeyText(p));
  if (status.poisonedLeaderKeys.length > 0) lines.push("  (rdeebee-cluster repair --yes deletes them)");
  for (const problem of otherProblems(status)) lines.push(`bad value: ${problem}`);
  return lines.join("\n");
}

/** Reads etcd once and prints leaders, members, missing and advertised slots, and bad values. */
export async function statusCommand(
  options: StatusCommandOptions,
  out: (text: string) => void,
): Promise<void> {
  const config = loadClusterConfig(options.config);
  const { etcd, namespace } = resolveEtcdSettings(options);
  const layout = new ClusterLayout(config, { namespace });
  await assertEtcdReachable(etcd, undefined, layout.keys.idKey);
  const client = connectEtcd(etcd);
  try {
    const status = await readClusterStatus(client, layout);
    out(options.json ? JSON.stringify(status, null, 2) : formatClusterStatus(status));
  } finally {
    client.close();
  }
}
