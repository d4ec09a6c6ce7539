import {
  ClusterLayout,
  ConfigError,
  etcdConnectionOf,
  loadClusterConfig,
  NODE_SETTINGS_ENV,
  resolveNodeSettings,
} from "../config/index.js";
import { createLogger } from "../logging.js";
import { assertEtcdReachable } from "../runtime/index.js";
import { createServer, DEFAULT_HOST, listenHttp } from "../server/httpServer.js";
import { KvStore } from "../server/kvStore.js";
import type { ServerMetrics } from "../server/metrics.js";
import { type CommandNodeFlags, createCommandNode } from "./commandNode.js";
import { checkInspectionFlags } from "./inspectionSinks.js";
import type { NodeSettingsFlags } from "./nodeOptions.js";

export interface ServeCommandOptions extends NodeSettingsFlags, CommandNodeFlags {
  port: string;
  host?: string;
}

function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535)
    throw new ConfigError("--port", [`port must be a whole number from 0 to 65535, got "${text}"`]);
  return Number(text);
}

/** Resolves with the first of SIGTERM or SIGINT, removing both listeners. */
function nextStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off("SIGTERM", on);
      process.off("SIGINT", on);
      resolve(signal);
    };
    process.on("SIGTERM", on);
    process.on("SIGINT", on);
  });
}

/**
 * Runs the example server beside one cluster node until SIGTERM or SIGINT, then closes the server
 * and stops the node gracefully; resolves with exit code 0. The HTTP port is bound first, so a
 * port that cannot be listened on rejects with a ListenError before the node joins the cluster,
 * and the node advertises the port actually bound (also with `--port 0`) unless given an address.
 */
export async function serveCommand(options: ServeCommandOptions): Promise<number> {
  const port = parsePort(options.port);
  checkInspectionFlags(options);
  const host = options.host ?? DEFAULT_HOST;
  const config = loadClusterConfig(options.config);
  const logger = createLogger({ level: options.logLevel });
  const listener = await listenHttp(port, host, logger);
  const advertised = process.env[NODE_SETTINGS_ENV.address] ? undefined : `${host}:${listener.port}`;
  let settings: ReturnType<typeof resolveNodeSettings>;
  let commandNode: ReturnType<typeof createCommandNode>;
  try {
    settings = resolveNodeSettings({ ...options, address: options.address ?? advertised });
    const layout = new ClusterLayout(config, { namespace: settings.namespace });
    await assertEtcdReachable(etcdConnectionOf(settings), undefined, layout.keys.idKey);
    // A refused state directory must close the listener too, or the process stays up.
    commandNode = createCommandNode(options, settings, layout, logger);
  } catch (err) {
    await listener.close();
    throw err;
  }
  const { node, stop } = commandNode;
  let metrics: ServerMetrics;
  try {
    // Imported here so that only `serve` loads prom-client, an optional dependency.
    const { createMetrics } = await import("../server/metrics.js");
    metrics = createMetrics(node, {
      countPoisonedLeaderKeys: () => node.readPoisonedLeaderKeys().then((keys) => keys.length),
    });
  } catch (err) {
    await listener.close();
    await stop();
    throw err;
  }
  const store = new KvStore(node, {
    etcd: etcdConnectionOf(settings),
    onEtcdError: (reason) => metrics.etcdError(reason),
  });
  const server = await createServer({ node, store, metrics, listener, log: logger });
  const signalled = nextStopSignal();
  logger.info("serving", { node: settings.nodeName, url: server.url, etcd: settings.etcdEndpoints });
  void node.start().catch(() => undefined);

  const signal = await signalled;
  logger.info("stopping server and node", { node: settings.nodeName, signal });
  await server.close();
  await stop();
  store.close();
  metrics.close();
  logger.info("stopped", { node: settings.nodeName });
  return 0;
}
