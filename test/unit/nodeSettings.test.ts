import { hostname } from "node:os";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  NODE_SETTINGS_ENV,
  NODE_SETTINGS_FLAGS,
  type NodeSettings,
  type RawNodeSettings,
  resolveNodeSettings,
} from "../../src/config/index.js";

/** A node name is always given unless the test is about it, so results do not depend on the host name. */
const NAMED: RawNodeSettings = { node: "n1" };

function problemsOf(flags: RawNodeSettings, env: NodeJS.ProcessEnv = {}): readonly string[] {
  let caught: unknown;
  try {
    resolveNodeSettings(flags, env);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  const err = caught as ConfigError;
  expect(err.source).toBe("node settings");
  for (const p of err.problems) expect(err.message).toContain(p);
  return err.problems;
}

let envBefore: string;
beforeAll(() => {
  envBefore = JSON.stringify(process.env);
});
afterAll(() => {
  expect(JSON.stringify(process.env)).toBe(envBefore);
});

describe("defaults", () => {
  it("uses a 5 s TTL, keepalive every TTL/3, the local etcd and a placeholder address", () => {
    const s: NodeSettings = resolveNodeSettings({}, {});
    expect(s).toMatchObject({
      leaseTtlSeconds: 5,
      keepaliveIntervalMs: 1667,
      etcdEndpoints: ["http://127.0.0.1:2379"],
      address: "127.0.0.1:0",
    });
    expect(s.nodeName).toMatch(/^[\w.-]{1,128}$/);
  });

  it("ignores process.env when an explicit env is given", () => {
    expect(resolveNodeSettings(NAMED, {}).leaseTtlSeconds).toBe(5);
  });

  it("treats an empty env value as unset", () => {
    const s = resolveNodeSettings(
      {},
      { LEASE_TTL: "", ETCD: "", NODE: "", ADDRESS: "", REFRESH_INTERVAL: "" },
    );
    expect(s).toMatchObject({
      leaseTtlSeconds: 5,
      etcdEndpoints: ["http://127.0.0.1:2379"],
      address: "127.0.0.1:0",
    });
  });

  it.each([
    [2, 667],
    [3, 1000],
    [6, 2000],
    [10, 3333],
  ])("default keepalive for TTL %d s is %d ms (TTL/3)", (ttl, ms) => {
    expect(resolveNodeSettings({ ...NAMED, leaseTtl: String(ttl) }, {}).keepaliveIntervalMs).toBe(ms);
    expect(resolveNodeSettings(NAMED, { LEASE_TTL: String(ttl) }).keepaliveIntervalMs).toBe(ms);
  });

  it("default keepalive is TTL/3 and below the TTL for any valid TTL", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 3_600 }), (ttl) => {
        const s = resolveNodeSettings({ ...NAMED, leaseTtl: String(ttl) }, {});
        expect(s.leaseTtlSeconds).toBe(ttl);
        expect(s.keepaliveIntervalMs).toBe(Math.round((ttl * 1000) / 3));
        expect(s.keepaliveIntervalMs).toBeLessThan(ttl * 1000);
        expect(s.keepaliveIntervalMs).toBeGreaterThan(0);
      }),
    );
  });
});

