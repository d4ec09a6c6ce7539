import { ClusterLayout, loadClusterConfig, resolveEtcdEndpoints } from "../config/index.js";
import { type ClusterStatus, readClusterStatus } from "../runtime/clusterStatus.js";
import { assertEtcdReachable, connectEtcd } from "../runtime/index.js";

export interface StatusCommandOptions {
  config: string;
  etcd?: string;
  json?: boolean;
}

const seat = (s: ClusterStatus["groupings"][number]["primary"]) =>
  s === undefined
    ? "(vacant)"
    : s.problem
      ? `(bad value: ${s.problem})`
      : `node ${s.id} ${s.name} token ${s.token}`;

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
      `group ${g.group}: members ${members}${g.missing.length ? `; missing ${g.missing.join(", ")}` : ""}`,
    );
  }
  lines.push(`advertised failed slots: ${status.advertised.map((a) => a.id).join(", ") || "none"}`);
  for (const problem of status.problems) lines.push(`bad value: ${problem}`);
  return lines.join("\n");
}

/** Reads etcd once and prints leaders, members, missing and advertised slots. */
export async function statusCommand(
  options: StatusCommandOptions,
  out: (text: string) => void,
): Promise<void> {
  const layout = new ClusterLayout(loadClusterConfig(options.config));
  const etcdEndpoints = resolveEtcdEndpoints(options.etcd);
  await assertEtcdReachable(etcdEndpoints);
  const client = connectEtcd(etcdEndpoints);
  try {
    const status = await readClusterStatus(client, layout);
    out(options.json ? JSON.stringify(status, null, 2) : formatClusterStatus(status));
  } finally {
    client.close();
  }
}
