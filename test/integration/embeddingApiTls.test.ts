import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ClusterLayout, nodeSettings } from "../../src/config/index.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import { type EtcdCluster, type EtcdTlsEndpoints, startEtcd } from "../support/etcdCluster.js";

/** A node given TLS settings and no client of its own connects with them (red: connecting to the endpoints alone). */
describe("a node built from production etcd settings", () => {
  let etcd: EtcdCluster;
  let tls: EtcdTlsEndpoints;
  const nodes: ClusterNode[] = [];

  beforeAll(async () => {
    etcd = await startEtcd({ tls: true, name: "embed-tls" });
    if (etcd.tls === undefined) throw new Error("the harness started no TLS endpoint");
    tls = etcd.tls;
  });

  afterAll(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    await etcd?.stop();
  });

  test("settings with TLS and no client: the node connects over mutual TLS and becomes primary", async () => {
    const { ca, cert, key } = tls.trusted;
    const settings = nodeSettings({
      etcd: { endpoints: tls.endpoints, tls: { ca, cert, key } },
      leaseTtlSeconds: 3,
      nodeName: "embedded-tls",
    });
    const node = createClusterNode({
      cluster: new ClusterLayout(ONE_GROUPING),
      settings,
      logger: silentLogger(),
    });
    nodes.push(node);
    await node.start({ timeoutMs: 30_000 });
    const status = await node.waitForRole("primary", { timeoutMs: 30_000 });
    expect(status.fence?.seat).toBe(1);
  });
});
