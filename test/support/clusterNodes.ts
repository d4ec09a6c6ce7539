import { type ClusterConfig, ClusterLayout, type NodeSettings } from "../../src/config/index.js";
import { type Logger, silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { crashNode } from "../../src/runtime/testing.js";

export const SEED_CONFIG: ClusterConfig = {
  dbname: "RDeeBee",
  groups: 10,
  group_size: 3,
  reads: 3,
  writes: 2,
  id_key: "id_key",
  failover_id_key_prefix: "failover_id",
};

export interface NodeFactoryOptions {
  endpoints: string[];
  config?: ClusterConfig;
  leaseTtlSeconds?: number;
  keepaliveIntervalMs?: number;
  logger?: Logger;
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
