import { describe, expect, it } from "vitest";
import { ClusterLayout, ConfigError, type KeySpace, namespaceProblem } from "../../src/config/index.js";
import { classifyKey } from "../../src/etcd/codec.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";

/** The key namespace: every key of a cluster under one prefix, and nothing outside it taken for the cluster's. */
const NAMESPACE = "team-a/prod/";
const layout = new ClusterLayout(SEED_CONFIG, { namespace: NAMESPACE });
const plain = new ClusterLayout(SEED_CONFIG);

/** Every key and prefix the key space formats, for one grouping, group, ID and marker. */
function formatted(keys: KeySpace): string[] {
  return [
    keys.idKey,
    keys.failoverPrefix,
    keys.failoverKey(4),
    keys.leaderKey(1, 1),
    keys.leaderKey(1, 2),
    keys.leaderPrefix(1),
    keys.electionPrefix(1, 2),
    keys.membershipPrefix(3),
    keys.memberKey(3, 9),
    keys.allLeadersPrefix,
    keys.allMembersPrefix,
    keys.writeMarkerKey(1, "m-1"),
    keys.writeMarkerPrefix(1),
    keys.commitRecordKey(1, "k"),
  ];
}

describe("a namespaced key space", () => {
  it("puts every key and prefix under the namespace, and is otherwise the plain key space", () => {
    expect(layout.keys.namespace).toBe(NAMESPACE);
    expect(formatted(layout.keys)).toEqual(formatted(plain.keys).map((key) => `${NAMESPACE}${key}`));
  });

  it("parses its own keys as the plain key space parses the same keys without the namespace", () => {
    for (const key of formatted(plain.keys)) {
      expect(layout.keys.parse(`${NAMESPACE}${key}`)).toEqual(plain.keys.parse(key));
    }
    expect(layout.keys.parse(`${NAMESPACE}member-RDeeBee-group-3/9`)).toEqual({
      kind: "member",
      group: 3,
      id: 9,
    });
  });

  it("refuses keys outside the namespace: the plain cluster's, another namespace's, a longer one's", () => {
    for (const key of formatted(plain.keys)) {
      expect(layout.keys.parse(key)).toEqual({ kind: "unknown" });
      expect(layout.keys.parse(`team-b/${key}`)).toEqual({ kind: "unknown" });
      expect(layout.keys.parse(`team-a/prod-2/${key}`)).toEqual({ kind: "unknown" });
      expect(classifyKey(layout, key)).toEqual({ kind: "unknown" });
    }
    // ... and the plain key space refuses the namespaced keys.
    for (const key of formatted(layout.keys)) expect(plain.keys.parse(key)).toEqual({ kind: "unknown" });
  });

  it("classifies a namespaced key by the layout like a plain one", () => {
    expect(classifyKey(layout, layout.keys.leaderKey(4, 1))).toEqual({
      kind: "outOfLayout",
      family: "leader",
    });
    expect(classifyKey(layout, layout.keys.leaderKey(0, 2))).toEqual({
      kind: "leader",
      grouping: 0,
      seat: 2,
    });
  });
});

describe("namespace rule", () => {
  it.each(["", "a/", "team-a/prod/", "x.y_z-1/", `${"n".repeat(127)}/`])("accepts %j", (namespace) => {
    expect(namespaceProblem(namespace)).toBeUndefined();
  });

  it.each(["a", "/", "/a/", "a//", "a /", "a/b", "ü/", `${"n".repeat(128)}/`])("refuses %j", (namespace) => {
    expect(namespaceProblem(namespace)).toMatch(/^must be /);
  });

  it("a layout with a bad namespace is a ConfigError naming the namespace", () => {
    let caught: unknown;
    try {
      new ClusterLayout(SEED_CONFIG, { namespace: "prod" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).message).toMatch(/^cluster layout: namespace: must be empty or segments/);
  });
});
