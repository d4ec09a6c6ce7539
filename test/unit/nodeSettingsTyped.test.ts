import { describe, expect, it } from "vitest";
import {
  ConfigError,
  MAX_LEASE_TTL_SECONDS,
  type NodeSettingsOptions,
  nodeSettings,
  resolveNodeSettings,
} from "../../src/config/index.js";

/** The problems of a ConfigError thrown by `run`, each also in its message. */
function problemsOf(run: () => unknown): readonly string[] {
  let caught: unknown;
  try {
    run();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  const err = caught as ConfigError;
  for (const p of err.problems) expect(err.message).toContain(p);
  return err.problems;
}

const typed = (options: NodeSettingsOptions) =>
  problemsOf(() => nodeSettings({ nodeName: "n1", ...options }));
const PEM_CERT = Buffer.from("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
const PEM_KEY = Buffer.from("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");

describe("nodeSettings (typed, from code)", () => {
  it("has the CLI's defaults", () => {
    const fromCode = nodeSettings({ nodeName: "n1" });
    const fromCli = resolveNodeSettings({ node: "n1" }, {});
    expect(fromCode).toEqual(fromCli);
    expect(fromCode).toMatchObject({
      leaseTtlSeconds: 5,
      keepaliveIntervalMs: 1667,
      etcdEndpoints: ["http://127.0.0.1:2379"],
      etcd: { endpoints: ["http://127.0.0.1:2379"] },
      namespace: "",
      address: "127.0.0.1:0",
    });
  });

  it("takes numbers, a connection and a namespace", () => {
    const auth = { username: "alice", password: "secret" };
    const s = nodeSettings({
      leaseTtlSeconds: 9,
      keepaliveIntervalMs: 2_500,
      etcd: { endpoints: ["10.0.0.1:2379", "https://b:2379"], tls: { ca: PEM_CERT }, auth },
      nodeName: "db-1",
      address: "10.0.0.5:7000",
      namespace: "prod/",
    });
    expect(s).toEqual({
      leaseTtlSeconds: 9,
      keepaliveIntervalMs: 2_500,
      etcdEndpoints: ["https://10.0.0.1:2379", "https://b:2379"],
      etcd: { endpoints: ["https://10.0.0.1:2379", "https://b:2379"], tls: { ca: PEM_CERT }, auth },
      nodeName: "db-1",
      address: "10.0.0.5:7000",
      namespace: "prod/",
    });
  });

  it("takes a plain list of endpoints; the keepalive default follows the TTL", () => {
    const s = nodeSettings({ etcd: ["a:1", "http://b:2"], leaseTtlSeconds: 30, nodeName: "n" });
    expect(s.etcd).toEqual({ endpoints: ["http://a:1", "http://b:2"] });
    expect(s.keepaliveIntervalMs).toBe(10_000);
  });

  it.each([
    [{ leaseTtlSeconds: 1 }, "leaseTtlSeconds: must be at least 2 s (etcd raises shorter TTLs), got 1"],
    [{ leaseTtlSeconds: 2.5 }, "leaseTtlSeconds: must be a whole number of seconds, got 2.5"],
    [
      { leaseTtlSeconds: MAX_LEASE_TTL_SECONDS + 1 },
      "leaseTtlSeconds: must be at most 3,600 s (one hour), got 3601",
    ],
    [{ leaseTtlSeconds: "5" as unknown as number }, 'leaseTtlSeconds: must be a number, got "5"'],
    [{ keepaliveIntervalMs: 5_000 }, "keepaliveIntervalMs: must be below the lease TTL (5 s), got 5000"],
    [{ keepaliveIntervalMs: 50 }, "keepaliveIntervalMs: must be at least 0.1 s, got 50"],
    [
      { keepaliveIntervalMs: 100.5 },
      "keepaliveIntervalMs: must be a whole number of milliseconds, got 100.5",
    ],
    [{ nodeName: "bad name" }, `nodeName: must be 1-128 letters, digits, '.', '_' or '-', got "bad name"`],
    [{ address: "nowhere" }, 'address: must be host:port, got "nowhere"'],
    [{ etcd: ["ftp://x:1"] }, 'etcd.endpoints[0]: malformed endpoint "ftp://x:1"'],
    [{ etcd: { endpoints: [] } }, "etcd.endpoints: must list at least one endpoint"],
    [
      { etcd: { endpoints: ["http://x:1"], tls: { ca: PEM_CERT } } },
      'etcd.endpoints[0]: "http://x:1" is plain http but TLS is configured: use https:// (or no scheme)',
    ],
    [
      { etcd: { endpoints: ["x:1"], tls: { cert: PEM_CERT } } },
      "etcd.tls.cert: a client certificate needs its private key (etcd.tls.key)",
    ],
    [
      { etcd: { endpoints: ["x:1"], tls: { key: PEM_KEY } } },
      "etcd.tls.key: a private key needs its client certificate (etcd.tls.cert)",
    ],
    [
      { etcd: { endpoints: ["x:1"], tls: { ca: PEM_KEY } } },
      'etcd.tls.ca: is not a PEM certificate (no "-----BEGIN CERTIFICATE-----")',
    ],
    [
      { etcd: { endpoints: ["x:1"], tls: { cert: PEM_KEY, key: PEM_KEY } } },
      'etcd.tls.cert: is not a PEM certificate (no "-----BEGIN CERTIFICATE-----")',
    ],
    [
      { etcd: { endpoints: ["x:1"], tls: { cert: PEM_CERT, key: PEM_CERT } } },
      'etcd.tls.key: is not a PEM private key (no "-----BEGIN ... PRIVATE KEY-----")',
    ],
    [
      { etcd: { endpoints: ["x:1"], auth: { username: "", password: "p" } } },
      "etcd.auth.username: must not be empty",
    ],
    [
      { etcd: { endpoints: ["x:1"], auth: { username: "alice", password: "" } } },
      'etcd.auth.password: the password of user "alice" must not be empty',
    ],
    [{ namespace: "prod" }, "namespace: must be empty or segments of letters, digits"],
  ] as [NodeSettingsOptions, string][])("%j is refused naming the option", (options, problem) => {
    const problems = typed(options);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(problem);
  });

  it("reports every problem at once, under 'node settings'", () => {
    let caught: unknown;
    try {
      nodeSettings({ leaseTtlSeconds: 0, nodeName: "a b", address: "x", namespace: "/" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const err = caught as ConfigError;
    expect(err.source).toBe("node settings");
    expect(err.problems.map((p) => p.split(":")[0])).toEqual([
      "leaseTtlSeconds",
      "nodeName",
      "address",
      "namespace",
    ]);
  });

  it("words the same rule for the CLI by flag and for code by option", () => {
    const cli = problemsOf(() => resolveNodeSettings({ node: "n", leaseTtl: "4000" }, {}));
    const code = typed({ leaseTtlSeconds: 4000 });
    expect(cli).toEqual(['--lease-ttl: lease TTL must be at most 3,600 s (one hour), got "4000"']);
    expect(code).toEqual(["leaseTtlSeconds: must be at most 3,600 s (one hour), got 4000"]);
  });
});
