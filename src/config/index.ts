export {
  CONFIG_SIZE_LIMITS,
  capacityProblem,
  keepaliveIntervalProblem,
  leaseTtlProblem,
  MAX_CAPACITY,
  MAX_GROUP_SIZE,
  MAX_GROUPS,
  MAX_LEASE_TTL_SECONDS,
  MAX_READS,
  MIN_KEEPALIVE_INTERVAL_MS,
  MIN_LEASE_TTL_SECONDS,
} from "./bounds.js";
export {
  type ClusterConfig,
  loadClusterConfig,
  parseClusterConfig,
  parseClusterConfigYaml,
} from "./clusterConfig.js";
export { ConfigError } from "./errors.js";
export { type KeyName, KeySpace, LEADER_SEATS, type LeaderSeat, namespaceProblem } from "./keys.js";
export { ClusterLayout, type IdRange, type LayoutOptions } from "./layout.js";
export {
  ETCD_PASSWORD_ENV,
  type EtcdAuth,
  type EtcdConnection,
  type EtcdSettings,
  type EtcdTls,
  etcdConnectionOf,
  NODE_SETTINGS_ENV,
  NODE_SETTINGS_FLAGS,
  type NodeSettings,
  type NodeSettingsOptions,
  nodeSettings,
  type RawEtcdSettings,
  type RawNodeSettings,
  resolveEtcdEndpoints,
  resolveEtcdSettings,
  resolveNodeSettings,
} from "./nodeSettings.js";
