/**
 * rdeebee-cluster/testing: test an embedding server's failover against a real, throwaway etcd.
 * Needs an etcd 3.4+ binary (`etcd` on PATH, or `ETCD_BIN`); runner-agnostic (no test framework).
 * The package's main entry never loads this module.
 */

export {
  CLUSTER_MODEL_EVENTS,
  type ClusterModelEvent,
  clusterModel,
  MAX_LIVE,
  MIN_LIVE,
} from "./clusterModel.js";
export {
  clusterModelPaths,
  type ExpectedAfterStep,
  type ExpectedRoles,
  expectedRoles,
  type FailoverStep,
  type ModelPath,
} from "./clusterPaths.js";
export {
  type EtcdClientOptions,
  type EtcdCluster,
  type EtcdMember,
  type EtcdTlsEndpoints,
  type StartEtcdOptions,
  startEtcd,
  type TlsFiles,
  withDeadline,
} from "./etcdCluster.js";
export { type ReadEtcdHistoryOptions, readEtcdHistory } from "./etcdHistory.js";
export {
  FailoverDriver,
  type FailoverTargetOptions,
  type Seats,
  type ServerHandle,
  type StepOutcome,
} from "./failoverDriver.js";
export {
  type AcknowledgedWrite,
  checkFencedWrites,
  type DeposedWrite,
  type FencedWriteCheckInput,
  type FencedWriteReport,
  type LostWrite,
  type PrimaryClaim,
  type TwoPrimaries,
  type WriteFence,
} from "./fencedWriteChecker.js";
export { FlapConnection, type FlapMode, FlapProxy } from "./flapProxy.js";
export {
  type CheckInput,
  type CheckReport,
  checkHistory,
  type ObservedEvent,
  type ObservedKeyValue,
  type ProcessFate,
  type Violation,
  type WriteAttempt,
  type WriteOutcome,
  writeOutcomeOf,
} from "./historyChecker.js";
export { type Exit, killAllNodeProcesses, NodeProcess, type NodeProcessOptions } from "./nodeProcess.js";
export { ProxyListener } from "./proxyListener.js";
export { type ProxyMode, type ProxyModeOptions, TcpProxy } from "./tcpProxy.js";
export {
  killAllTestProcesses,
  type LogLine,
  type ProcessExit,
  parseLogLine,
  TestProcess,
  type TestProcessOptions,
} from "./testProcess.js";
