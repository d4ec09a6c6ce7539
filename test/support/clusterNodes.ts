import type { Etcd3 } from "etcd3";
import { type ClusterConfig, ClusterLayout, type NodeSettings } from "../../src/config/index.js";
import { type Logger, silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import type { HistoryRecord } from "../../src/runtime/history.js";
import { crashNode } from "../../src/runtime/testing.js";
import { type EtcdCluster, startEtcd } from "./etcdCluster.js";

export const SEED_CONFIG: ClusterConfig = {
  dbname: "RDeeBee",
  groups: 10,
  group_size: 3,
  reads: 3,
  writes: 2,
  id_key: "id_key",
  failover_id_key_prefix: "failover_id",
};

/** One grouping of three groups of three: nine node IDs compete for its two leader keys. */
export const ONE_GROUPING: ClusterConfig = { ...SEED_CONFIG, groups: 3 };

/** A cluster of one slot: its one node is its primary, and a newcomer finds it full while that node's lease lives. */
export const ONE_SLOT: ClusterConfig = { ...SEED_CONFIG, groups: 1, group_size: 1, reads: 1, writes: 1 };

export interface NodeFactoryOptions {
  endpoints: string[];
  config?: ClusterConfig;
  leaseTtlSeconds?: number;
  keepaliveIntervalMs?: number;
  logger?: Logger;
  /** Receives every history record of every node created (each names its node). */
  history?: (record: HistoryRecord) => void;
}

/** Creates nodes in this process and stops (or crashes) every one of them on `stopAll`. */
export class NodeFactory {
  readonly layout: ClusterLayout;
  readonly nodes: ClusterNode[] = [];
  private count = 0;

  constructor(private readonly options: NodeFactoryOptions) {
    this.layout = new ClusterLayout(options.config ?? SEED_CONFIG);
  }

  settings(name: string): NodeSettings {
    const ttl = this.options.leaseTtlSeconds ?? 2;
    return {
      leaseTtlSeconds: ttl,
      keepaliveIntervalMs: this.options.keepaliveIntervalMs ?? Math.round((ttl * 1000) / 3),
      etcdEndpoints: this.options.endpoints,
      nodeName: name,
      address: `127.0.0.1:${10_000 + this.count}`,
    };
  }

  create(name = `node-${this.count}`): ClusterNode {
    this.count += 1;
    const node = createClusterNode({
      cluster: this.layout,
      settings: this.settings(name),
      logger: this.options.logger ?? silentLogger(),
      history: this.options.history,
    });
    this.nodes.push(node);
    return node;
  }

  async startMany(n: number): Promise<ClusterNode[]> {
    const nodes = Array.from({ length: n }, () => this.create());
    await Promise.all(nodes.map((node) => node.start()));
    return nodes;
  }

  live(): ClusterNode[] {
    return this.nodes.filter((n) => n.role !== "stopped");
  }

  async stopAll(): Promise<void> {
    await Promise.all(
      this.nodes.filter((n) => n.role !== "stopped").map((n) => n.stop().catch(() => crashNode(n))),
    );
  }
}

/** A fresh single-member etcd, a client on it and a node factory for it, for one test. */
export interface EtcdWithNodes {
  etcd: EtcdCluster;
  client: Etcd3;
  factory: NodeFactory;
}

export async function startEtcdWithNodes(
  options: Omit<NodeFactoryOptions, "endpoints"> = {},
): Promise<EtcdWithNodes> {
  const etcd = await startEtcd();
  return { etcd, client: etcd.client(), factory: new NodeFactory({ ...options, endpoints: etcd.endpoints }) };
}

/** Stops (or crashes) every node the factory made, then the etcd (which closes its clients). */
export async function stopEtcdWithNodes({
  etcd,
  factory,
}: Pick<EtcdWithNodes, "etcd" | "factory">): Promise<void> {
  await factory.stopAll();
  await etcd.stop();
}
