import { expect, test } from "vitest";
import { KeySpace } from "../../src/config/index.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";

const keys = new KeySpace(SEED_CONFIG);

test("a write marker's key parses back to its grouping and marker name", () => {
  expect(keys.parse(keys.writeMarkerKey(3, "m-1"))).toEqual({
    kind: "writeMarker",
    grouping: 3,
    marker: "m-1",
  });
});

test("a commit record's key parses back to its grouping and key", () => {
  expect(keys.parse(keys.commitRecordKey(2, "users/7"))).toEqual({
    kind: "commitRecord",
    grouping: 2,
    key: "users/7",
  });
});
