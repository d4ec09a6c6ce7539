export {
  attachLeaseWatchdog,
  type LeaseWatchdog,
  type LeaseWatchdogOptions,
  type WatchedNode,
  watchdogEntry,
} from "./leaseWatchdog.js";
export type { EtcdConnection } from "./protocol.js";
