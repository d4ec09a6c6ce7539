import type { Etcd3 } from "../etcd/index.js";
import { type ClusterNode, clientHook, crashHook } from "./clusterNode.js";

/**
 * Stops `node` as a crash would: no resign, no deregistration, no revoke; its lease and every key
 * bound to it stay until etcd expires them one TTL later. For tests and benchmarks: this module is
 * not part of the package's API.
 */
export function crashNode(node: ClusterNode | undefined): void {
  node?.[crashHook]();
}

/** The etcd client a node runs on, e.g. to send a write through its own connection. */
export function etcdClientOf(node: ClusterNode): Etcd3 {
  return node[clientHook];
}
