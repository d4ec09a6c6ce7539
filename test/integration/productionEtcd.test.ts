import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Range } from "etcd3";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { main } from "../../src/cli/main.js";
import { repairCommand } from "../../src/cli/repairCommand.js";
import { statusCommand } from "../../src/cli/statusCommand.js";
import { ClusterLayout, type EtcdConnection, type EtcdTls, nodeSettings } from "../../src/config/index.js";
import { assertEtcdReachable, connectEtcd, type Etcd3, EtcdUnreachableError } from "../../src/etcd/index.js";
import { type WatchListener, watchStreamOf } from "../../src/etcd/watchStream.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { CLI_BIN, cliEnv, ensureBuilt, PACKAGE_ROOT } from "../support/cli.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import { type EtcdCluster, type EtcdTlsEndpoints, startEtcd, type TlsFiles } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

/**
 * A production etcd: one with client-certificate TLS, one with authentication on, each shared by
 * the tests of its block. Nodes and clients are tracked per block and stopped before its etcd.
 */
let dir: string;
let configFile: string;

beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "rdeebee-production-etcd-"));
  configFile = join(dir, "config.yaml");
  writeFileSync(configFile, yaml.dump(ONE_GROUPING));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** What a block started: stopped (nodes first) before its etcd. */
class Started {
  private readonly nodes: ClusterNode[] = [];
  private readonly clients: Etcd3[] = [];

  client(client: Etcd3): Etcd3 {
    this.clients.push(client);
    return client;
  }

  node(node: ClusterNode): ClusterNode {
    this.nodes.push(node);
    return node;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
    for (const client of this.clients) client.close();
  }
}

async function reachError(
  connection: Parameters<typeof assertEtcdReachable>[0],
  probeKey?: string,
): Promise<Error> {
  const failure = await assertEtcdReachable(connection, undefined, probeKey).then(
    () => new Error("etcd was reached"),
    (err: unknown) => err as Error,
  );
  expect(failure).toBeInstanceOf(EtcdUnreachableError);
  return failure;
}

/** The built CLI in a child process, without blocking this one (its node keeps its lease alive). */
function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI_BIN, ...args],
      { cwd: PACKAGE_ROOT, env: cliEnv(env) },
      (err, stdout, stderr) => {
        resolve({ status: err === null ? 0 : Number(err.code), stdout, stderr });
      },
    );
  });
}

/** `rdeebee-cluster <args>` in this process; its exit code and what it wrote to stderr. */
async function cli(...args: string[]): Promise<{ code: number; stderr: string }> {
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await main(["node", "rdeebee-cluster", ...args], () => undefined);
    return { code, stderr: written.join("") };
  } finally {
    process.stderr.write = write;
  }
}

/** Records what a watch reports, as short strings. */
function recorder(): WatchListener & { seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    attached: () => seen.push("attached"),
    events: (events) => seen.push(...events.map((e) => `${e.type} ${e.kv.key.toString()}`)),
    canceled: ({ reason }) => seen.push(`canceled: ${reason}`),
    closed: () => seen.push("closed"),
  };
}