describe("precedence: flags > env > defaults", () => {
  const ENV = {
    LEASE_TTL: "9",
    REFRESH_INTERVAL: "2",
    ETCD: "env-etcd:2379",
    NODE: "env-node",
    ADDRESS: "env-host:1",
  };

  it("takes every setting from the environment when no flag is given", () => {
    expect(resolveNodeSettings({}, ENV)).toEqual({
      leaseTtlSeconds: 9,
      keepaliveIntervalMs: 2000,
      etcdEndpoints: ["http://env-etcd:2379"],
      etcd: { endpoints: ["http://env-etcd:2379"] },
      namespace: "",
      nodeName: "env-node",
      address: "env-host:1",
    });
  });

  it("takes every setting from the flags over the environment", () => {
    const flags: RawNodeSettings = {
      leaseTtl: "12",
      refreshInterval: "0.5",
      etcd: "https://flag-etcd:2379",
      node: "flag-node",
      address: "flag-host:2",
    };
    expect(resolveNodeSettings(flags, ENV)).toEqual({
      leaseTtlSeconds: 12,
      keepaliveIntervalMs: 500,
      etcdEndpoints: ["https://flag-etcd:2379"],
      etcd: { endpoints: ["https://flag-etcd:2379"] },
      namespace: "",
      nodeName: "flag-node",
      address: "flag-host:2",
    });
  });

  it.each(["leaseTtl", "refreshInterval", "etcd", "node", "address"] as const)(
    "a flag for %s wins over the env, the others still come from the env",
    (key) => {
      const flagValue = {
        leaseTtl: "12",
        refreshInterval: "3",
        etcd: "flag-etcd:1",
        node: "flag-node",
        address: "flag-host:2",
      };
      const s = resolveNodeSettings({ [key]: flagValue[key] }, ENV);
      const fromEnv = resolveNodeSettings({}, ENV);
      const expected = { ...fromEnv };
      if (key === "leaseTtl") expected.leaseTtlSeconds = 12;
      if (key === "refreshInterval") expected.keepaliveIntervalMs = 3000;
      if (key === "etcd") {
        expected.etcdEndpoints = ["http://flag-etcd:1"];
        expected.etcd = { endpoints: ["http://flag-etcd:1"] };
      }
      if (key === "node") expected.nodeName = "flag-node";
      if (key === "address") expected.address = "flag-host:2";
      expect(s).toEqual(expected);
    },
  );

  it("a valid flag shadows a malformed env value", () => {
    const s = resolveNodeSettings(
      { leaseTtl: "6", etcd: "e:1", address: "h:1", node: "n" },
      { LEASE_TTL: "junk", ETCD: "junk", ADDRESS: "junk", NODE: "bad name!" },
    );
    expect(s).toMatchObject({
      leaseTtlSeconds: 6,
      etcdEndpoints: ["http://e:1"],
      address: "h:1",
      nodeName: "n",
    });
  });

  it("the keepalive default follows the TTL wherever the TTL came from", () => {
    expect(resolveNodeSettings(NAMED, { LEASE_TTL: "30" }).keepaliveIntervalMs).toBe(10_000);
    expect(resolveNodeSettings({ ...NAMED, leaseTtl: "3" }, { LEASE_TTL: "30" }).keepaliveIntervalMs).toBe(
      1000,
    );
  });

  it("checks the env keepalive interval against the flag TTL", () => {
    const problems = problemsOf({ ...NAMED, leaseTtl: "3" }, { REFRESH_INTERVAL: "4" });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^REFRESH_INTERVAL: /);
  });
});

