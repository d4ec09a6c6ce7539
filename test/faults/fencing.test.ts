import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, expect, inject, test } from "vitest";
import { ClusterStore, FenceLostError } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import type { HistoryRecord } from "../../src/runtime/history.js";
import { crashNode, etcdClientOf } from "../../src/runtime/testing.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";
import { FAULT_LAYOUT, rowOf, TTL_MS, TTL_SECONDS } from "./faultCluster.js";
import { checkHistory } from "./historyChecker.js";
import { Observer } from "./observer.js";
import { appendRow } from "./summary.js";

const PROBE_KEY = "fenced-write-probe";

interface ProxiedNode {
  node: ClusterNode;
  proxies: TcpProxy[];
}

let etcd: EtcdCluster;
let client: Etcd3;
let observer: Observer;
let dir: string;
let nodes: ProxiedNode[];
let history: HistoryRecord[];

async function startNode(name: string): Promise<ProxiedNode> {
  const proxies = await Promise.all(etcd.endpoints.map((e) => TcpProxy.forEndpoint(e)));
  const node = createClusterNode({
    cluster: FAULT_LAYOUT,
    settings: {
      leaseTtlSeconds: TTL_SECONDS,
      keepaliveIntervalMs: Math.round(TTL_MS / 3),
      etcdEndpoints: proxies.map((p) => p.endpoint),
      nodeName: name,
      address: "127.0.0.1:1",
    },
    logger: silentLogger(),
    history: (record) => history.push(record),
  });
  await node.start();
  return { node, proxies };
}

const setNetwork = (n: ProxiedNode, mode: Parameters<TcpProxy["setMode"]>[0]) => {
  for (const proxy of n.proxies) proxy.setMode(mode);
};

const primaryToken = async () =>
  (await client.get(FAULT_LAYOUT.keys.leaderKey(0, 1)).exec()).kvs[0]?.create_revision;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "rdeebee-fencing-"));
  etcd = await startEtcd({ members: 3, name: "fencing" });
  client = etcd.client();
  observer = await Observer.start(client, join(dir, "observer.jsonl"));
  history = [];
  nodes = [];
  for (const name of ["fence-a", "fence-b", "fence-c"]) nodes.push(await startNode(name));
  await waitUntil("a primary and a backup", () =>
    ["primary", "backup"].every((role) => nodes.some((n) => n.node.role === role)),
  );
});

afterEach(async () => {
  const running = nodes.filter(({ node }) => node.role !== "stopped");
  await Promise.all(running.map(({ node }) => node.stop().catch(() => crashNode(node))));
  await Promise.all(nodes.flatMap((n) => n.proxies.map((p) => p.close())));
  await observer.stop();
  await etcd.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("a primary paused between its local check and its write: the fenced transaction refuses the stale write", async () => {
  const primary = nodes.find((n) => n.node.role === "primary");
  if (!primary) throw new Error("no primary");
  const staleFence = primary.node.fence;
  expect(staleFence?.seat).toBe(1);
  await primary.node.fencedTxn((etcd) => [etcd.put(PROBE_KEY).value("while primary")]);

  // The local check passes and the write leaves, but the link holds it until the office is gone.
  const revision = Number((await client.get(PROBE_KEY).exec()).header.revision);
  const startedAt = Date.now();
  setNetwork(primary, "stall-upstream");
  const pending = primary.node.fencedTxn((etcd) => [etcd.put(PROBE_KEY).value("stale")]);
  const outcome = pending.then(
    () => "committed",
    (err: unknown) => err,
  );
  await waitUntil(
    "another node to take the primary key",
    async () => (await primaryToken()) !== undefined && Number(await primaryToken()) !== staleFence?.token,
    6 * TTL_MS,
  );
  setNetwork(primary, "pass");
  // Refused when the held write reaches etcd within its deadline; when it cannot be confirmed
  // either way in time, the node says unknown. Either way it must never commit (checked below).
  const stale = await outcome;
  const staleError = stale instanceof Error ? stale.name : String(stale);
  expect(["FenceLostError", "WriteOutcomeUnknownError"]).toContain(staleError);

  // Its next pending write, with the fence it captured before, through its own connection.
  const store = new ClusterStore(etcdClientOf(primary.node), FAULT_LAYOUT, silentLogger());
  if (!staleFence) throw new Error("no fence");
  await expect(
    store.fencedTxn(staleFence, (etcd) => [etcd.put(PROBE_KEY).value("stale again")]),
  ).rejects.toBeInstanceOf(FenceLostError);

  expect(await client.get(PROBE_KEY).string()).toBe("while primary");
  expect(history).toContainEqual(
    expect.objectContaining({
      kind: "leader",
      action: "write",
      outcome: staleError === "FenceLostError" ? "refused" : expect.stringMatching(/^(unknown|error)$/),
      token: staleFence.token,
    }),
  );

  await Promise.all(nodes.map(({ node }) => node.stop()));
  await observer.catchUp(client);
  const report = checkHistory({ layout: FAULT_LAYOUT, events: observer.events, histories: history });
  const trial = { startedAt, revision, endRevision: observer.revision };
  appendRow(
    inject("faultRowsFile"),
    rowOf(
      "primary stalled between check and write",
      [trial],
      report,
      `stale write not committed: ${staleError}`,
    ),
  );
  expect(report.violations).toEqual([]);
});
