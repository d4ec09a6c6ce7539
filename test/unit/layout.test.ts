import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ClusterConfig,
  ClusterLayout,
  ConfigError,
  LEADER_SEATS,
  loadClusterConfig,
  parseClusterConfig,
} from "../../src/config/index.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";

const SEED_CONFIG_PATH = fileURLToPath(new URL("../../config.yaml", import.meta.url));

function seedLayout(): ClusterLayout {
  return new ClusterLayout(loadClusterConfig(SEED_CONFIG_PATH));
}

/** Every pair of derived names that are the same string. */
function collisions(names: readonly { label: string; key: string }[]): string[] {
  const problems: string[] = [];
  const byKey = new Map<string, string>();
  for (const { label, key } of names) {
    const other = byKey.get(key);
    if (other !== undefined) problems.push(`${label} and ${other} are both "${key}"`);
    byKey.set(key, label);
  }
  return problems;
}

/** What `KeySpace.parse` must make of each kind of key name (prefixes are not keys). */
const KIND_OF_LABEL: Record<string, string> = {
  leaderKey: "leader",
  memberKey: "member",
  failoverKey: "failoverAd",
  idKey: "idCounter",
  writeMarkerKey: "writeMarker",
  commitRecordKey: "commitRecord",
};

/** Every key name and key prefix the layout derives, labelled so a collision can be reported. */
function allKeyNames(layout: ClusterLayout): { label: string; key: string }[] {
  const { keys } = layout;
  const names: { label: string; key: string }[] = [];
  layout.groupings.forEach((_, k) => {
    for (const seat of LEADER_SEATS) {
      names.push({ label: `leaderKey(${k},${seat})`, key: keys.leaderKey(k, seat) });
      names.push({ label: `electionPrefix(${k},${seat})`, key: keys.electionPrefix(k, seat) });
    }
    names.push({ label: `writeMarkerKey(${k})`, key: keys.writeMarkerKey(k, "marker") });
    names.push({ label: `commitRecordKey(${k})`, key: keys.commitRecordKey(k, "key") });
  });
  for (let g = 0; g < layout.config.groups; g++) {
    names.push({ label: `membershipPrefix(${g})`, key: keys.membershipPrefix(g) });
    for (const id of layout.slotsOf(g))
      names.push({ label: `memberKey(${g},${id})`, key: keys.memberKey(g, id) });
  }
  for (let id = 0; id < layout.capacity; id++)
    names.push({ label: `failoverKey(${id})`, key: keys.failoverKey(id) });
  names.push({ label: "failoverPrefix", key: keys.failoverPrefix });
  names.push({ label: "idKey", key: keys.idKey });
  return names;
}