describe("an etcd with client-certificate TLS", () => {
  let etcd: EtcdCluster;
  let tls: EtcdTlsEndpoints;
  const started = new Started();

  beforeAll(async () => {
    etcd = await startEtcd({ tls: true, name: "tls" });
    if (etcd.tls === undefined) throw new Error("the harness started no TLS endpoint");
    tls = etcd.tls;
  });

  afterAll(async () => {
    await started.stop();
    await etcd?.stop();
  });

  const material = (files: TlsFiles): EtcdTls => ({ ca: files.ca, cert: files.cert, key: files.key });
  const trusted = () => ({ endpoints: tls.endpoints, tls: material(tls.trusted) });

  test("a node connected over mutual TLS gets an ID, becomes primary, and status reads it", async () => {
    const namespace = "tls-node/";
    const settings = nodeSettings({ etcd: trusted(), namespace, leaseTtlSeconds: 10, nodeName: "tls-1" });
    expect(settings.etcdEndpoints[0]).toMatch(/^https:/);
    const client = started.client(connectEtcd(settings.etcd ?? [], { callTimeoutMs: 1_000 }));
    const node = createClusterNode({
      cluster: new ClusterLayout(ONE_GROUPING, { namespace }),
      settings,
      client,
      logger: silentLogger(),
    });
    started.node(node);
    const { id } = await node.start();
    await node.waitFor((s) => s.role === "primary");

    const [endpoint] = tls.endpoints;
    const out: string[] = [];
    await statusCommand(
      {
        config: configFile,
        etcd: endpoint,
        etcdCa: tls.trusted.paths.ca,
        etcdCert: tls.trusted.paths.cert,
        etcdKey: tls.trusted.paths.key,
        namespace,
        json: true,
      },
      (text) => out.push(text),
    );
    const status = JSON.parse(out.join("\n"));
    expect(status.groupings[0].primary).toMatchObject({ id, name: "tls-1" });
    // The built CLI, with the certificates and namespace from the environment.
    const { paths } = tls.trusted;
    const env = {
      ETCD: endpoint,
      ETCD_CA: paths.ca,
      ETCD_CERT: paths.cert,
      ETCD_KEY: paths.key,
      NAMESPACE: namespace,
    };
    const fromEnv = await runCli(["status", "--config", configFile, "--json"], env);
    expect(fromEnv.status, fromEnv.stderr).toBe(0);
    expect(JSON.parse(fromEnv.stdout).groupings[0].primary).toMatchObject({ id, name: "tls-1" });
    // Every key the node wrote is under its namespace.
    const keys = await etcd.client().getAll().keys();
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.filter((key) => !key.startsWith(namespace))).toEqual([]);
  });

  test("the runtime's own watch stream runs over TLS", async () => {
    const client = started.client(connectEtcd(trusted(), { callTimeoutMs: 1_000 }));
    const events: string[] = [];
    const handle = watchStreamOf(client, silentLogger()).watchPrefix("tls-watch/", 1, {
      attached: () => undefined,
      events: (batch) => events.push(...batch.map((event) => event.kv.key.toString())),
      canceled: ({ reason }) => events.push(`canceled: ${reason}`),
      closed: () => undefined,
    });
    await client.put("tls-watch/a").value("1").exec();
    await waitUntil("the watched put", () => events.length > 0);
    handle.cancel();
    expect(events).toEqual(["tls-watch/a"]);
  });

  test("a client certificate signed by a CA etcd does not trust fails fast, naming TLS", async () => {
    const err = await reachError({
      endpoints: tls.endpoints,
      tls: { ca: tls.trusted.ca, cert: tls.untrusted.cert, key: tls.untrusted.key },
    });
    expect(err.message).toMatch(/TLS handshake failed: etcd refused the client certificate/);
  });

  test("no client certificate fails fast, naming TLS", async () => {
    const err = await reachError({ endpoints: tls.endpoints, tls: { ca: tls.trusted.ca } });
    expect(err.message).toMatch(/TLS handshake failed: etcd refused the client certificate/);
  });

  test("a server certificate the given CA did not sign fails fast, naming TLS", async () => {
    const err = await reachError({ endpoints: tls.endpoints, tls: material(tls.untrusted) });
    expect(err.message).toMatch(
      /TLS handshake failed: etcd's server certificate is not signed by the CA given/,
    );
  });

  test("the CLI exits 3 with the TLS reason for a certificate etcd does not trust", async () => {
    const [endpoint = ""] = tls.endpoints;
    const flags = ["--config", configFile, "--etcd", endpoint, "--etcd-ca", tls.trusted.paths.ca];
    const untrusted = ["--etcd-cert", tls.untrusted.paths.cert, "--etcd-key", tls.untrusted.paths.key];
    const node = await cli("node", ...flags, ...untrusted, "--node", "tls-stranger");
    expect(node.code).toBe(3);
    expect(node.stderr).toMatch(
      /cannot reach etcd at https:\/\/127\.0\.0\.1:\d+: TLS handshake failed: etcd refused the client certificate/,
    );
  });

  test("the CLI exits 2 naming the flag for a key file that is not a PEM private key", async () => {
    const [endpoint = ""] = tls.endpoints;
    const swapped = ["--etcd-cert", tls.trusted.paths.cert, "--etcd-key", tls.trusted.paths.cert];
    const r = await cli("node", "--config", configFile, "--etcd", endpoint, ...swapped, "--node", "tls-x");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--etcd-key: is not a PEM private key");
  });
});

