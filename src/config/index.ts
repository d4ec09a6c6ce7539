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
export { type KeyName, KeySpace, LEADER_SEATS, type LeaderSeat } from "./keys.js";
export { ClusterLayout, type IdRange } from "./layout.js";
export {
  NODE_SETTINGS_ENV,
  NODE_SETTINGS_FLAGS,
  type NodeSettings,
  type RawNodeSettings,
  resolveEtcdEndpoints,
  resolveNodeSettings,
} from "./nodeSettings.js";
