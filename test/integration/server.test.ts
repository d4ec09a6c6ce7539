import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { Etcd3 } from "etcd3";
import { firstValueFrom } from "rxjs";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { main } from "../../src/cli/main.js";
import { ClusterLayout, KeySpace } from "../../src/config/index.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import { crashNode } from "../../src/runtime/testing.js";
import type { ClusterJson } from "../../src/server/clusterView.js";
import {
  createServer,
  DEFAULT_MAX_BODY_BYTES,
  ListenError,
  type RunningServer,
} from "../../src/server/httpServer.js";
import { KvStore } from "../../src/server/kvStore.js";
import { createMetrics, type ServerMetrics } from "../../src/server/metrics.js";
import { NodeFactory, ONE_GROUPING, startEtcdWithNodes, stopEtcdWithNodes } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { leadershipSettled } from "../support/invariants.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

const TTL_SECONDS = 2;
const LAYOUT_KEYS = new KeySpace(ONE_GROUPING);
const CONFIG_FILE = fileURLToPath(new URL("../../config.yaml", import.meta.url));

interface Served {
  node: ClusterNode;
  store: KvStore;
  metrics: ServerMetrics;
  server: RunningServer;
}

/** Closes the server, then the store's read client and the metrics; the node is stopped by its owner. */
async function closeServed(s: Served): Promise<void> {
  await s.server.close();
  s.store.close();
  s.metrics.close();
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The sample lines of the Prometheus text format (comments and blank lines skipped). */
function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!match?.[1] || match[3] === undefined) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      if (key !== undefined && value !== undefined) labels[key] = value.replace(/\\(.)/g, "$1");
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function samplesOf(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

const sum = (samples: Sample[]) => samples.reduce((total, s) => total + s.value, 0);

describe("example server beside a cluster node, over real HTTP and a real etcd", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory;
  let served: Served[];

  beforeEach(async () => {
    ({ etcd, client, factory } = await startEtcdWithNodes({
      config: ONE_GROUPING,
      leaseTtlSeconds: TTL_SECONDS,
    }));
    served = [];
  });

  afterEach(async () => {
    await Promise.all(served.map(closeServed));
    await stopEtcdWithNodes({ etcd, factory });
  });

  async function serve(node: ClusterNode): Promise<Served> {
    const metrics = createMetrics(node);
    const store = new KvStore(node, { onEtcdError: (reason) => metrics.etcdError(reason) });
    const server = await createServer({ node, store, metrics, port: 0 });
    const entry = { node, store, metrics, server };
    served.push(entry);
    return entry;
  }

  /** Three nodes, each with its own server, started and settled into one primary and one backup. */
  async function threeServers(): Promise<{
    all: Served[];
    primary: Served;
    backup: Served;
    follower: Served;
  }> {
    const all = await Promise.all([0, 1, 2].map(() => serve(factory.create())));
    await Promise.all(all.map((s) => s.node.start()));
    const nodes = all.map((s) => s.node);
    const roles = () =>
      nodes
        .map((n) => n.role)
        .sort()
        .join(",");
    await waitUntil(
      "one primary, one backup and one follower",
      async () => roles() === "backup,follower,primary" && leadershipSettled(client, factory.layout, nodes),
    );
    const primaryId = nodes.find((n) => n.role === "primary")?.id;
    const backupId = nodes.find((n) => n.role === "backup")?.id;
    await waitUntil("every node's view of the leaders to catch up", async () => {
      const views = await Promise.all(nodes.map((n) => firstValueFrom(n.leaders$)));
      return views.every((l) => l?.primary?.record?.id === primaryId && l?.backup?.record?.id === backupId);
    });
    const byRole = (role: string) => {
      const found = all.find((s) => s.node.role === role);
      if (!found) throw new Error(`no ${role}`);
      return found;
    };
    return { all, primary: byRole("primary"), backup: byRole("backup"), follower: byRole("follower") };
  }

  const get = (s: Served, path: string) => fetch(`${s.server.url}${path}`);
  const put = (s: Served, key: string, value: string) =>
    fetch(`${s.server.url}/kv/${encodeURIComponent(key)}`, { method: "PUT", body: value });
  const json = async <T = Record<string, unknown>>(res: Response) => (await res.json()) as T;
  const metricsOf = async (s: Served) => parsePrometheus(await (await get(s, "/metrics")).text());

  test("/healthz answers 200 and /cluster shows one primary and one backup, seen alike by every node", async () => {
    const { all, primary, backup } = await threeServers();
    for (const s of all) {
      const res = await get(s, "/healthz");
      expect(res.status).toBe(200);
      expect(await json(res)).toMatchObject({ status: "ok", node: s.node.settings.nodeName });
    }

    const views = await waitUntil("every node to see the settled leaders", async () => {
      const cluster = await Promise.all(all.map(async (s) => json<ClusterJson>(await get(s, "/cluster"))));
      const agree = cluster.every(
        (c) =>
          c.leaders?.primary?.id === primary.node.id &&
          c.leaders?.backup?.id === backup.node.id &&
          c.members.flatMap((g) => g.members).length === 3,
      );
      return agree && cluster;
    });
    expect(views.map((c) => c.role).sort()).toEqual(["backup", "follower", "primary"]);
    const primaryView = views.find((c) => c.role === "primary");
    expect(primaryView).toMatchObject({
      node: primary.node.settings.nodeName,
      id: primary.node.id,
      group: 0,
      grouping: 0,
      fence: { grouping: 0, seat: 1, token: primary.node.fence?.token },
    });
    expect(primaryView?.leaders?.primary?.token).toBe(primary.node.fence?.token);
    expect(views.find((c) => c.role === "follower")?.fence).toBeNull();
    for (const view of views) {
      const ids = view.members.flatMap((g) => g.members.map((m) => m.id)).sort((a, b) => a - b);
      expect(ids).toEqual([0, 1, 2]);
    }
  });

  test("the primary accepts a write; the backup and a follower refuse it with 409 naming the primary, and read it from etcd", async () => {
    const { primary, backup, follower } = await threeServers();
    const ok = await put(primary, "greeting", "hello");
    expect(ok.status).toBe(200);
    const written = await json(ok);
    expect(written).toMatchObject({ key: "greeting", value: "hello", token: primary.node.fence?.token });

    const read = await get(primary, "/kv/greeting");
    expect(read.status).toBe(200);
    expect(await json(read)).toMatchObject({
      value: "hello",
      servedBy: { node: primary.node.settings.nodeName, role: "primary" },
    });
    const record = await client.get(LAYOUT_KEYS.commitRecordKey(0, "greeting")).json();
    expect(record).toMatchObject({ value: "hello", token: primary.node.fence?.token });

    for (const s of [backup, follower]) {
      const refused = await put(s, "greeting", "not from the primary");
      expect(refused.status).toBe(409);
      expect(await json(refused)).toMatchObject({
        error: "write_refused",
        reason: "not-primary",
        primary: { id: primary.node.id, address: primary.node.settings.address },
      });
      const read = await get(s, "/kv/greeting");
      expect(read.status).toBe(200);
      expect(await json(read)).toMatchObject({
        key: "greeting",
        value: "hello",
        token: primary.node.fence?.token,
        writer: primary.node.settings.nodeName,
        servedBy: { node: s.node.settings.nodeName },
      });
      const absent = await get(s, "/kv/never-written");
      expect(absent.status).toBe(404);
      expect(await json(absent)).toMatchObject({ error: "not_found", reason: "absent" });
    }
  });

  test("a deposed primary's writes are refused before and after it notices; the new primary's succeed", async () => {
    const { primary: old, backup } = await threeServers();
    expect((await put(old, "k", "v1")).status).toBe(200);

    await client.delete().key(factory.layout.keys.leaderKey(0, 1));
    const early = await Promise.all(Array.from({ length: 10 }, (_, i) => put(old, "k", `stale-${i}`)));
    expect(early.map((res) => res.status)).toEqual(early.map(() => 409));
    const earlyReasons = (await Promise.all(early.map((res) => json(res)))).map((body) => body.reason);
    for (const reason of earlyReasons)
      expect(["fence-lost", "not-primary", "lease-invalid"]).toContain(reason);

    await waitUntil("the backup to be promoted", () => backup.node.role === "primary");
    await waitUntil("the old primary to notice", () => old.node.role !== "primary");
    const late = await put(old, "k", "stale");
    expect(late.status).toBe(409);
    expect(await json(late)).toMatchObject({ error: "write_refused", reason: "not-primary" });
    expect(await json(await get(old, "/kv/k"))).toMatchObject({ value: "v1" });

    const fresh = await put(backup, "k", "v2");
    expect(fresh.status).toBe(200);
    expect(await json(fresh)).toMatchObject({ value: "v2", token: backup.node.fence?.token });
    expect(await client.get(LAYOUT_KEYS.commitRecordKey(0, "k")).json()).toMatchObject({
      value: "v2",
    });

    const oldErrors = samplesOf(await metricsOf(old), "rdeebee_etcd_errors_total", { reason: "fence-lost" });
    expect(sum(oldErrors)).toBe(earlyReasons.filter((r) => r === "fence-lost").length);
    const promoted = await waitUntil("the promoted node to time the failover", async () => {
      const samples = await metricsOf(backup);
      return sum(samplesOf(samples, "rdeebee_fault_to_new_primary_seconds_count")) >= 1 && samples;
    });
    // A promotion in flight is reported as candidate: backup -> candidate -> primary.
    expect(
      sum(samplesOf(promoted, "rdeebee_role_transitions_total", { from: "backup", to: "candidate" })),
    ).toBe(1);
    expect(
      sum(samplesOf(promoted, "rdeebee_role_transitions_total", { from: "candidate", to: "primary" })),
    ).toBe(1);
  });

  test("/metrics is Prometheus text with the node's role, its transitions, keepalive latency and process metrics", async () => {
    const { primary, follower } = await threeServers();
    const res = await get(primary, "/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);

    const samples = parsePrometheus(await res.text());
    expect(samplesOf(samples, "rdeebee_node_role", { role: "primary" })[0]?.value).toBe(1);
    expect(sum(samplesOf(samples, "rdeebee_node_role"))).toBe(1);
    expect(sum(samplesOf(samples, "rdeebee_role_transitions_total"))).toBeGreaterThan(0);
    expect(samplesOf(samples, "process_cpu_user_seconds_total")).toHaveLength(1);

    const followerSamples = await metricsOf(follower);
    expect(samplesOf(followerSamples, "rdeebee_node_role", { role: "follower" })[0]?.value).toBe(1);
    expect(samplesOf(followerSamples, "rdeebee_node_role", { role: "primary" })[0]?.value).toBe(0);

    await waitUntil("an acknowledged keepalive", async () => {
      const latest = await metricsOf(primary);
      return sum(samplesOf(latest, "rdeebee_keepalive_latency_seconds_count")) > 0;
    });
  });

  test("bad requests get JSON errors: unknown route 404, wrong method 405, large body 413, bad key 400", async () => {
    const { primary } = await threeServers();
    const unknown = await get(primary, "/nope");
    expect(unknown.status).toBe(404);
    expect(await json(unknown)).toMatchObject({ error: "not_found", path: "/nope" });

    const wrongMethod = await fetch(`${primary.server.url}/kv/x`, { method: "POST", body: "v" });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("GET, PUT");
    expect(await json(wrongMethod)).toMatchObject({ error: "method_not_allowed", allow: ["GET", "PUT"] });
    expect((await fetch(`${primary.server.url}/healthz`, { method: "DELETE" })).status).toBe(405);

    const large = await put(primary, "big", "x".repeat(DEFAULT_MAX_BODY_BYTES + 1));
    expect(large.status).toBe(413);
    expect(await json(large)).toMatchObject({ error: "payload_too_large", limit: DEFAULT_MAX_BODY_BYTES });
    expect((await get(primary, "/kv/big")).status).toBe(404);

    const badKey = await get(primary, "/kv/%E0%A4%A");
    expect(badKey.status).toBe(400);
    expect(await json(badKey)).toMatchObject({ error: "bad_key" });
  });

  test("a value in etcd that is not a record the server writes answers 502 naming the etcd key; the server keeps serving", async () => {
    const { primary, follower } = await threeServers();
    const planted = {
      "not-json": "plain text",
      "wrong-shape": JSON.stringify({ value: 42, node: "x", token: 1 }),
    };
    for (const [key, text] of Object.entries(planted)) {
      const etcdKey = LAYOUT_KEYS.commitRecordKey(0, key);
      await client.put(etcdKey).value(text);
      for (const s of [primary, follower]) {
        const res = await get(s, `/kv/${key}`);
        expect(res.status).toBe(502);
        const body = await json<{ message: string }>(res);
        expect(body).toMatchObject({ error: "bad_record", reason: "bad-record", key });
        expect(body.message).toContain(etcdKey);
      }
    }
    expect((await get(follower, "/healthz")).status).toBe(200);
    expect((await put(primary, "not-json", "repaired")).status).toBe(200);
    expect(await json(await get(follower, "/kv/not-json"))).toMatchObject({ value: "repaired" });
  });

  test("a second server on a port in use fails naming the port; the serve command exits 4", async () => {
    const first = await serve(factory.create());
    const { port } = first.server;
    const second = factory.create("second");
    const metrics = createMetrics(second);
    const store = new KvStore(second);
    try {
      const attempt = createServer({ node: second, store, metrics, port });
      await expect(attempt).rejects.toThrow(ListenError);
      await expect(attempt).rejects.toThrow(`port ${port} is already in use`);
    } finally {
      store.close();
      metrics.close();
    }

    const stderr: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
      stderr.push(String(chunk));
      return true;
    });
    let code: number;
    try {
      code = await main([
        "node",
        "rdeebee-cluster",
        "serve",
        "--port",
        String(port),
        "--config",
        CONFIG_FILE,
        "--etcd",
        etcd.endpoints.join(","),
        "--node",
        "cli-serve",
        "--log-level",
        "error",
      ]);
    } finally {
      spy.mockRestore();
    }
    expect(code).toBe(4);
    expect(stderr.join("")).toContain(`port ${port} is already in use`);
  });
});

