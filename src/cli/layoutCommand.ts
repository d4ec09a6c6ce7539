import { ClusterLayout, loadClusterConfig } from "../config/index.js";

export interface LayoutOptions {
  config: string;
  json?: boolean;
}

/** Prints the layout derived from the config file, one line per group with its ID range; touches no etcd. */
export function layoutCommand(options: LayoutOptions, out: (text: string) => void): void {
  const layout = new ClusterLayout(loadClusterConfig(options.config));
  const d = layout.describe();
  if (options.json) {
    out(JSON.stringify(d, null, 2));
    return;
  }
  const lines = [
    `database ${d.dbname}: ${layout.config.groups} groups of ${layout.config.group_size}, node IDs 0..${d.capacity - 1}`,
    `id key: ${d.idKey}    failover prefix: ${d.failoverPrefix}`,
  ];
  d.groupings.forEach((groups, k) => {
    lines.push(`grouping ${k}: groups [${groups.join(", ")}]`);
    lines.push(`  leader keys:       ${d.leaderKeys[k]?.join("  ")}`);
    lines.push(`  election prefixes: ${d.electionPrefixes[k]?.join("  ")}`);
    for (const g of groups) {
      const { first, last } = layout.idRangeOf(g);
      lines.push(
        `  group ${g}: node IDs ${first}..${last}  members under ${layout.keys.membershipPrefix(g)}`,
      );
    }
  });
  out(lines.join("\n"));
}