describe("seed config (config.yaml)", () => {
  it("loads the seed settings", () => {
    expect(loadClusterConfig(SEED_CONFIG_PATH)).toEqual(SEED_CONFIG);
  });

  it("cuts 10 groups into groupings of 3, the last one shorter", () => {
    const layout = seedLayout();
    expect(layout.groupings).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]);
    expect(layout.capacity).toBe(30);
  });

  it("maps every node ID 0..29 to floor(id / 3)", () => {
    const layout = seedLayout();
    for (let id = 0; id < 30; id++) {
      expect(layout.isNodeId(id)).toBe(true);
      expect(layout.nodeGroup(id)).toBe(Math.floor(id / 3));
      expect(layout.slotsOf(layout.nodeGroup(id))).toContain(id);
    }
  });

  it.each([-1, 30, 1.5, 31, Number.NaN, Number.POSITIVE_INFINITY])(
    "refuses node ID %s with a RangeError",
    (id) => {
      const layout = seedLayout();
      expect(layout.isNodeId(id)).toBe(false);
      expect(() => layout.nodeGroup(id)).toThrow(RangeError);
      expect(() => layout.groupingOfNode(id)).toThrow(RangeError);
    },
  );

  it("knows the grouping of every group and node, and refuses groups and groupings that do not exist", () => {
    const layout = seedLayout();
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((g) => layout.groupingOf(g))).toEqual([
      0, 0, 0, 1, 1, 1, 2, 2, 2, 3,
    ]);
    expect(layout.groupingOfNode(29)).toBe(3);
    expect(layout.groupingOfNode(0)).toBe(0);
    expect(layout.groupsOf(3)).toEqual([9]);
    expect(() => layout.groupingOf(10)).toThrow(RangeError);
    expect(() => layout.groupingOf(-1)).toThrow(RangeError);
    expect(() => layout.groupsOf(4)).toThrow(RangeError);
    expect(layout.slotsOf(9)).toEqual([27, 28, 29]);
  });

  it("names the leader keys of each grouping after the seed", () => {
    const layout = seedLayout();
    expect(layout.leaderKeys(0)).toEqual({ 1: "leader-RDeeBee-group-0-1", 2: "leader-RDeeBee-group-0-2" });
    expect(layout.leaderKeys(3)).toEqual({ 1: "leader-RDeeBee-group-3-1", 2: "leader-RDeeBee-group-3-2" });
    expect(layout.keys.leaderKey(0, 1)).toBe("leader-RDeeBee-group-0-1");
    expect(layout.keys.leaderKey(0, 2)).toBe("leader-RDeeBee-group-0-2");
  });

  it("names the election and membership prefixes after the seed, each ending in '/'", () => {
    const layout = seedLayout();
    expect(layout.keys.electionPrefix(0, 1)).toBe("election-RDeeBee-group-0-leader-1/");
    expect(layout.keys.electionPrefix(2, 2)).toBe("election-RDeeBee-group-2-leader-2/");
    expect(layout.keys.membershipPrefix(0)).toBe("member-RDeeBee-group-0/");
    expect(layout.keys.membershipPrefix(9)).toBe("member-RDeeBee-group-9/");
    expect(layout.keys.memberKey(1, 4)).toBe("member-RDeeBee-group-1/4");
    expect(layout.keys.idKey).toBe("id_key");
    expect(layout.keys.failoverPrefix).toBe("failover_id/");
    expect(layout.keys.failoverKey(7)).toBe("failover_id/7");
  });

  it("reads node IDs back from member and failover keys, and nothing else", () => {
    const { keys } = seedLayout();
    expect(keys.parse(keys.memberKey(1, 4))).toEqual({ kind: "member", group: 1, id: 4 });
    expect(keys.parse(keys.failoverKey(0))).toEqual({ kind: "failoverAd", id: 0 });
    expect(keys.parse("failover_id/07")).toEqual({ kind: "unknown" });
    expect(keys.parse("failover_id/x")).toEqual({ kind: "unknown" });
    expect(keys.parse("failover_id/")).toEqual({ kind: "unknown" });
    expect(keys.parse("member-RDeeBee-group-1/")).toEqual({ kind: "unknown" });
  });

  it("describes itself as plain, JSON-safe data, with an ID range per group", () => {
    const d = seedLayout().describe();
    expect(Object.keys(d).sort()).toEqual(
      [
        "capacity",
        "dbname",
        "electionPrefixes",
        "failoverPrefix",
        "groupGrouping",
        "groupNodeIds",
        "groupSize",
        "groupings",
        "idKey",
        "leaderKeys",
        "membershipPrefixes",
      ].sort(),
    );
    expect(d.dbname).toBe("RDeeBee");
    expect(d.capacity).toBe(30);
    expect(d.groupSize).toBe(3);
    expect(d.groupings).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]);
    expect(d.groupNodeIds).toEqual(Array.from({ length: 10 }, (_, g) => ({ first: 3 * g, last: 3 * g + 2 })));
    expect(d.groupGrouping).toEqual({ 0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 2, 9: 3 });
    expect(d.leaderKeys).toEqual(
      [0, 1, 2, 3].map((k) => [`leader-RDeeBee-group-${k}-1`, `leader-RDeeBee-group-${k}-2`]),
    );
    expect(d.electionPrefixes).toEqual(
      [0, 1, 2, 3].map((k) => [
        `election-RDeeBee-group-${k}-leader-1/`,
        `election-RDeeBee-group-${k}-leader-2/`,
      ]),
    );
    expect(d.membershipPrefixes).toEqual(Array.from({ length: 10 }, (_, g) => `member-RDeeBee-group-${g}/`));
    expect(d.idKey).toBe("id_key");
    expect(d.failoverPrefix).toBe("failover_id/");
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
  });

  it("refuses slots and ID ranges of groups that do not exist", () => {
    const layout = seedLayout();
    expect(layout.idRangeOf(9)).toEqual({ first: 27, last: 29 });
    for (const g of [-1, 10, 1.5, Number.NaN]) {
      expect(() => layout.slotsOf(g)).toThrow(RangeError);
      expect(() => layout.idRangeOf(g)).toThrow(RangeError);
    }
  });

  it("keeps group 1's membership prefix off group 10's member keys", () => {
    const layout = new ClusterLayout({ ...loadClusterConfig(SEED_CONFIG_PATH), groups: 11 });
    const { keys } = layout;
    for (const id of layout.slotsOf(10))
      expect(keys.memberKey(10, id).startsWith(keys.membershipPrefix(1))).toBe(false);
    expect(keys.leaderKey(1, 1)).not.toBe(keys.leaderKey(11, 1));
    expect(keys.electionPrefix(11, 1).startsWith(keys.electionPrefix(1, 1))).toBe(false);
  });
});

