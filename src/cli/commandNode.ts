import type { ClusterLayout, NodeSettings } from "../config/index.js";
import { etcdConnectionOf } from "../config/index.js";
import type { Logger } from "../logging.js";
import { type ClusterNode, createClusterNode, HistoryFileWriter } from "../runtime/index.js";
import { attachLeaseWatchdog } from "../watchdog/index.js";
import { type InspectionFlags, inspectionSinks } from "./inspectionSinks.js";

/** What `node` and `serve` share: recording flags, and `--no-watchdog` (commander sets false). */
export interface CommandNodeFlags extends InspectionFlags {
  historyFile?: string;
  logLevel?: string;
  watchdog?: boolean;
}

export interface CommandNode {
  node: ClusterNode;
  /** Stops the node gracefully, then its lease watchdog (which must not revoke), then its recorders. */
  stop(): Promise<void>;
}

/**
 * The node a command runs: with its inspection sinks, its history file and, unless turned off, the
 * lease watchdog that revokes its lease the moment this process dies.
 */
export function createCommandNode(
  flags: CommandNodeFlags,
  settings: NodeSettings,
  layout: ClusterLayout,
  logger: Logger,
): CommandNode {
  const inspection = inspectionSinks(flags, settings.nodeName, logger);
  const history = flags.historyFile ? new HistoryFileWriter(flags.historyFile) : undefined;
  const node = createClusterNode({
    cluster: layout,
    settings,
    logger,
    inspect: inspection.inspect,
    history: history?.record,
  });
  const watchdog =
    flags.watchdog === false
      ? undefined
      : attachLeaseWatchdog(node, etcdConnectionOf(settings), logger, { logLevel: flags.logLevel });
  return {
    node,
    stop: async () => {
      await node.stop();
      await watchdog?.close();
      inspection.close();
      history?.close();
    },
  };
}