describe("refused settings name the flag or env var they came from", () => {
  it.each([
    ["1", "at least 2"],
    ["0", "at least 2"],
    ["1.5", "whole number"],
    ["2.0001", "whole number"],
    ["abc", "whole number"],
    ["-3", "whole number"],
    ["", "whole number"],
    ["5s", "whole number"],
  ])("lease TTL %j", (value, why) => {
    const fromFlag = problemsOf({ ...NAMED, leaseTtl: value });
    expect(fromFlag).toHaveLength(1);
    expect(fromFlag[0]).toMatch(/^--lease-ttl: /);
    expect(fromFlag[0]).toContain(why);
    if (value !== "") {
      const fromEnv = problemsOf(NAMED, { LEASE_TTL: value });
      expect(fromEnv).toHaveLength(1);
      expect(fromEnv[0]).toMatch(/^LEASE_TTL: /);
    }
  });

  it.each([
    ["5", "5"],
    ["6", "5"],
    ["4.9999", "5"],
    ["10", "10"],
    ["11", "10"],
    ["9".repeat(400), "5"],
  ])("keepalive interval %s s against a TTL of %s s", (interval, ttl) => {
    const fromFlag = problemsOf({ ...NAMED, leaseTtl: ttl, refreshInterval: interval });
    expect(fromFlag).toHaveLength(1);
    expect(fromFlag[0]).toMatch(/^--refresh-interval: .*below the lease TTL/);
    const fromEnv = problemsOf(NAMED, { LEASE_TTL: ttl, REFRESH_INTERVAL: interval });
    expect(fromEnv).toHaveLength(1);
    expect(fromEnv[0]).toMatch(/^REFRESH_INTERVAL: /);
  });

  it.each(["-1", "x", "1e3", "", "0.5s"])("keepalive interval %j is not a number of seconds", (value) => {
    const problems = problemsOf({ ...NAMED, refreshInterval: value });
    expect(problems).toEqual([
      `--refresh-interval: keepalive interval must be a number of seconds, got "${value}"`,
    ]);
  });

  it.each(["0", "0.0001", "0.0994", "0.099"])(
    "keepalive interval %s s is below the 0.1 s minimum",
    (value) => {
      const fromFlag = problemsOf({ ...NAMED, refreshInterval: value });
      expect(fromFlag).toEqual([
        `--refresh-interval: keepalive interval (${value} s) must be at least 0.1 s`,
      ]);
      expect(problemsOf(NAMED, { REFRESH_INTERVAL: value })[0]).toMatch(
        /^REFRESH_INTERVAL: .*at least 0\.1 s/,
      );
    },
  );

  it("accepts the 0.1 s minimum keepalive interval", () => {
    expect(resolveNodeSettings({ ...NAMED, refreshInterval: "0.1" }, {}).keepaliveIntervalMs).toBe(100);
    expect(resolveNodeSettings({ ...NAMED, refreshInterval: "0.0995" }, {}).keepaliveIntervalMs).toBe(100);
  });

  it.each(["3601", "3000000", "10000000000", "9".repeat(400)])(
    "lease TTL %s s is above the one-hour maximum",
    (value) => {
      const fromFlag = problemsOf({ ...NAMED, leaseTtl: value });
      expect(fromFlag).toEqual([`--lease-ttl: lease TTL must be at most 3,600 s (one hour), got "${value}"`]);
      expect(problemsOf(NAMED, { LEASE_TTL: value })[0]).toMatch(
        /^LEASE_TTL: lease TTL must be at most 3,600 s/,
      );
    },
  );

  it("accepts the one-hour maximum TTL; its intervals stay far below Node's 2^31 - 1 ms timer limit", () => {
    const s = resolveNodeSettings({ ...NAMED, leaseTtl: "3600", refreshInterval: "3599.999" }, {});
    expect(s.leaseTtlSeconds).toBe(3600);
    expect(s.keepaliveIntervalMs).toBe(3_599_999);
    expect(s.leaseTtlSeconds * 1000).toBeLessThan(2 ** 31 - 1);
    expect(resolveNodeSettings({ ...NAMED, leaseTtl: "3600" }, {}).keepaliveIntervalMs).toBe(1_200_000);
  });

  it("keeps any keepalive interval it accepts from 0.1 s to strictly below the TTL, in whole milliseconds", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 60 }),
        fc.double({ min: 0, max: 70, noNaN: true }),
        (ttl, seconds) => {
          const text = seconds.toFixed(4);
          let s: NodeSettings;
          try {
            s = resolveNodeSettings({ ...NAMED, leaseTtl: String(ttl), refreshInterval: text }, {});
          } catch (err) {
            expect(err).toBeInstanceOf(ConfigError);
            return;
          }
          expect(Number.isInteger(s.keepaliveIntervalMs)).toBe(true);
          expect(s.keepaliveIntervalMs).toBeGreaterThanOrEqual(100);
          expect(s.keepaliveIntervalMs).toBeLessThan(ttl * 1000);
        },
      ),
    );
  });

  it.each([
    "http://",
    "ftp://x:1",
    "host",
    "a:b",
    "http://h:1/path",
    "http://user@h:1",
    "127.0.0.1:2379#x",
    "h:99999",
    ":2379",
    "",
  ])("etcd endpoint %j", (value) => {
    const fromFlag = problemsOf({ ...NAMED, etcd: value });
    expect(fromFlag).toHaveLength(1);
    expect(fromFlag[0]).toMatch(/^--etcd: malformed endpoint/);
    if (value !== "") {
      const fromEnv = problemsOf(NAMED, { ETCD: value });
      expect(fromEnv[0]).toMatch(/^ETCD: malformed endpoint/);
      expect(fromEnv[0]).toContain(JSON.stringify(value));
    }
  });

  it("one bad endpoint among good ones is named", () => {
    const problems = problemsOf({ ...NAMED, etcd: "a:1,ftp://b:2,c:3," });
    expect(problems).toEqual(['--etcd: malformed endpoint "ftp://b:2"', '--etcd: malformed endpoint ""']);
  });

  it.each(["x", ":80", "h:", "h:p", "h:65536", "a b:1", "h:1:2x", "http://h:1"])("address %j", (value) => {
    const fromFlag = problemsOf({ ...NAMED, address: value });
    expect(fromFlag).toHaveLength(1);
    expect(fromFlag[0]).toMatch(/^--address: address must be host:port/);
    const fromEnv = problemsOf(NAMED, { ADDRESS: value });
    expect(fromEnv[0]).toMatch(/^ADDRESS: /);
  });

  it.each(["", "has space", "slash/name", "x".repeat(129)])("node name %j", (value) => {
    const fromFlag = problemsOf({ node: value });
    expect(fromFlag).toHaveLength(1);
    expect(fromFlag[0]).toMatch(/^--node: /);
    if (value !== "" && !value.includes("/")) expect(problemsOf({}, { NODE: value })[0]).toMatch(/^NODE: /);
  });

  it("ignores a NODE that is a path: npm sets NODE to the node binary for every script", () => {
    const settings = resolveNodeSettings({}, { NODE: "/usr/local/bin/node" });
    expect(settings.nodeName).toBe(`${hostname()}-${process.pid}`);
  });

  it("reports several problems together, each with its source", () => {
    const problems = problemsOf(
      { leaseTtl: "1", etcd: "ftp://x:1", node: "bad name" },
      { ADDRESS: "nope", REFRESH_INTERVAL: "0" },
    );
    expect(problems).toHaveLength(5);
    const sources = problems.map((p) => p.slice(0, p.indexOf(":")));
    expect(sources).toEqual(["--lease-ttl", "REFRESH_INTERVAL", "--etcd", "--node", "ADDRESS"]);
  });

  it("the flag and env names are the documented ones", () => {
    expect(NODE_SETTINGS_ENV).toEqual({
      leaseTtl: "LEASE_TTL",
      refreshInterval: "REFRESH_INTERVAL",
      etcd: "ETCD",
      node: "NODE",
      address: "ADDRESS",
      etcdCa: "ETCD_CA",
      etcdCert: "ETCD_CERT",
      etcdKey: "ETCD_KEY",
      etcdUser: "ETCD_USER",
      etcdPasswordFile: "ETCD_PASSWORD_FILE",
      namespace: "NAMESPACE",
      stateDir: "STATE_DIR",
    });
    expect(Object.values(NODE_SETTINGS_FLAGS)).toEqual([
      "--lease-ttl",
      "--refresh-interval",
      "--etcd",
      "--node",
      "--address",
      "--etcd-ca",
      "--etcd-cert",
      "--etcd-key",
      "--etcd-user",
      "--etcd-password-file",
      "--namespace",
      "--state-dir",
    ]);
  });
});

