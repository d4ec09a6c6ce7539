import { ClusterLayout, loadClusterConfig, resolveNodeSettings } from "../config/index.js";
import { createLogger } from "../logging.js";
import { assertEtcdReachable, createClusterNode, HistoryFileWriter } from "../runtime/index.js";
import { type InspectionFlags, inspectionSinks } from "./inspectionSinks.js";
import type { NodeSettingsFlags } from "./nodeOptions.js";

export interface NodeCommandOptions extends NodeSettingsFlags, InspectionFlags {
  logLevel?: string;
  historyFile?: string;
}

/**
 * Runs one cluster node until SIGTERM or SIGINT, then stops it gracefully (resign, deregister,
 * revoke) and resolves with exit code 0. Logs are JSON lines on stderr.
 */
export async function nodeCommand(options: NodeCommandOptions): Promise<number> {
  const layout = new ClusterLayout(loadClusterConfig(options.config));
  const settings = resolveNodeSettings(options);
  const logger = createLogger({ level: options.logLevel });
  await assertEtcdReachable(settings.etcdEndpoints);

  const inspection = inspectionSinks(options, settings.nodeName);
  const history = options.historyFile ? new HistoryFileWriter(options.historyFile) : undefined;
  const node = createClusterNode({
    cluster: layout,
    settings,
    logger,
    inspect: inspection.inspect,
    history: history?.record,
  });
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  logger.info("starting node", {
    node: settings.nodeName,
    etcd: settings.etcdEndpoints,
    ttl: settings.leaseTtlSeconds,
  });
  void node.start().catch(() => undefined);
  const signal = await signalled;
  logger.info("stopping node", { node: settings.nodeName, signal });
  await node.stop();
  inspection.close();
  history?.close();
  logger.info("node stopped", { node: settings.nodeName });
  return 0;
}
