import type { Etcd3 } from "etcd3";
import { ClusterLayout } from "../../src/config/index.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { type ClusterStatus, readClusterStatus } from "../../src/runtime/clusterStatus.js";
import { crashNode } from "../../src/runtime/testing.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";

export const TTL_SECONDS = 2;
/** One grouping: three groups of three node IDs. */
export const MODEL_LAYOUT = new ClusterLayout(ONE_GROUPING);

/** An in-process node that reaches every etcd member through its own proxies, so it can be cut off. */
export interface ProxiedNode {
  node: ClusterNode;
  proxies: TcpProxy[];
}

/** Nodes of one grouping on a three-member etcd, with a safety monitor that records every violation. */
export class ModelCluster {
  readonly nodes: ProxiedNode[] = [];
  readonly violations: string[] = [];
  private count = 0;

  constructor(
    readonly etcd: EtcdCluster,
    readonly client: Etcd3,
  ) {}

  async addNode(): Promise<ClusterNode> {
    const proxies = await Promise.all(this.etcd.endpoints.map((e) => TcpProxy.forEndpoint(e)));
    const name = `model-${this.count++}`;
    const node = createClusterNode({
      cluster: MODEL_LAYOUT,
      settings: {
        leaseTtlSeconds: TTL_SECONDS,
        keepaliveIntervalMs: Math.round((TTL_SECONDS * 1000) / 3),
        etcdEndpoints: proxies.map((p) => p.endpoint),
        nodeName: name,
        address: `127.0.0.1:${20_000 + this.count}`,
      },
      logger: silentLogger(),
    });
    node.status$.subscribe(() => this.checkRoles());
    this.nodes.push({ node, proxies });
    await node.start();
    return node;
  }

  live(): ClusterNode[] {
    return this.nodes.map((n) => n.node).filter((n) => n.role !== "stopped");
  }

  holder(role: "primary" | "backup"): ClusterNode | undefined {
    return this.live().find((n) => n.role === role);
  }

  proxiesOf(node: ClusterNode): TcpProxy[] {
    return this.nodes.find((n) => n.node === node)?.proxies ?? [];
  }

  /** No two live nodes believe they are primary; two backups only for a moment (see below). */
  private checkRoles(): void {
    const primaries = this.live().filter((n) => n.role === "primary");
    const backups = this.live().filter((n) => n.role === "backup");
    if (primaries.length > 1)
      this.violations.push(`two primaries: ${primaries.map((n) => n.status.name).join(", ")}`);
    if (backups.length > 1) this.checkBackupsLater(backups);
    const ids = this.live().flatMap((n) => (n.id === undefined ? [] : [n.id]));
    if (new Set(ids).size !== ids.length)
      this.violations.push(`duplicate IDs among live nodes: ${ids.join(", ")}`);
  }

  /**
   * Two nodes believing they are backup is allowed for a moment, never for a TTL: after a graceful
   * handoff the old backup learns from its own watch that it is primary, and a follower can win the
   * vacated backup seat before that watch delivers. A backup's belief gives it no authority (its
   * promotion compares the keys), so only a belief that does not settle is a violation.
   */
  private checkBackupsLater(backups: ClusterNode[]): void {
    const names = backups.map((n) => n.status.name);
    setTimeout(() => {
      const still = names.filter((name) =>
        this.live().some((n) => n.status.name === name && n.role === "backup"),
      );
      if (still.length > 1) this.violations.push(`two backups for a TTL: ${still.join(", ")}`);
    }, TTL_SECONDS * 1000).unref();
  }

  /** Watches the leader keys from revision 1 and checks primary != backup at every revision. */
  async watchLeaderKeys(): Promise<() => Promise<void>> {
    const seats = new Map<string, number | undefined>();
    const watcher = await this.client
      .watch()
      .prefix(MODEL_LAYOUT.keys.leaderPrefix(0))
      .startRevision("1")
      .create();
    watcher.on("data", (res) => {
      for (const ev of res.events) {
        const key = ev.kv.key.toString();
        seats.set(
          key,
          ev.type === "Put" ? (JSON.parse(ev.kv.value.toString()) as { id: number }).id : undefined,
        );
      }
      const keys = MODEL_LAYOUT.leaderKeys(0);
      const primary = seats.get(keys[1]);
      const backup = seats.get(keys[2]);
      if (primary !== undefined && primary === backup) {
        this.violations.push(`revision ${res.header.revision}: node ${primary} is both primary and backup`);
      }
    });
    return () => watcher.cancel();
  }

  status(): Promise<ClusterStatus> {
    return readClusterStatus(this.client, MODEL_LAYOUT);
  }

  async close(): Promise<void> {
    await Promise.all(this.live().map((n) => n.stop().catch(() => crashNode(n))));
    for (const n of this.nodes) if (n.node.role !== "stopped") crashNode(n.node);
    await Promise.all(this.nodes.flatMap((n) => n.proxies.map((p) => p.close())));
  }
}