describe("sizes: a layout costs what its groups cost, never its capacity", () => {
  const MAX: ClusterConfig = {
    ...loadClusterConfig(SEED_CONFIG_PATH),
    groups: 10_000,
    group_size: 100,
    reads: 100,
  };

  it("at the maximum capacity, describes 10,000 groups with ranges, not 1,000,000 IDs", () => {
    const layout = new ClusterLayout(MAX);
    expect(layout.capacity).toBe(1_000_000);
    expect(layout.groupingCount).toBe(100);
    const d = layout.describe();
    expect(d.groupNodeIds).toHaveLength(10_000);
    expect(d.groupNodeIds[9_999]).toEqual({ first: 999_900, last: 999_999 });
    const json = JSON.stringify(d);
    // Per group: an ID range, a grouping and a membership prefix, under 200 bytes; per ID: nothing.
    expect(json.length).toBeLessThan(10_000 * 200);
    expect(layout.nodeGroup(999_999)).toBe(9_999);
    expect(layout.groupingOfNode(999_999)).toBe(99);
    expect(layout.groupsOf(99)).toHaveLength(100);
    expect(layout.slotsOf(9_999)).toHaveLength(100);
  });

  it.each([
    ["group_size", { group_size: 100_000_000 }],
    ["groups", { groups: 100_000_000 }],
    ["reads", { reads: 1_000 }],
    ["groups × group_size", { groups: 10_000, group_size: 1_000 }],
  ])("a config from code beyond a bound (%s) is refused by the layout itself", (field, sizes) => {
    let caught: unknown;
    try {
      new ClusterLayout({ ...MAX, ...sizes, writes: 1 });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).problems.join("\n")).toMatch(new RegExp(`^${field}: must be`, "m"));
  });
});

// ---------------------------------------------------------------------------------------------
// Properties over random valid configs

/** Strings the schema accepts as key names: non-empty, no '/' and no whitespace. */
const keyChars = fc.constantFrom(..."abcXYZ019-_.:@é".split(""));
const keyStringArb = fc.string({ unit: keyChars, minLength: 1, maxLength: 12 });

const configArb: fc.Arbitrary<ClusterConfig> = fc
  .record({
    dbname: keyStringArb,
    groups: fc.integer({ min: 1, max: 200 }),
    group_size: fc.integer({ min: 1, max: 9 }),
    reads: fc.integer({ min: 1, max: 20 }),
    id_key: keyStringArb,
    failover_id_key_prefix: keyStringArb,
    writesSeed: fc.nat(),
  })
  .map(({ writesSeed, ...c }) => ({ ...c, writes: 1 + (writesSeed % c.group_size) }))
  .filter((c) => c.id_key !== c.failover_id_key_prefix);

/** Like configArb, but id_key and failover_id_key_prefix are often built from names the layout derives. */
const trickyConfigArb: fc.Arbitrary<ClusterConfig> = configArb.chain((c) => {
  const derived = fc.oneof(
    keyStringArb,
    fc.constantFrom(
      `leader-${c.dbname}-group-0-1`,
      `leader-${c.dbname}-group-1`,
      `election-${c.dbname}-group-0-leader-1`,
      `member-${c.dbname}-group-1`,
      `member-${c.dbname}-group-`,
      `member-${c.dbname}`,
      `leader-${c.dbname}`,
      `fenced-write-${c.dbname}-grouping-0/marker`,
      `fenced-write-${c.dbname}-grouping-0`,
      `kv-${c.dbname}-grouping-0/key`,
      `kv-${c.dbname}-grouping-0`,
      "id_key",
      "failover_id",
    ),
  );
  return fc.record({ id_key: derived, failover_id_key_prefix: derived }).map((k) => ({ ...c, ...k }));
});

