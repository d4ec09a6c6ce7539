import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach } from "vitest";
import { type EtcdCluster, startEtcd } from "./etcdCluster.js";
import { TcpProxy } from "./tcpProxy.js";

/** A fresh etcd per test, a client straight to it, and a TCP proxy in front of it for faults on one link. */
export interface ProxiedEtcd {
  readonly etcd: EtcdCluster;
  readonly direct: Etcd3;
  readonly proxy: TcpProxy;
  /** Keeps `client`, to be closed after the test. */
  track<T extends Etcd3>(client: T): T;
}

/**
 * Registers the hooks of the calling suite: before each test a fresh etcd, a direct client and a
 * proxy; after it (after the suite's own `afterEach`) the tracked clients, the proxy and the etcd
 * are closed. The fields may be read only inside a test or hook.
 */
export function proxiedEtcdPerTest(): ProxiedEtcd {
  let current: { etcd: EtcdCluster; direct: Etcd3; proxy: TcpProxy } | undefined;
  const clients: Etcd3[] = [];
  beforeEach(async () => {
    const etcd = await startEtcd();
    current = { etcd, direct: etcd.client(), proxy: await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "") };
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await current?.proxy.close();
    await current?.etcd.stop();
    current = undefined;
  });
  const now = () => {
    if (!current) throw new Error("the proxied etcd exists only while a test runs");
    return current;
  };
  return {
    get etcd() {
      return now().etcd;
    },
    get direct() {
      return now().direct;
    },
    get proxy() {
      return now().proxy;
    },
    track: (client) => {
      clients.push(client);
      return client;
    },
  };
}