describe("PUT /kv on a deposed primary that has not noticed yet", () => {
  /** A long TTL and frequent keepalives: the stalled node's local deadline stays far off while the successor is seated. */
  const LONG_TTL_SECONDS = 6;
  let etcd: EtcdCluster;
  let client: Etcd3;
  let proxy: TcpProxy;
  let factory: NodeFactory;
  let served: Served[];

  beforeEach(async () => {
    const options = { config: ONE_GROUPING, leaseTtlSeconds: LONG_TTL_SECONDS, keepaliveIntervalMs: 500 };
    ({ etcd, client, factory } = await startEtcdWithNodes(options));
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    served = [];
  });

  afterEach(async () => {
    proxy.setMode("pass");
    await Promise.all(served.map(closeServed));
    await Promise.all(served.map((s) => s.node.stop().catch(() => crashNode(s.node))));
    await proxy.close();
    await etcd.stop();
  });

  async function serve(node: ClusterNode): Promise<Served> {
    const metrics = createMetrics(node);
    const store = new KvStore(node);
    const server = await createServer({ node, store, metrics, port: 0 });
    const entry = { node, store, metrics, server };
    served.push(entry);
    return entry;
  }

  const put = (s: Served, key: string, value: string) =>
    fetch(`${s.server.url}/kv/${encodeURIComponent(key)}`, { method: "PUT", body: value });

  test("its write reaches etcd while another node holds the primary key, and is refused by the fence", async () => {
    const old = await serve(
      createClusterNode({
        cluster: factory.layout,
        settings: { ...factory.settings("old-primary"), etcdEndpoints: [proxy.endpoint] },
        logger: silentLogger(),
      }),
    );
    await old.node.start();
    await waitUntil("the node behind the proxy to be primary", () => old.node.role === "primary");
    const others = await Promise.all([0, 1].map(() => serve(factory.create())));
    await Promise.all(others.map((s) => s.node.start()));
    const successor = await waitUntil("a backup", () => others.find((s) => s.node.role === "backup"));
    const commitKey = LAYOUT_KEYS.commitRecordKey(0, "k");
    expect((await put(old, "k", "v1")).status).toBe(200);
    const oldLease = old.node.status.leaseId;

    // etcd's replies to the old primary are held back: it keeps its lease alive but sees nothing.
    proxy.setMode("stall-downstream");
    const primaryKey = factory.layout.keys.leaderKey(0, 1);
    await client.delete().key(primaryKey);
    await waitUntil("the backup to be promoted", () => successor.node.role === "primary");
    const seated = (await client.get(primaryKey).exec()).kvs[0];
    expect(seated?.lease, "the primary key is held under the successor's lease").toBe(
      successor.node.status.leaseId,
    );
    expect(old.node.role, "the old primary has not noticed").toBe("primary");

    const stale = put(old, "k", "stale");
    // Generous time for the write to go out; its reply, like the deletion, stays held until the stall ends.
    await sleep(1_000);
    expect(old.node.role, "the old primary stepped down during the stall").toBe("primary");
    proxy.setMode("pass");
    const res = await stale;
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: "write_refused", reason: "fence-lost" });
    expect(await client.get(commitKey).json()).toMatchObject({ value: "v1" });
    // The old lease is still alive, so it was the leader key's compare, not a dead lease, that refused it.
    const { TTL } = await client.leaseClient.leaseTimeToLive({ ID: oldLease ?? "" });
    expect(Number(TTL)).toBeGreaterThan(0);
  });

  test("its write under an earlier term is refused even when the primary key is again under its own lease", async () => {
    const node = createClusterNode({
      cluster: factory.layout,
      settings: { ...factory.settings("re-seated"), etcdEndpoints: [proxy.endpoint] },
      logger: silentLogger(),
    });
    const lone = await serve(node);
    await node.start();
    await waitUntil("the lone node to be primary", () => node.role === "primary");
    expect((await put(lone, "k", "v1")).status).toBe(200);
    const lease = node.status.leaseId ?? "";
    const term = node.fence?.token;

    proxy.setMode("stall-downstream");
    // A later term of the same node: same lease and value, a new create revision.
    const primaryKey = factory.layout.keys.leaderKey(0, 1);
    const value = (await client.get(primaryKey).string()) ?? "";
    await client.delete().key(primaryKey);
    await client.put(primaryKey).value(value).lease(lease);
    const seated = (await client.get(primaryKey).exec()).kvs[0];
    expect(seated?.lease).toBe(lease);
    expect(Number(seated?.create_revision)).not.toBe(term);

    const stale = put(lone, "k", "stale");
    await sleep(1_000);
    expect(node.fence?.token, "the node has not noticed its new term").toBe(term);
    proxy.setMode("pass");
    const res = await stale;
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: "write_refused", reason: "fence-lost" });
    expect(await client.get(LAYOUT_KEYS.commitRecordKey(0, "k")).json()).toMatchObject({ value: "v1" });
  });
});