describe("layout properties over random valid configs", () => {
  it("the generated configs are valid", () => {
    fc.assert(
      fc.property(configArb, (c) => {
        expect(parseClusterConfig(c, "generated")).toEqual(c);
      }),
    );
  });

  it("puts every group in exactly one grouping, in consecutive chunks of `reads`", () => {
    fc.assert(
      fc.property(configArb, (c) => {
        const layout = new ClusterLayout(c);
        const flat = layout.groupings.flat();
        expect(flat).toEqual(Array.from({ length: c.groups }, (_, g) => g));
        expect(layout.groupings.length).toBe(Math.ceil(c.groups / c.reads));
        layout.groupings.forEach((chunk, k) => {
          const last = k === layout.groupings.length - 1;
          if (last) {
            expect(chunk.length).toBeGreaterThanOrEqual(1);
            expect(chunk.length).toBeLessThanOrEqual(c.reads);
          } else expect(chunk.length).toBe(c.reads);
          expect(chunk[0]).toBe(k * c.reads);
          chunk.forEach((g, i) => {
            expect(g).toBe(k * c.reads + i);
            expect(g).toBeLessThan(c.groups);
            expect(layout.groupingOf(g)).toBe(k);
          });
        });
      }),
    );
  });

  it("maps every valid node ID to exactly one group, whose slots contain it", () => {
    fc.assert(
      fc.property(configArb, (c) => {
        const layout = new ClusterLayout(c);
        expect(layout.capacity).toBe(c.groups * c.group_size);
        const problems: string[] = [];
        const owner = new Map<number, number>();
        for (let g = 0; g < c.groups; g++) {
          const slots = layout.slotsOf(g);
          if (slots.length !== c.group_size) problems.push(`group ${g} has ${slots.length} slots`);
          for (const id of slots) {
            if (owner.has(id)) problems.push(`ID ${id} is in groups ${owner.get(id)} and ${g}`);
            owner.set(id, g);
          }
        }
        if (owner.size !== layout.capacity)
          problems.push(`${owner.size} IDs in slots, capacity ${layout.capacity}`);
        for (let id = 0; id < layout.capacity; id++) {
          const g = layout.nodeGroup(id);
          if (g !== Math.floor(id / c.group_size)) problems.push(`nodeGroup(${id}) = ${g}`);
          if (owner.get(id) !== g) problems.push(`ID ${id}: nodeGroup ${g}, slot owner ${owner.get(id)}`);
          if (!layout.slotsOf(g).includes(id)) problems.push(`slotsOf(${g}) lacks ${id}`);
        }
        expect(problems).toEqual([]);
        expect(() => layout.nodeGroup(-1)).toThrow(RangeError);
        expect(() => layout.nodeGroup(layout.capacity)).toThrow(RangeError);
        expect(() => layout.nodeGroup(0.5)).toThrow(RangeError);
      }),
    );
  });

  it("maps IDs outside 0..capacity-1 and non-integers to a RangeError", () => {
    fc.assert(
      fc.property(
        configArb,
        fc.oneof(
          fc.integer({ max: -1 }),
          fc.double({ noInteger: true }),
          fc.integer({ min: 0, max: 10_000 }),
        ),
        (c, id) => {
          const layout = new ClusterLayout(c);
          if (Number.isInteger(id) && id >= 0 && id < layout.capacity)
            expect(layout.nodeGroup(id)).toBeLessThan(c.groups);
          else expect(() => layout.nodeGroup(id)).toThrow(RangeError);
        },
      ),
    );
  });

  it("derives pairwise distinct key names, and no membership prefix covers another group's keys", () => {
    fc.assert(
      fc.property(configArb, (c) => {
        const layout = new ClusterLayout(c);
        const names = allKeyNames(layout);
        const problems = collisions(names);
        for (let g = 0; g < c.groups; g++) {
          const prefix = layout.keys.membershipPrefix(g);
          const own = new Set(layout.slotsOf(g).map((id) => layout.keys.memberKey(g, id)));
          for (const { label, key } of names) {
            if (key !== prefix && !own.has(key) && key.startsWith(prefix))
              problems.push(`membershipPrefix(${g}) "${prefix}" covers ${label} "${key}"`);
          }
        }
        expect(problems).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });

  it("never accepts an id_key or failover prefix that collides with a derived key name", () => {
    fc.assert(
      fc.property(trickyConfigArb, (raw) => {
        let config: ClusterConfig;
        try {
          config = parseClusterConfig(raw, "generated");
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          for (const p of (err as ConfigError).problems)
            expect(p).toMatch(/^(id_key|failover_id_key_prefix): /);
          return;
        }
        const layout = new ClusterLayout(config);
        const names = allKeyNames(layout);
        const problems = collisions(names);
        for (const { label, key } of names) {
          // The failover prefix covers failover keys only.
          if (key.startsWith(layout.keys.failoverPrefix) && !/^failover(Key|Prefix)/.test(label))
            problems.push(`failoverPrefix "${layout.keys.failoverPrefix}" covers ${label} "${key}"`);
          // Each key reads back as what it was made as: the grammar of the names is unambiguous.
          const kind = KIND_OF_LABEL[/^\w+/.exec(label)?.[0] ?? ""];
          const parsed = layout.keys.parse(key).kind;
          if (kind !== undefined && parsed !== kind)
            problems.push(`${label} "${key}" reads back as ${parsed}`);
        }
        expect(problems).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it("is stable: building the layout twice gives the same description", () => {
    fc.assert(
      fc.property(configArb, (c) => {
        const a = new ClusterLayout(c).describe();
        const b = new ClusterLayout({ ...c }).describe();
        expect(b).toEqual(a);
        expect(JSON.stringify(b)).toBe(JSON.stringify(a));
      }),
      { numRuns: 50 },
    );
  });
});
