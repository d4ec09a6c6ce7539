import type { Command } from "commander";
import {
  ETCD_PASSWORD_ENV,
  NODE_SETTINGS_ENV,
  type RawEtcdSettings,
  type RawNodeSettings,
} from "../config/index.js";

export const DEFAULT_CONFIG = "config.yaml";

/**
 * Adds the flags of the etcd connection and the key namespace to a command that talks to etcd
 * (each also read from its environment variable; the password only from `ETCD_PASSWORD` or a file).
 */
export function withEtcdConnectionFlags(command: Command): Command {
  return command
    .option("--etcd <endpoints>", `etcd endpoints, comma-separated (env ${NODE_SETTINGS_ENV.etcd})`)
    .option("--etcd-ca <file>", `PEM CA of etcd's server certificate (env ${NODE_SETTINGS_ENV.etcdCa})`)
    .option("--etcd-cert <file>", `PEM client certificate for mutual TLS (env ${NODE_SETTINGS_ENV.etcdCert})`)
    .option("--etcd-key <file>", `PEM private key of --etcd-cert (env ${NODE_SETTINGS_ENV.etcdKey})`)
    .option(
      "--etcd-user <name>",
      `etcd user; password from env ${ETCD_PASSWORD_ENV} or --etcd-password-file (env ${NODE_SETTINGS_ENV.etcdUser})`,
    )
    .option(
      "--etcd-password-file <file>",
      `file holding the etcd user's password (env ${NODE_SETTINGS_ENV.etcdPasswordFile})`,
    )
    .option(
      "--namespace <prefix>",
      `prefix of every key of the cluster, ending in "/" (env ${NODE_SETTINGS_ENV.namespace})`,
    );
}

/** Adds the node-settings flags (each also read from its environment variable) to a command. */
export function withNodeSettingsFlags(command: Command): Command {
  return withEtcdConnectionFlags(command.option("-c, --config <file>", "cluster config file", DEFAULT_CONFIG))
    .option("--lease-ttl <seconds>", `lease TTL, whole seconds >= 2 (env ${NODE_SETTINGS_ENV.leaseTtl})`)
    .option(
      "--refresh-interval <seconds>",
      `keepalive interval, below the TTL (env ${NODE_SETTINGS_ENV.refreshInterval})`,
    )
    .option("--node <name>", `node name (env ${NODE_SETTINGS_ENV.node})`)
    .option("--address <host:port>", `address of the database server (env ${NODE_SETTINGS_ENV.address})`)
    .option(
      "--state-dir <dir>",
      `keep the node's ID here across restarts, locked to this process (env ${NODE_SETTINGS_ENV.stateDir})`,
    );
}

export interface NodeSettingsFlags extends RawNodeSettings {
  config: string;
  leaseTtl?: string;
  refreshInterval?: string;
}

/** The options of a command that only reads or repairs etcd (`status`, `repair`). */
export interface EtcdCommandFlags extends RawEtcdSettings {
  config: string;
}
