import { performance } from "node:perf_hooks";
import { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { EtcdSession, leaseSecondsLeft } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { type ClusterNode, createClusterNode } from "../../src/runtime/clusterNode.js";
import type { NodeRole } from "../../src/runtime/roles.js";
import { crashNode } from "../../src/runtime/testing.js";
import { readEtcdHistory } from "../../src/testing/etcdHistory.js";
import {
  type NodeFactory,
  ONE_GROUPING,
  startEtcdWithNodes,
  stopEtcdWithNodes,
} from "../support/clusterNodes.js";
import type { EtcdCluster } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

/** Its 300 ms margin leaves room for a loaded event loop between the deadline and the step-down. */
const TTL_SECONDS = 3;
const TTL_MS = TTL_SECONDS * 1000;
const WAIT_MS = 10 * TTL_MS;
const layout = new ClusterLayout(ONE_GROUPING);
const PRIMARY_KEY = layout.keys.leaderKey(0, 1);
const WRITES = "app/stall/";

/** What the whole process lives through under SIGSTOP: no timer, no socket, no callback runs. */
function freezeProcess(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Every role the node takes from now on, with the monotonic time it took it. */
function recordRoles(node: ClusterNode): { roles: { role: NodeRole; at: number }[]; stop: () => void } {
  const roles: { role: NodeRole; at: number }[] = [];
  const subscription = node.role$.subscribe((role) => roles.push({ role, at: performance.now() }));
  return { roles, stop: () => subscription.unsubscribe() };
}

describe("stall step-down: a node past its local deadline vacates its seat itself", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let proxy: TcpProxy;
  let factory: NodeFactory;
  let stalled: ClusterNode | undefined;
  let rearm: NodeJS.Timeout | undefined;

  beforeEach(async () => {
    ({ etcd, client, factory } = await startEtcdWithNodes({
      config: ONE_GROUPING,
      leaseTtlSeconds: TTL_SECONDS,
    }));
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
  });

  afterEach(async () => {
    clearInterval(rearm);
    proxy.setMode("pass");
    await stalled?.stop().catch(() => crashNode(stalled));
    stalled = undefined;
    await proxy.close();
    await stopEtcdWithNodes({ etcd, factory });
  });

  async function startBehindProxy(name: string): Promise<ClusterNode> {
    const settings = { ...factory.settings(name), etcdEndpoints: [proxy.endpoint] };
    stalled = createClusterNode({
      cluster: layout,
      settings,
      logger: silentLogger(),
    });
    await stalled.start();
    await stalled.waitForRole("primary", { timeoutMs: WAIT_MS });
    return stalled;
  }

  test("(a) one-way stall: the primary deletes its own key while its lease lives, the backup is promoted, the old primary comes back a follower and wrote nothing after its deadline", async () => {
    const primary = await startBehindProxy("stalled-primary");
    const others = await factory.startMany(2);
    await waitUntil("a backup", () => others.some((n) => n.role === "backup"), WAIT_MS);
    const leaseId = primary.status.leaseId ?? "";
    const token = primary.fence?.token;

    let deleted = false;
    let leaseLeftAtDelete: number | undefined;
    const watcher = await client.watch().key(PRIMARY_KEY).create();
    watcher.on("delete", () => {
      if (deleted) return;
      deleted = true;
      void leaseSecondsLeft(client, leaseId, new Date(Date.now() + 5_000)).then(
        (left) => (leaseLeftAtDelete = left ?? -1),
      );
    });
    // The primary writes all along, as a database would.
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await primary.fencedTxn((c) => [c.put(`${WRITES}${i}`).value("v")]).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const { roles, stop } = recordRoles(primary);

    proxy.setMode("stall-downstream");
    await waitUntil("the primary key to be deleted and the lease read", () => leaseLeftAtDelete, WAIT_MS);
    expect(leaseLeftAtDelete, "the key went with the lease: nobody vacated the seat").toBeGreaterThan(0);
    const newPrimary = await waitUntil(
      "the backup to be promoted",
      () => others.find((n) => n.role === "primary"),
      WAIT_MS,
    );
    expect(
      roles.some((r) => r.role === "suspended"),
      "the stalled primary never suspended",
    ).toBe(true);

    proxy.setMode("pass");
    await waitUntil(
      "the old primary to be a member again, with its lease",
      () => ["follower", "candidate", "backup"].includes(primary.role),
      WAIT_MS,
    );
    expect(primary.status.leaseId, "the step-down kept the lease (and member key)").toBe(leaseId);
    writing = false;
    await writer;
    stop();
    await watcher.cancel();
    expect(primary.role).not.toBe("primary");
    expect(roles.slice(roles.findIndex((r) => r.role === "suspended")).map((r) => r.role)).not.toContain(
      "primary",
    );

    const history = await readEtcdHistory(client);
    const deletion = history.find((e) => e.key === PRIMARY_KEY && e.type === "delete");
    const lastWrite = Math.max(0, ...history.filter((e) => e.key.startsWith(WRITES)).map((e) => e.revision));
    expect(lastWrite, "the primary wrote nothing").toBeGreaterThan(0);
    expect(lastWrite, "a write landed after the seat was vacated").toBeLessThan(deletion?.revision ?? 0);
    expect(deletion?.prev?.createRevision).toBe(token);
    const memberKey = layout.keys.memberKey(0, primary.id ?? -1);
    expect(history.some((e) => e.key === memberKey && e.type === "delete")).toBe(false);
    expect(newPrimary.fence?.token).not.toBe(token);
  });

  test("(b) a pause (no timer runs) sends nothing: the seat goes with the lease, in one revision with the member key", async () => {
    const primary = await startBehindProxy("paused-primary");
    const memberKey = layout.keys.memberKey(0, primary.id ?? -1);
    const leaseId = primary.status.leaseId;
    // A short pause changes nothing.
    await waitUntil("a keepalive acknowledgement", () => primary.status.role === "primary");
    freezeProcess(TTL_MS / 3);
    await new Promise((r) => setTimeout(r, TTL_MS));
    expect(primary.role).toBe("primary");
    expect(primary.status.leaseId).toBe(leaseId);

    freezeProcess(1.5 * TTL_MS);
    await waitUntil(
      "the paused node to start a new session",
      () => primary.status.leaseId !== leaseId,
      WAIT_MS,
    );
    const history = await readEtcdHistory(client);
    const leaderGone = history.find((e) => e.key === PRIMARY_KEY && e.type === "delete");
    const memberGone = history.find((e) => e.key === memberKey && e.type === "delete");
    expect(leaderGone?.revision, "the leader key was deleted apart from the lease").toBe(
      memberGone?.revision,
    );
  });

  test("(c) the step-down's delete leaves a key that is not its own term's: another lease (a handed-off key keeps its token), or another token", async () => {
    const log = silentLogger();
    const options = { ttlSeconds: TTL_SECONDS, keepaliveIntervalMs: TTL_MS / 3 };
    const mine = await EtcdSession.open(client, options, log);
    const other = await EtcdSession.open(client, options, log);
    try {
      const key = "stall/seat";
      // Same create revision (token) as this session's term had, but under another lease.
      await client.put(key).value("mine").lease(mine.leaseId).exec();
      const token = Number((await client.get(key).exec()).kvs[0]?.create_revision);
      await client
        .if(key, "Create", "==", token)
        .then(client.put(key).value("handed off").lease(other.leaseId))
        .commit();
      expect(await mine.deleteOwnKey(key, token, 5_000)).toBe(false);
      expect((await client.get(key).exec()).kvs[0]?.lease).toBe(other.leaseId);

      // Under this session's lease again, but a later term (another create revision).
      await client.delete().key(key).exec();
      await client.put(key).value("mine again").lease(mine.leaseId).exec();
      expect(await mine.deleteOwnKey(key, token, 5_000)).toBe(false);
      expect((await client.get(key).exec()).kvs[0]?.lease).toBe(mine.leaseId);

      const current = Number((await client.get(key).exec()).kvs[0]?.create_revision);
      expect(await mine.deleteOwnKey(key, current, 5_000)).toBe(true);
      expect((await client.get(key).exec()).kvs).toHaveLength(0);
    } finally {
      await mine.revoke();
      await other.revoke();
    }
  });

  test("(f) without step-down connections (a client whose endpoints cannot be read) the delete goes on the main client", async () => {
    const bare = new Etcd3({ hosts: etcd.endpoints });
    // etcd3 keeps its constructor options on the instance; without them no step-down client can be built.
    delete (bare as unknown as { options?: unknown }).options;
    const session = await EtcdSession.open(
      bare,
      { ttlSeconds: TTL_SECONDS, keepaliveIntervalMs: TTL_MS / 3 },
      silentLogger(),
    );
    try {
      const key = "stall/bare";
      await client.put(key).value("mine").lease(session.leaseId).exec();
      const token = Number((await client.get(key).exec()).kvs[0]?.create_revision);
      expect(await session.deleteOwnKey(key, token, 5_000)).toBe(true);
      expect((await client.get(key).exec()).kvs).toHaveLength(0);
    } finally {
      await session.revoke();
      bare.close();
    }
  });

  test("(e) a node whose vacate is not settled stays suspended, even with its session valid again: it never resumes the seat it is deleting", async () => {
    const primary = await startBehindProxy("unsettled-primary");
    const leaseId = primary.status.leaseId;
    const { roles, stop } = recordRoles(primary);
    // Every resign (the only request naming the primary key) is held on the wire.
    rearm = setInterval(() => {
      if (proxy.mode !== "hold-request") proxy.setMode("hold-request", { match: PRIMARY_KEY });
    }, 5);
    // Frozen just past the local deadline, the lease still alive in etcd: on waking the deadline
    // passes, the resign is held, and the keepalives that follow are acknowledged.
    await new Promise<void>((resolve) => {
      const acks = primary.keepaliveRoundTrips$.subscribe(() => {
        acks.unsubscribe();
        resolve();
      });
    });
    freezeProcess(TTL_MS - 300 + 50);
    await waitUntil("the node to suspend", () => roles.some((r) => r.role === "suspended"), WAIT_MS);
    // A TTL on, the lease lives only if keepalives sent after the deadline were acknowledged.
    await new Promise((r) => setTimeout(r, TTL_MS));
    const left = await leaseSecondsLeft(client, leaseId ?? "", new Date(Date.now() + 5_000));
    expect(left, "the lease expired: the scenario did not happen").toBeGreaterThan(0);
    expect(primary.status.leaseId, "the lease expired: the scenario did not happen").toBe(leaseId);
    expect(primary.role, "back in office while its own resign was on the wire").toBe("suspended");

    clearInterval(rearm);
    proxy.setMode("pass");
    await waitUntil("the vacate to settle", () => primary.role !== "suspended", WAIT_MS);
    stop();
    expect(roles.slice(roles.findIndex((r) => r.role === "suspended")).map((r) => r.role)).not.toContain(
      "primary",
    );
    expect(primary.status.leaseId).toBe(leaseId);
    expect((await client.get(PRIMARY_KEY).exec()).kvs[0]?.lease).not.toBe(leaseId);
  });

  test("(d) a node that vacated its seat campaigns for no seat until a TTL after it is valid again", async () => {
    const primary = await startBehindProxy("lone-primary");
    const { roles, stop } = recordRoles(primary);
    proxy.setMode("stall-downstream");
    await waitUntil(
      "the seat to be vacated",
      async () => (await client.get(PRIMARY_KEY).exec()).kvs.length === 0,
      WAIT_MS,
    );
    proxy.setMode("pass");
    await waitUntil("the node to be primary again", () => primary.role === "primary", WAIT_MS);
    stop();
    const suspended = roles.findIndex((r) => r.role === "suspended");
    const back = roles.slice(suspended).find((r) => r.role !== "suspended");
    const primaryAgain = roles.slice(suspended).find((r) => r.role === "primary");
    expect(back?.role).not.toBe("primary");
    // The hold starts when the vacate settles, just before the node is back (timers fire late, never early).
    expect((primaryAgain?.at ?? 0) - (back?.at ?? 0)).toBeGreaterThanOrEqual(TTL_MS - 100);
  });
});
