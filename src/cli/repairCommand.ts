import { ClusterLayout, loadClusterConfig, resolveEtcdSettings } from "../config/index.js";
import { deletePoisoned, type LeaderKeyRemoval, readClusterStatus } from "../runtime/clusterStatus.js";
import { assertEtcdReachable, connectEtcd } from "../runtime/index.js";
import type { EtcdCommandFlags } from "./nodeOptions.js";
import { otherProblems, poisonedKeyText } from "./statusCommand.js";

export interface RepairCommandOptions extends EtcdCommandFlags {
  yes?: boolean;
}

const DELETE_TIMEOUT_MS = 5_000;

function removalText(removal: LeaderKeyRemoval): string {
  switch (removal.kind) {
    case "removed":
      return `  deleted (revision ${removal.revision})`;
    case "gone":
      return "  already gone";
    case "rewritten":
      return `  left alone: written again since it was read (mod revision ${removal.modRevision}); run repair again`;
  }
}

/**
 * Lists the poisoned leader keys and the other bad values `status` reports; with `yes`, deletes
 * each poisoned leader key if it is unchanged since it was read. Valid leader keys are never
 * touched, nor are other bad values (they are harmless to the runtime, which ignores them).
 * Resolves with the exit code: 1 when a deletion failed, else 0.
 */
export async function repairCommand(
  options: RepairCommandOptions,
  out: (text: string) => void,
): Promise<number> {
  const config = loadClusterConfig(options.config);
  const { etcd, namespace } = resolveEtcdSettings(options);
  const layout = new ClusterLayout(config, { namespace });
  await assertEtcdReachable(etcd, undefined, layout.keys.idKey);
  const client = connectEtcd(etcd);
  let failed = 0;
  try {
    const status = await readClusterStatus(client, layout);
    const poisoned = status.poisonedLeaderKeys;
    out(`${status.dbname} at revision ${status.revision}: ${poisoned.length} poisoned leader key(s)`);
    for (const p of poisoned) {
      out(poisonedKeyText(p));
      if (!options.yes) {
        out(`  would delete it if its mod revision is still ${p.modRevision} (run with --yes)`);
        continue;
      }
      try {
        out(removalText(await deletePoisoned(client, p, DELETE_TIMEOUT_MS)));
      } catch (err) {
        failed += 1;
        out(`  not deleted: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    for (const problem of otherProblems(status)) out(`bad value (not repaired): ${problem}`);
  } finally {
    client.close();
  }
  return failed > 0 ? 1 : 0;
}
