import type { Command } from "commander";
import { NODE_SETTINGS_ENV, type RawNodeSettings } from "../config/index.js";

export const DEFAULT_CONFIG = "config.yaml";

/** Adds the node-settings flags (each also read from its environment variable) to a command. */
export function withNodeSettingsFlags(command: Command): Command {
  return command
    .option("-c, --config <file>", "cluster config file", DEFAULT_CONFIG)
    .option("--etcd <endpoints>", `etcd endpoints, comma-separated (env ${NODE_SETTINGS_ENV.etcd})`)
    .option("--lease-ttl <seconds>", `lease TTL, whole seconds >= 2 (env ${NODE_SETTINGS_ENV.leaseTtl})`)
    .option(
      "--refresh-interval <seconds>",
      `keepalive interval, below the TTL (env ${NODE_SETTINGS_ENV.refreshInterval})`,
    )
    .option("--node <name>", `node name (env ${NODE_SETTINGS_ENV.node})`)
    .option("--address <host:port>", `address of the database server (env ${NODE_SETTINGS_ENV.address})`);
}

export interface NodeSettingsFlags extends RawNodeSettings {
  config: string;
  leaseTtl?: string;
  refreshInterval?: string;
}
