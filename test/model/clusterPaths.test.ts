import { describe, expect, test } from "vitest";
import { CLUSTER_MODEL_EVENTS, MAX_LIVE, MIN_LIVE } from "./clusterModel.js";
import { clusterModelPaths } from "./clusterPaths.js";

describe("the cluster model's generated paths", () => {
  const paths = clusterModelPaths();

  test("reach every model state and take every event at least once", () => {
    const reached = new Set(paths.flatMap((p) => p.expected.map((e) => `${e.live}/${e.etcdDown}`)));
    for (let live = MIN_LIVE; live <= MAX_LIVE; live++) {
      for (const down of [0, 1])
        if (!(live === 3 && down === 0)) expect(reached).toContain(`${live}/${down}`);
    }
    for (const event of CLUSTER_MODEL_EVENTS) {
      expect(
        paths.some((p) => p.events.includes(event.type)),
        event.type,
      ).toBe(true);
    }
  });
});
