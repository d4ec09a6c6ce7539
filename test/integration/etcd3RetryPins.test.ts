import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3 } from "etcd3";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { connectEtcd } from "../../src/etcd/index.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";

/**
 * Pins of how the etcd3 client behaves when a reply is lost, and of what connectEtcd changes.
 * If etcd3 changes, the first test fails and the reasoning in src/etcd/client.ts must be redone.
 */
describe("etcd3 retries and connectEtcd", () => {
  let etcd: EtcdCluster;
  let direct: Etcd3;
  let proxy: TcpProxy;
  const clients: Etcd3[] = [];

  beforeEach(async () => {
    etcd = await startEtcd();
    direct = etcd.client();
    proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await proxy.close();
    await etcd.stop();
  });

  const track = (client: Etcd3) => {
    clients.push(client);
    return client;
  };

  /** Creates `key` if absent, through the proxy, with the reply of that request dropped. */
  const createWithLostReply = (client: Etcd3, key: string) => {
    proxy.setMode("drop-reply", { match: key });
    return client.if(key, "Create", "==", 0).then(client.put(key).value("mine")).commit();
  };

  test("the default etcd3 client re-sends a txn whose reply was lost and reports its own write as a failed compare", async () => {
    const client = track(new Etcd3({ hosts: [proxy.endpoint] }));
    const txn = await createWithLostReply(client, "pin/default");
    expect(proxy.repliesDropped).toBe(1);
    expect(txn.succeeded).toBe(false);
    expect(await direct.get("pin/default").string()).toBe("mine");
  });

  test("connectEtcd does not re-send: a lost reply is an error, not a failed compare", async () => {
    const client = track(connectEtcd([proxy.endpoint]));
    await expect(createWithLostReply(client, "pin/ours")).rejects.toThrow(/UNAVAILABLE|Connection dropped/);
    expect(proxy.repliesDropped).toBe(1);
    expect(await direct.get("pin/ours").string()).toBe("mine");
  });

  test("connectEtcd gives every unary call a default deadline", async () => {
    const client = track(connectEtcd([proxy.endpoint], { callTimeoutMs: 1_000 }));
    proxy.setMode("blackhole");
    await expect(client.get("pin/any").string()).rejects.toThrow(/DEADLINE_EXCEEDED|Deadline exceeded/i);
  });

  test("connectEtcd has no circuit breaker: the first call after an etcd restart goes through", async () => {
    const client = track(connectEtcd([etcd.endpoints[0] ?? ""], { callTimeoutMs: 1_000 }));
    await client.put("pin/restart").value("before");
    const member = etcd.members[0];
    if (!member) throw new Error("no etcd member");
    await member.stop();
    for (let i = 0; i < 4; i++) await expect(client.get("pin/restart").string()).rejects.toThrow();
    await member.restart();
    expect(await client.get("pin/restart").string()).toBe("before");
  });

  test("gRPC keepalive closes a connection that went silent under an open watch", async () => {
    const client = track(connectEtcd([proxy.endpoint]));
    const watcher = await client.watch().key("pin/watched").create();
    try {
      expect(proxy.connections).toBe(1);
      proxy.setMode("blackhole");
      const closedBefore = proxy.connectionsClosed;
      // etcd's minimum ping interval is 5 s, so detection takes the ping interval plus its timeout.
      await waitUntil(
        "the client to close the silent connection",
        () => proxy.connectionsClosed > closedBefore,
        40_000,
      );
    } finally {
      proxy.setMode("pass");
      await watcher.cancel().catch(() => undefined);
    }
  });

  test("gRPC keepalive pings no more often than etcd allows: an idle watch keeps its connection", async () => {
    const client = track(connectEtcd([proxy.endpoint]));
    const watcher = await client.watch().key("pin/idle").create();
    try {
      await sleep(16_000);
      expect(proxy.connectionsAccepted).toBe(1);
      expect(proxy.connectionsClosed).toBe(0);
    } finally {
      await watcher.cancel();
    }
  });
});
