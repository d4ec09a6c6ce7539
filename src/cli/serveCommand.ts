import {
  ClusterLayout,
  ConfigError,
  loadClusterConfig,
  NODE_SETTINGS_ENV,
  resolveNodeSettings,
} from "../config/index.js";
import { createLogger } from "../logging.js";
import { assertEtcdReachable, createClusterNode } from "../runtime/index.js";
import { createServer, DEFAULT_HOST } from "../server/httpServer.js";
import { KvStore } from "../server/kvStore.js";
import { createMetrics } from "../server/metrics.js";
import type { NodeSettingsFlags } from "./nodeOptions.js";

export interface ServeCommandOptions extends NodeSettingsFlags {
  port: string;
  host?: string;
  logLevel?: string;
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
 * and stops the node gracefully; resolves with exit code 0. A port that cannot be listened on
 * rejects with a ListenError before the node joins the cluster.
 */
export async function serveCommand(options: ServeCommandOptions): Promise<number> {
  const port = parsePort(options.port);
  const host = options.host ?? DEFAULT_HOST;
  const layout = new ClusterLayout(loadClusterConfig(options.config));
  const advertised = port !== 0 && !process.env[NODE_SETTINGS_ENV.address] ? `${host}:${port}` : undefined;
  const settings = resolveNodeSettings({ ...options, address: options.address ?? advertised });
  const logger = createLogger({ level: options.logLevel });
  await assertEtcdReachable(settings.etcdEndpoints);

  const node = createClusterNode({ cluster: layout, settings, logger });
  const metrics = createMetrics(node, {
    countPoisonedLeaderKeys: () => node.readPoisonedLeaderKeys().then((keys) => keys.length),
  });
  const store = new KvStore(node, { onEtcdError: (reason) => metrics.etcdError(reason) });
  let server: Awaited<ReturnType<typeof createServer>>;
  try {
    server = await createServer({ node, store, metrics, port, host, log: logger });
  } catch (err) {
    metrics.close();
    await node.stop();
    throw err;
  }
  const signalled = nextStopSignal();
  logger.info("serving", { node: settings.nodeName, url: server.url, etcd: settings.etcdEndpoints });
  void node.start().catch(() => undefined);

  const signal = await signalled;
  logger.info("stopping server and node", { node: settings.nodeName, signal });
  await server.close();
  await node.stop();
  metrics.close();
  logger.info("stopped", { node: settings.nodeName });
  return 0;
}