/** etcd's simple tokens expire after this many seconds without use (default 300): short, to see it happen. */
const TOKEN_TTL_SECONDS = 2;
const NAMESPACE = "team-a/";
const USER = "alice";
const PASSWORD = "alice-secret";

/** Long enough for etcd to drop every token not used meanwhile (it checks once a second). */
const tokenExpiry = () => sleep((TOKEN_TTL_SECONDS + 2) * 1000);

/** Root, and a user whose only role may read and write the keys under NAMESPACE. */
describe("an etcd with authentication on", () => {
  let etcd: EtcdCluster;
  let passwordFile: string;
  const started = new Started();

  beforeAll(async () => {
    etcd = await startEtcd({
      name: "auth",
      rootPassword: "root-secret",
      extraArgs: ["--auth-token-ttl", String(TOKEN_TTL_SECONDS)],
    });
    const root = etcd.client();
    await root.role("team-a").create();
    await root.role("team-a").grant({ permission: "Readwrite", range: Range.prefix(NAMESPACE) });
    await root.user(USER).create(PASSWORD);
    await root.user(USER).addRole("team-a");
    passwordFile = join(dir, "password");
    writeFileSync(passwordFile, `${PASSWORD}\n`);
  });

  afterAll(async () => {
    await started.stop();
    await etcd?.stop();
  });

  const asUser = (password = PASSWORD): EtcdConnection => ({
    endpoints: etcd.endpoints,
    auth: { username: USER, password },
  });

  test("a user limited to the namespace runs a node: it gets an ID, becomes primary, and status reads it", async () => {
    const settings = nodeSettings({
      etcd: asUser(),
      namespace: NAMESPACE,
      leaseTtlSeconds: 10,
      nodeName: "auth-1",
    });
    const client = started.client(connectEtcd(asUser(), { callTimeoutMs: 1_000 }));
    const node = createClusterNode({
      cluster: new ClusterLayout(ONE_GROUPING, { namespace: NAMESPACE }),
      settings,
      client,
      logger: silentLogger(),
    });
    started.node(node);
    const { id } = await node.start();
    await node.waitFor((s) => s.role === "primary");

    const out: string[] = [];
    const flags = { config: configFile, etcd: etcd.endpoints.join(","), etcdUser: USER };
    await statusCommand(
      { ...flags, etcdPasswordFile: passwordFile, namespace: NAMESPACE, json: true },
      (text) => out.push(text),
    );
    expect(JSON.parse(out.join("\n")).groupings[0].primary).toMatchObject({ id, name: "auth-1" });
    // The built CLI, with the user, password and namespace from the environment.
    const env = { ETCD: etcd.endpoints.join(","), ETCD_USER: USER, ETCD_PASSWORD: PASSWORD, NAMESPACE };
    const fromEnv = await runCli(["status", "--config", configFile, "--json"], env);
    expect(fromEnv.status, fromEnv.stderr).toBe(0);
    expect(JSON.parse(fromEnv.stdout).groupings[0].primary).toMatchObject({ id, name: "auth-1" });
    // The same from flags, the password from a file.
    const fromFlags = await runCli(
      [
        "status",
        ...["--config", configFile, "--json", "--etcd", etcd.endpoints.join(",")],
        ...["--etcd-user", USER, "--etcd-password-file", passwordFile, "--namespace", NAMESPACE],
      ],
      {},
    );
    expect(fromFlags.status, fromFlags.stderr).toBe(0);
    expect(JSON.parse(fromFlags.stdout).groupings[0].primary).toMatchObject({ id, name: "auth-1" });
    const refused = await runCli(["status", "--config", configFile], { ...env, ETCD_PASSWORD: "wrong" });
    expect(refused.status).toBe(3);
    expect(refused.stderr).toMatch(/etcd refused user "alice": wrong user name or password/);

    // Past the token's expiry the node still leads, and a write of its as primary still commits.
    await tokenExpiry();
    expect(node.role).toBe("primary");
    await node.fencedTxn((tx) => [tx.put(`${NAMESPACE}after-expiry`).value("1")]);
  });

  test("repair, as the user, reads the namespace's keys", async () => {
    // Not a slot of group 0: reported, never deleted; the node ignores it.
    const stray = `${NAMESPACE}member-RDeeBee-group-0/77`;
    await etcd.client().put(stray).value("{}").exec();
    const out: string[] = [];
    const flags = { config: configFile, etcd: etcd.endpoints.join(","), etcdUser: USER };
    const options = { ...flags, etcdPasswordFile: passwordFile, namespace: NAMESPACE };
    expect(await repairCommand(options, (text) => out.push(text))).toBe(0);
    expect(out[0]).toMatch(/^RDeeBee at revision \d+: 0 poisoned leader key\(s\)$/);
    expect(out.filter((line) => line.startsWith("bad value (not repaired): "))).toEqual([
      expect.stringContaining(stray),
    ]);
    await etcd.client().delete().key(stray).exec();
  });

  test("a wrong password fails fast, naming the user", async () => {
    const err = await reachError(asUser("not-the-password"));
    expect(err.message).toMatch(/etcd refused user "alice": wrong user name or password/);
  });

  test("a namespace outside the user's permission fails fast, naming the key it may not read", async () => {
    const layout = new ClusterLayout(ONE_GROUPING, { namespace: "team-b/" });
    const err = await reachError(asUser(), layout.keys.idKey);
    expect(err.message).toMatch(
      /user "alice" may not read "team-b\/id_key": its role needs read\/write permission/,
    );
  });

  test("node exits 3 naming the user for a wrong password, and for a namespace outside its permission; status refuses too", async () => {
    const wrongFile = join(dir, "wrong-password");
    writeFileSync(wrongFile, "not-the-password\n");
    const flags = ["--config", configFile, "--etcd", etcd.endpoints.join(","), "--etcd-user", USER];
    const wrong = await cli("node", ...flags, "--etcd-password-file", wrongFile, "--namespace", NAMESPACE);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/etcd refused user "alice": wrong user name or password/);
    const outside = await cli("node", ...flags, "--etcd-password-file", passwordFile, "--node", "auth-x");
    expect(outside.code).toBe(3);
    expect(outside.stderr).toMatch(/user "alice" may not read "id_key"/);

    const status = statusCommand(
      { config: configFile, etcd: etcd.endpoints.join(","), etcdUser: USER, etcdPasswordFile: wrongFile },
      () => undefined,
    );
    await expect(status).rejects.toThrow(/etcd refused user "alice": wrong user name or password/);
  });

  test("the watch stream carries the token, and a watch it holds keeps delivering after that token expired", async () => {
    const client = started.client(connectEtcd(asUser(), { callTimeoutMs: 1_000 }));
    const first = recorder();
    watchStreamOf(client, silentLogger()).watchPrefix(`${NAMESPACE}watch/`, 1, first);
    await waitUntil("the first watch attached", () => first.seen.includes("attached"));
    const root = etcd.client();
    await root.put(`${NAMESPACE}watch/before`).value("1").exec();
    await waitUntil("the event before expiry", () => first.seen.includes("Put team-a/watch/before"));

    await tokenExpiry();
    await root.put(`${NAMESPACE}watch/after`).value("1").exec();
    await waitUntil("the event after expiry", () => first.seen.includes("Put team-a/watch/after"));
    expect(first.seen).toEqual(["attached", "Put team-a/watch/before", "Put team-a/watch/after"]);
  });

  /**
   * etcd checks the token a stream was opened with on every create, so once it expired every new
   * watch on that stream is refused with "invalid auth token". `watchStream` reopens the stream on
   * such a refusal, after a read that makes etcd3 log in again.
   */
  test("a watch created after the token expired, on the stream opened before, attaches", async () => {
    const client = started.client(connectEtcd(asUser(), { callTimeoutMs: 1_000 }));
    const stream = watchStreamOf(client, silentLogger());
    const first = recorder();
    stream.watchPrefix(`${NAMESPACE}late/`, 1, first);
    await waitUntil("the first watch attached", () => first.seen.includes("attached"));
    await tokenExpiry();
    await client.put(`${NAMESPACE}late/a`).value("1").exec();
    const second = recorder();
    stream.watchPrefix(`${NAMESPACE}late/`, 1, second);
    await waitUntil("the second watch answered", () => second.seen.length > 0);
    expect(second.seen[0]).toBe("attached");
  });
});