describe("accepted values", () => {
  it("splits several comma-separated endpoints, trimming and normalising each", () => {
    const s = resolveNodeSettings(
      { ...NAMED, etcd: "a:1, https://b.example:2 ,http://[::1]:2379,10.0.0.1:2379" },
      {},
    );
    expect(s.etcdEndpoints).toEqual([
      "http://a:1",
      "https://b.example:2",
      "http://[::1]:2379",
      "http://10.0.0.1:2379",
    ]);
  });

  it("several endpoints from the env", () => {
    expect(resolveNodeSettings(NAMED, { ETCD: "e1:2379,e2:2379,e3:2379" }).etcdEndpoints).toEqual([
      "http://e1:2379",
      "http://e2:2379",
      "http://e3:2379",
    ]);
  });

  it.each(["127.0.0.1:5432", "db.local:1", "[::1]:80", "localhost:65535", "h:0"])("address %s", (address) => {
    expect(resolveNodeSettings({ ...NAMED, address }, {}).address).toBe(address);
  });

  it("a fractional keepalive interval becomes whole milliseconds", () => {
    expect(resolveNodeSettings({ ...NAMED, refreshInterval: "1.25" }, {}).keepaliveIntervalMs).toBe(1250);
    expect(
      resolveNodeSettings({ ...NAMED, leaseTtl: "2", refreshInterval: "1.999" }, {}).keepaliveIntervalMs,
    ).toBe(1999);
  });
});
