import { performance } from "node:perf_hooks";
import type { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { freePort, loopbackUrl } from "../../src/cli/local/etcdMember.js";
import { ClusterLayout } from "../../src/config/index.js";
import { EtcdUnreachableError } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode, NotPrimaryError } from "../../src/runtime/clusterNode.js";
import type { HistoryRecord } from "../../src/runtime/history.js";
import type { LeadershipEndReason, LeadershipTerm } from "../../src/runtime/leadership.js";
import { crashNode } from "../../src/runtime/testing.js";
import {
  NodeStoppedError,
  StartAbortedError,
  WaitAbortedError,
  WaitTimeoutError,
} from "../../src/runtime/waiting.js";
import {
  type NodeFactory,
  ONE_GROUPING,
  SEED_CONFIG,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

/** TTL 3 s: the session's margin and the leadership lead are 300 ms each, room for a loaded machine. */
const TTL_SECONDS = 3;
const MARGIN_MS = Math.max(200, TTL_SECONDS * 100);
const layout = new ClusterLayout(ONE_GROUPING);
const PRIMARY_KEY = layout.keys.leaderKey(0, 1);

/** Every term a node starts and how each ended, on one monotonic clock. */
function recordTerms(node: ClusterNode) {
  const terms: { term: LeadershipTerm; startedAt: number; endedAt?: number; reason?: LeadershipEndReason }[] =
    [];
  const unsubscribe = node.onLeadership({
    started: (term) => {
      terms.push({ term, startedAt: performance.now() });
    },
    stopped: ({ fence, reason }) => {
      const entry = terms.find((t) => t.term.fence.token === fence.token && t.reason === undefined);
      if (entry) Object.assign(entry, { endedAt: performance.now(), reason });
    },
  });
  return { terms, unsubscribe };
}

describe("start without etcd", () => {
  test("start({ timeoutMs }) against a closed port rejects with EtcdUnreachableError and stops the node", async () => {
    const port = await freePort();
    const node = createClusterNode({
      cluster: layout,
      settings: {
        leaseTtlSeconds: 2,
        keepaliveIntervalMs: 600,
        etcdEndpoints: [loopbackUrl(port)],
        nodeName: "nowhere",
        address: "127.0.0.1:1",
      },
      logger: silentLogger(),
    });
    const error = await node.start({ timeoutMs: 1_500 }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(EtcdUnreachableError);
    expect(String(error)).toContain(loopbackUrl(port));
    expect(node.role).toBe("stopped");
  });

  test("start({ signal }) rejects with StartAbortedError once the signal aborts, and stops the node", async () => {
    const port = await freePort();
    const node = createClusterNode({
      cluster: layout,
      settings: {
        leaseTtlSeconds: 2,
        keepaliveIntervalMs: 600,
        etcdEndpoints: [loopbackUrl(port)],
        nodeName: "aborted",
        address: "127.0.0.1:1",
      },
      logger: silentLogger(),
    });
    const controller = new AbortController();
    const started = node.start({ signal: controller.signal });
    setTimeout(() => controller.abort(new Error("shutting down")), 300);
    const error = await started.catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StartAbortedError);
    expect((error as Error).cause).toEqual(new Error("shutting down"));
    expect(node.role).toBe("stopped");
  });

  test("a timeoutMs that is not a duration is refused with an error naming the option", async () => {
    const node = createClusterNode({
      cluster: layout,
      settings: {
        leaseTtlSeconds: 2,
        keepaliveIntervalMs: 600,
        etcdEndpoints: [loopbackUrl(1)],
        nodeName: "bad-timeout",
        address: "127.0.0.1:1",
      },
      logger: silentLogger(),
    });
    await expect(node.start({ timeoutMs: -1 })).rejects.toThrow(/start option timeoutMs/);
    await expect(node.waitForRole("primary", { timeoutMs: Number.NaN })).rejects.toThrow(
      /waitForRole option timeoutMs/,
    );
    await node.stop();
  });
});

describe("embedding API against etcd", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let factory: NodeFactory;
  let proxy: TcpProxy;
  const extra: ClusterNode[] = [];

  beforeEach(async () => {
    ({ etcd, client, factory } = await startEtcdWithNodes({
      config: ONE_GROUPING,
      leaseTtlSeconds: TTL_SECONDS,
    }));
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
  });

  afterEach(async () => {
    for (const node of extra.splice(0)) await node.stop().catch(() => crashNode(node));
    await proxy.close();
    await stopEtcdWithNodes({ etcd, factory });
  });

  /** A node of the factory's cluster with extra options (its own client, a history, a proxied link). */
  function nodeWith(
    name: string,
    options: {
      viaProxy?: boolean;
      client?: Etcd3;
      history?: HistoryRecord[];
      keepaliveIntervalMs?: number;
      cluster?: ClusterLayout;
    } = {},
  ): ClusterNode {
    const settings = {
      ...factory.settings(name),
      ...(options.keepaliveIntervalMs ? { keepaliveIntervalMs: options.keepaliveIntervalMs } : {}),
    };
    const node = createClusterNode({
      cluster: options.cluster ?? layout,
      settings: options.viaProxy ? { ...settings, etcdEndpoints: [proxy.endpoint] } : settings,
      client: options.client,
      history: options.history ? (record) => options.history?.push(record) : undefined,
      logger: silentLogger(),
    });
    extra.push(node);
    return node;
  }

  test("waitForRole resolves with the role, times out or aborts with typed errors, and rejects when the node stops", async () => {
    const [first] = await factory.startMany(1);
    const primary = await first?.waitForRole("primary", { timeoutMs: 30_000 });
    expect(primary?.fence).toMatchObject({ grouping: 0, seat: 1 });
    const second = factory.create("second");
    await second.start();
    await second.waitForRole("backup", { timeoutMs: 30_000 });

    await expect(second.waitForRole("primary", { timeoutMs: 200 })).rejects.toBeInstanceOf(WaitTimeoutError);
    await expect(
      second.waitFor((s) => s.role === "primary", { signal: AbortSignal.abort() }),
    ).rejects.toBeInstanceOf(WaitAbortedError);
    const waiting = second.waitForRole("primary");
    await second.stop();
    await expect(waiting).rejects.toBeInstanceOf(NodeStoppedError);
  });

  test("a leadership term starts with the primary's fence and its signal aborts on stop, before the key is deleted", async () => {
    const node = nodeWith("leader");
    const { terms } = recordTerms(node);
    await node.start();
    const status = await node.waitForRole("primary", { timeoutMs: 30_000 });
    await waitUntil("a term", () => terms.length === 1);
    expect(terms[0]?.term.fence).toEqual(status.fence);
    expect(node.leadership$).toBeDefined();

    let deletedAt: number | undefined;
    const watcher = await client.watch().key(PRIMARY_KEY).create();
    watcher.on("delete", () => {
      deletedAt ??= performance.now();
    });
    await node.stop();
    await waitUntil("the primary key's deletion", () => deletedAt !== undefined);
    await watcher.cancel();
    expect(terms[0]?.reason).toBe("stopping");
    expect(terms[0]?.term.signal.aborted).toBe(true);
    expect(terms[0]?.endedAt).toBeLessThan(deletedAt ?? 0);
  });

  test("a primary whose key is taken from it is deposed: its signal aborts", async () => {
    const node = nodeWith("deposed");
    const { terms } = recordTerms(node);
    await node.start();
    await node.waitForRole("primary", { timeoutMs: 30_000 });
    await waitUntil("a term", () => terms.length === 1);
    await client.delete().key(PRIMARY_KEY);
    await waitUntil("the term to end", () => terms[0]?.reason !== undefined);
    expect(terms[0]?.reason).toBe("deposed");
    expect(terms[0]?.term.signal.reason).toMatchObject({ name: "LeadershipLostError", reason: "deposed" });
  });

  test("a primary whose link is stalled: its signal aborts before its local deadline and before etcd deletes its key; fencedTxn is refused from then on", async () => {
    const cutOff = nodeWith("behind-proxy", { viaProxy: true });
    const { terms } = recordTerms(cutOff);
    await cutOff.start();
    await cutOff.waitForRole("primary", { timeoutMs: 30_000 });
    const [backup] = await factory.startMany(1);
    await backup?.waitForRole("backup", { timeoutMs: 30_000 });
    await waitUntil("a term", () => terms.length === 1);

    let lastAckedSentAt: number | undefined;
    let suspendedAt: number | undefined;
    let deletedAt: number | undefined;
    let refusedWhileMember: unknown;
    const acks = cutOff.keepaliveRoundTrips$.subscribe((roundTripMs) => {
      lastAckedSentAt = performance.now() - roundTripMs;
    });
    const roles = cutOff.role$.subscribe((role) => {
      if (role === "suspended") suspendedAt ??= performance.now();
    });
    const watcher = await client.watch().key(PRIMARY_KEY).create();
    watcher.on("delete", () => {
      deletedAt ??= performance.now();
    });
    terms[0]?.term.signal.addEventListener("abort", () => {
      // Still primary with a valid session: only the ended term stops the write.
      cutOff
        .fencedTxn((etcd) => [etcd.put("embedding/after-abort").value("x")])
        .catch((err: unknown) => {
          refusedWhileMember = err;
        });
    });
    await waitUntil("an acknowledged keepalive", () => lastAckedSentAt !== undefined);

    proxy.setMode("blackhole");
    await waitUntil(
      "the node to step down and etcd to expire its lease",
      () => suspendedAt !== undefined && deletedAt !== undefined,
      TTL_SECONDS * 10_000,
    );
    acks.unsubscribe();
    roles.unsubscribe();
    await watcher.cancel();
    proxy.setMode("pass");

    const term = terms[0];
    const localDeadline = (lastAckedSentAt ?? 0) + TTL_SECONDS * 1000 - MARGIN_MS;
    expect(term?.reason).toBe("deadline");
    expect(term?.endedAt).toBeLessThan(localDeadline);
    expect(term?.endedAt).toBeLessThan(suspendedAt ?? 0);
    expect(term?.endedAt).toBeLessThan(deletedAt ?? 0);
    expect(refusedWhileMember).toBeInstanceOf(NotPrimaryError);
    expect((await client.get("embedding/after-abort").string()) ?? undefined).toBeUndefined();
  });

  test("resign() gives the seat up without stopping: the signal aborts, another node takes the seat, the resigned node campaigns for none during one TTL", async () => {
    const history: HistoryRecord[] = [];
    const resigner = nodeWith("resigner", { history });
    await resigner.start();
    await resigner.waitForRole("primary", { timeoutMs: 30_000 });
    const [backup] = await factory.startMany(1);
    await backup?.waitForRole("backup", { timeoutMs: 30_000 });
    // Let the resigner's view of the grouping settle: it holds the primary seat, the backup is taken.
    const { terms } = recordTerms(resigner);
    await waitUntil("a term", () => terms.length === 1);

    const resignedAt = Date.now();
    expect(await resigner.resign({ timeoutMs: 30_000 })).toBe(true);
    expect(terms[0]?.reason).toBe("resigned");
    await backup?.waitForRole("primary", { timeoutMs: 30_000 });
    // The backup seat is vacant now; the resigner is the only other member, so it takes it, after the hold.
    await resigner.waitForRole("backup", { timeoutMs: 30_000 });
    expect(resigner.status.id).toBeDefined();
    const campaigns = history.filter(
      (r) => r.kind === "leader" && r.action === "campaign" && r.t >= resignedAt,
    );
    expect(campaigns.length).toBeGreaterThan(0);
    expect(Math.min(...campaigns.map((r) => r.t)) - resignedAt).toBeGreaterThanOrEqual(
      TTL_SECONDS * 1000 - 50,
    );
    expect(terms.length).toBe(1);
  });

  test("leadersOf follows another grouping's seats; watchLeaders refuses a grouping the layout lacks", async () => {
    const seed = new ClusterLayout(SEED_CONFIG);
    const node = nodeWith("observer", { cluster: seed });
    await node.start();
    const seen: (number | undefined)[] = [];
    const subscription = node.leadersOf(1).subscribe((leaders) => seen.push(leaders.primary?.record?.id));
    await waitUntil("the first view", () => seen.length === 1);
    expect(seen).toEqual([undefined]);
    await client
      .put(seed.keys.leaderKey(1, 1))
      .value(JSON.stringify({ id: 9, name: "far", address: "10.0.0.9:1" }));
    await waitUntil("the primary of grouping 1", () => seen.includes(9));
    subscription.unsubscribe();
    expect(() => node.leadersOf(seed.groupingCount)).toThrow(/grouping 4 is outside/);

    const status = await node.readClusterStatus();
    expect(status.groupings[1]?.primary?.id).toBe(9);
  });

  test("a client passed in is used and left open by stop()", async () => {
    const own = etcd.client();
    const node = nodeWith("own-client", { client: own });
    await node.start();
    await node.waitForRole("primary", { timeoutMs: 30_000 });
    await node.stop();
    await own.put("embedding/still-open").value("yes");
    expect(await own.get("embedding/still-open").string()).toBe("yes");
  });
});
