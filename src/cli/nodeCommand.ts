import { ClusterLayout, etcdConnectionOf, loadClusterConfig, resolveNodeSettings } from "../config/index.js";
import { createLogger } from "../logging.js";
import { assertEtcdReachable } from "../runtime/index.js";
import { type CommandNodeFlags, createCommandNode } from "./commandNode.js";
import { checkInspectionFlags } from "./inspectionSinks.js";
import type { NodeSettingsFlags } from "./nodeOptions.js";

export interface NodeCommandOptions extends NodeSettingsFlags, CommandNodeFlags {}

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

  const { node, stop } = createCommandNode(options, settings, layout, logger);
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
  await stop();
  logger.info("node stopped", { node: settings.nodeName });
  return 0;
}
