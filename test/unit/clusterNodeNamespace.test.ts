import { describe, expect, test } from "vitest";
import { ClusterLayout, ConfigError, nodeSettings } from "../../src/config/index.js";
import { silentLogger } from "../../src/logging.js";
import { createClusterNode } from "../../src/runtime/index.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";

/** Constructing a node opens no connection; stop() before start() closes its client. */
describe("a node's keys follow the namespace of its settings", () => {
  test("from a cluster config, every key of the layout is under the settings' namespace", async () => {
    const node = createClusterNode({
      cluster: ONE_GROUPING,
      settings: nodeSettings({ namespace: "team-a/", nodeName: "n1" }),
      logger: silentLogger(),
    });
    await node.stop();
    expect(node.layout.keys.namespace).toBe("team-a/");
    expect(node.layout.keys.idKey.startsWith("team-a/")).toBe(true);
  });

  test("a layout built under another namespace is refused, naming the setting", () => {
    const layout = new ClusterLayout(ONE_GROUPING, { namespace: "team-b/" });
    const build = () =>
      createClusterNode({
        cluster: layout,
        settings: nodeSettings({ namespace: "team-a/", nodeName: "n1" }),
        logger: silentLogger(),
      });
    expect(build).toThrow(ConfigError);
    expect(build).toThrow(/namespace: "team-a\/", but the cluster layout was built under "team-b\/"/);
  });

  test("settings that name no namespace keep the layout's", async () => {
    const layout = new ClusterLayout(ONE_GROUPING, { namespace: "team-b/" });
    const { namespace: _, ...settings } = nodeSettings({ nodeName: "n1" });
    const node = createClusterNode({ cluster: layout, settings, logger: silentLogger() });
    await node.stop();
    expect(node.layout.keys.namespace).toBe("team-b/");
  });
});
