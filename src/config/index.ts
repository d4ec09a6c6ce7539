export {
  type ClusterConfig,
  loadClusterConfig,
  parseClusterConfig,
  parseClusterConfigYaml,
} from "./clusterConfig.js";
export { ConfigError } from "./errors.js";
export { KeySpace, LEADER_SLOTS, type LeaderSlot } from "./keys.js";
export { ClusterLayout } from "./layout.js";
export {
  NODE_SETTINGS_ENV,
  NODE_SETTINGS_FLAGS,
  type NodeSettings,
  type RawNodeSettings,
  resolveEtcdEndpoints,
  resolveNodeSettings,
} from "./nodeSettings.js";