describe("PUT /kv when etcd's reply to the write is lost", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let proxy: TcpProxy;
  let served: Served | undefined;

  beforeEach(async () => {
    etcd = await startEtcd();
    client = etcd.client();
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
  });

  afterEach(async () => {
    proxy.setMode("reset");
    proxy.setMode("pass");
    if (served) {
      await closeServed(served);
      await served.node.stop().catch(() => crashNode(served?.node));
      served = undefined;
    }
    await proxy.close();
    await etcd.stop();
  });

  /** A lone node, so the primary, whose etcd connection goes through the proxy. */
  async function primaryBehindProxy(): Promise<Served> {
    const factory = new NodeFactory({
      endpoints: [proxy.endpoint],
      config: ONE_GROUPING,
      leaseTtlSeconds: TTL_SECONDS,
    });
    const node = createClusterNode({
      cluster: new ClusterLayout(ONE_GROUPING),
      settings: factory.settings("behind-proxy"),
      logger: silentLogger(),
    });
    const metrics = createMetrics(node);
    const store = new KvStore(node);
    const server = await createServer({ node, store, metrics, port: 0 });
    served = { node, store, metrics, server };
    await node.start();
    await waitUntil("the lone node to be primary", () => node.role === "primary");
    return served;
  }

  const put = (s: Served, key: string, value: string) =>
    fetch(`${s.server.url}/kv/${encodeURIComponent(key)}`, { method: "PUT", body: value });

  test("a write etcd committed answers 200 with the revision etcd has, never 409", async () => {
    const primary = await primaryBehindProxy();
    const recordKey = LAYOUT_KEYS.commitRecordKey(0, "lost-reply");
    proxy.setMode("drop-reply", { match: recordKey });
    const res = await put(primary, "lost-reply", "v1");
    expect(proxy.repliesDropped).toBe(1);
    const record = (await client.get(recordKey).exec()).kvs[0];
    expect(JSON.parse(record?.value.toString() ?? "{}")).toMatchObject({ value: "v1" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      key: "lost-reply",
      value: "v1",
      revision: Number(record?.mod_revision),
      token: primary.node.fence?.token,
    });
  });

  test("a write whose outcome etcd cannot tell in time answers 5xx saying so, never 409", async () => {
    const primary = await primaryBehindProxy();
    const recordKey = LAYOUT_KEYS.commitRecordKey(0, "unknown");
    proxy.setMode("drop-reply", { match: recordKey, afterwards: "blackhole" });
    const res = await put(primary, "unknown", "v1");
    expect(proxy.repliesDropped).toBe(1);
    expect([503, 504]).toContain(res.status);
    const body = (await res.json()) as { message: string };
    expect(body.message).toMatch(/may or may not have committed/);
    proxy.setMode("reset");
    proxy.setMode("pass");
    expect(JSON.parse((await client.get(recordKey).string()) ?? "{}")).toMatchObject({ value: "v1" });
  });
});
