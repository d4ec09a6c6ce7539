export type { ConnectOptions } from "./client.js";
export { assertEtcdReachable, connectEtcd, type Etcd3, EtcdUnreachableError } from "./client.js";
export type { ClusterStoreOptions } from "./clusterStore.js";
export {
  type CampaignResult,
  ClaimAbandonedError,
  ClusterStore,
  FenceLostError,
  type FencingToken,
  type FreshIdResult,
  readIdHighWaterMark,
} from "./clusterStore.js";
export {
  type ClusterKey,
  classifyKey,
  type Decoded,
  type DecodedMember,
  decodeCounter,
  decodeFailoverAd,
  decodeLeaderValue,
  decodeMember,
  decodeValue,
  type FailoverAd,
  failoverAdSchema,
  idHighWaterMark,
  type NodeRecord,
  nodeRecordSchema,
} from "./codec.js";
export type { FencedWrite } from "./fencedWrite.js";
export type { BackupSeat, HandoffResult } from "./handoff.js";
export { leaseSecondsLeft, type RevokeResult, revokeLease } from "./lease.js";
export { OutcomeUnknownError, WriteNotCommittedError, WriteOutcomeUnknownError } from "./outcome.js";
export { listTransactionsSent, MAX_LISTS_PER_TXN, PrefixLists, prefixListsOf } from "./prefixLists.js";
export {
  type KeyEntry,
  type PrefixSnapshot,
  snapshotOf,
  type WatchPrefixOptions,
  watchPrefix,
} from "./prefixView.js";
export { listPrefix, type ReadOptions, readKey } from "./reads.js";
export {
  deletePoisonedLeaderKey,
  type LeaderKeyRemoval,
  RemovalOutcomeUnknownError,
  removePoisonedLeaderKey,
} from "./repair.js";
export { EtcdSession, monotonicNow, type SessionHealth, type SessionOptions } from "./session.js";
export { type BackoffPolicy, backoffDelay, jitteredInterval } from "./watchBackoff.js";
export {
  type WatchHandle,
  type WatchListener,
  WatchStream,
  type WatchStreamActivity,
  type WatchStreamOptions,
  watchStreamOf,
} from "./watchStream.js";
