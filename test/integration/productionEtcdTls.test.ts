import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { main } from "../../src/cli/main.js";
import { statusCommand } from "../../src/cli/statusCommand.js";
import { ClusterLayout, type EtcdTls, nodeSettings } from "../../src/config/index.js";
import { assertEtcdReachable, connectEtcd, type Etcd3, EtcdUnreachableError } from "../../src/etcd/index.js";
import { watchStreamOf } from "../../src/etcd/watchStream.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import { type EtcdCluster, type EtcdTlsEndpoints, startEtcd, type TlsFiles } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

/**
 * One etcd that requires client certificates (made by `openssl` for it), shared by every test here;
 * each test uses a namespace of its own.
 */
let etcd: EtcdCluster;
let tls: EtcdTlsEndpoints;
let dir: string;
let configFile: string;
const clients: Etcd3[] = [];
const nodes: ClusterNode[] = [];

beforeAll(async () => {
  etcd = await startEtcd({ tls: true, name: "tls" });
  if (etcd.tls === undefined) throw new Error("the harness started no TLS endpoint");
  tls = etcd.tls;
  dir = mkdtempSync(join(tmpdir(), "rdeebee-tls-"));
  configFile = join(dir, "config.yaml");
  writeFileSync(configFile, yaml.dump(ONE_GROUPING));
});

afterAll(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  for (const client of clients) client.close();
  await etcd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const material = (files: TlsFiles): EtcdTls => ({ ca: files.ca, cert: files.cert, key: files.key });
const trusted = () => ({ endpoints: tls.endpoints, tls: material(tls.trusted) });

function tracked(client: Etcd3): Etcd3 {
  clients.push(client);
  return client;
}

async function reachError(connection: Parameters<typeof assertEtcdReachable>[0]): Promise<Error> {
  const failure = await assertEtcdReachable(connection).then(
    () => new Error("etcd was reached"),
    (err: unknown) => err as Error,
  );
  expect(failure).toBeInstanceOf(EtcdUnreachableError);
  return failure;
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

describe("an etcd with client-certificate TLS", () => {
  test("a node connected over mutual TLS gets an ID, becomes primary, and status reads it", async () => {
    const namespace = "tls-node/";
    const settings = nodeSettings({ etcd: trusted(), namespace, leaseTtlSeconds: 2, nodeName: "tls-1" });
    expect(settings.etcdEndpoints[0]).toMatch(/^https:/);
    const client = tracked(connectEtcd(settings.etcd ?? [], { callTimeoutMs: 1_000 }));
    const node = createClusterNode({
      cluster: new ClusterLayout(ONE_GROUPING, { namespace }),
      settings,
      client,
      logger: silentLogger(),
    });
    nodes.push(node);
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
    // Every key the node wrote is under its namespace.
    const keys = await etcd.client().getAll().keys();
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.filter((key) => !key.startsWith(namespace))).toEqual([]);
  });

  test("the runtime's own watch stream runs over TLS", async () => {
    const client = tracked(connectEtcd(trusted(), { callTimeoutMs: 1_000 }));
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
