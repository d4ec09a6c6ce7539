import type { ClusterLayout, NodeSettings } from "../config/index.js";
import { ConfigError, etcdConnectionOf, NODE_SETTINGS_ENV, NODE_SETTINGS_FLAGS } from "../config/index.js";
import type { Logger } from "../logging.js";
import { type ClusterNode, createClusterNode, HistoryFileWriter } from "../runtime/index.js";
import { StateDirLockedError } from "../runtime/stateDir.js";
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
 * lease watchdog that revokes its lease the moment this process dies. A state directory another
 * live process holds refuses the start here, before the watchdog, as a ConfigError naming the flag
 * (exit 2); so does an ID file in it that holds no node ID.
 */
export function createCommandNode(
  flags: CommandNodeFlags,
  settings: NodeSettings,
  layout: ClusterLayout,
  logger: Logger,
): CommandNode {
  const inspection = inspectionSinks(flags, settings.nodeName, logger);
  const history = flags.historyFile ? new HistoryFileWriter(flags.historyFile) : undefined;
  let node: ClusterNode;
  try {
    node = createClusterNode({
      cluster: layout,
      settings,
      logger,
      inspect: inspection.inspect,
      history: history?.record,
    });
  } catch (err) {
    inspection.close();
    history?.close();
    if (err instanceof StateDirLockedError)
      throw new ConfigError(`${NODE_SETTINGS_FLAGS.stateDir} (${NODE_SETTINGS_ENV.stateDir})`, [err.message]);
    throw err;
  }
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
