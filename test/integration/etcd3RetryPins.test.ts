import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3 } from "etcd3";
import { describe, expect, test } from "vitest";
import { connectEtcd } from "../../src/etcd/index.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";
import { waitUntil } from "../support/waitUntil.js";

/**
 * Pins of how the etcd3 client behaves when a reply is lost, and of what connectEtcd changes.
 * If etcd3 changes, the first test fails and the reasoning in src/etcd/client.ts must be redone.
 */
describe("etcd3 retries and connectEtcd", () => {
  const env = proxiedEtcdPerTest();
  const track = <T extends Etcd3>(client: T) => env.track(client);

  /** Creates `key` if absent, through the proxy, with the reply of that request dropped. */
  const createWithLostReply = (client: Etcd3, key: string) => {
    env.proxy.setMode("drop-reply", { match: key });
    return client.if(key, "Create", "==", 0).then(client.put(key).value("mine")).commit();
  };

  test("the default etcd3 client re-sends a txn whose reply was lost and reports its own write as a failed compare", async () => {
    const client = track(new Etcd3({ hosts: [env.proxy.endpoint] }));
    const txn = await createWithLostReply(client, "pin/default");
    expect(env.proxy.repliesDropped).toBe(1);
    expect(txn.succeeded).toBe(false);
    expect(await env.direct.get("pin/default").string()).toBe("mine");
  });

  test("connectEtcd does not re-send: a lost reply is an error, not a failed compare", async () => {
    const client = track(connectEtcd([env.proxy.endpoint]));
    await expect(createWithLostReply(client, "pin/ours")).rejects.toThrow(/UNAVAILABLE|Connection dropped/);
    expect(env.proxy.repliesDropped).toBe(1);
    expect(await env.direct.get("pin/ours").string()).toBe("mine");
  });

  test("connectEtcd gives every unary call a default deadline", async () => {
    const client = track(connectEtcd([env.proxy.endpoint], { callTimeoutMs: 1_000 }));
    env.proxy.setMode("blackhole");
    await expect(client.get("pin/any").string()).rejects.toThrow(/DEADLINE_EXCEEDED|Deadline exceeded/i);
  });

  test("connectEtcd has no circuit breaker: the first call after an etcd restart goes through", async () => {
    const client = track(connectEtcd([env.etcd.endpoints[0] ?? ""], { callTimeoutMs: 1_000 }));
    await client.put("pin/restart").value("before");
    const member = env.etcd.members[0];
    if (!member) throw new Error("no etcd member");
    await member.stop();
    for (let i = 0; i < 4; i++) await expect(client.get("pin/restart").string()).rejects.toThrow();
    await member.restart();
    expect(await client.get("pin/restart").string()).toBe("before");
  });

  test("gRPC keepalive closes a connection that went silent under an open watch", async () => {
    const client = track(connectEtcd([env.proxy.endpoint]));
    const watcher = await client.watch().key("pin/watched").create();
    try {
      expect(env.proxy.connections).toBe(1);
      env.proxy.setMode("blackhole");
      const closedBefore = env.proxy.connectionsClosed;
      // etcd's minimum ping interval is 5 s, so detection takes the ping interval plus its timeout.
      await waitUntil(
        "the client to close the silent connection",
        () => env.proxy.connectionsClosed > closedBefore,
        40_000,
      );
    } finally {
      env.proxy.setMode("pass");
      await watcher.cancel().catch(() => undefined);
    }
  });

  test("gRPC keepalive pings no more often than etcd allows: an idle watch keeps its connection", async () => {
    const client = track(connectEtcd([env.proxy.endpoint]));
    const watcher = await client.watch().key("pin/idle").create();
    try {
      await sleep(16_000);
      expect(env.proxy.connectionsAccepted).toBe(1);
      expect(env.proxy.connectionsClosed).toBe(0);
    } finally {
      await watcher.cancel();
    }
  });
});
