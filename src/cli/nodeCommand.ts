import { ClusterLayout, etcdConnectionOf, loadClusterConfig, resolveNodeSettings } from "../config/index.js";
import { createLogger } from "../logging.js";
import { assertEtcdReachable, createClusterNode, HistoryFileWriter } from "../runtime/index.js";
import { attachLeaseWatchdog } from "../watchdog/index.js";
import { checkInspectionFlags, type InspectionFlags, inspectionSinks } from "./inspectionSinks.js";
import type { NodeSettingsFlags } from "./nodeOptions.js";

export interface NodeCommandOptions extends NodeSettingsFlags, InspectionFlags {
  logLevel?: string;
  historyFile?: string;
  /** `--no-watchdog` sets false: no watchdog process revoking the lease the moment this process dies. */
  watchdog?: boolean;
}

/**
 * Runs one cluster node until SIGTERM or SIGINT, then stops it gracefully (resign, deregister,
 * revoke) and resolves with exit code 0. Logs are JSON lines on stderr.
 */
export async function nodeCommand(options: NodeCommandOptions): Promise<number> {
  checkInspectionFlags(options);
  const config = loadClusterConfig(options.config);
  const settings = resolveNodeSettings(options);
  const layout = new ClusterLayout(config, { namespace: settings.namespace });
  const logger = createLogger({ level: options.logLevel });
  await assertEtcdReachable(etcdConnectionOf(settings), undefined, layout.keys.idKey);

  const inspection = inspectionSinks(options, settings.nodeName, logger);
  const history = options.historyFile ? new HistoryFileWriter(options.historyFile) : undefined;
  const node = createClusterNode({
    cluster: layout,
    settings,
    logger,
    inspect: inspection.inspect,
    history: history?.record,
  });
  const watchdog =
    options.watchdog === false
      ? undefined
      : attachLeaseWatchdog(node, etcdConnectionOf(settings), logger, {
          logLevel: options.logLevel,
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
  await watchdog?.close();
  inspection.close();
  history?.close();
  logger.info("node stopped", { node: settings.nodeName });
  return 0;
}
