import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { noop } from "cockatiel";
import type { Etcd3, IOptions } from "etcd3";
import yaml from "js-yaml";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { main } from "../../src/cli/main.js";
import { ClusterLayout } from "../../src/config/index.js";
import {
  deletePoisonedLeaderKey,
  FenceLostError,
  type FencingToken,
  RemovalOutcomeUnknownError,
  removePoisonedLeaderKey,
} from "../../src/etcd/index.js";
import { readPoisonedLeaderKeys } from "../../src/runtime/clusterStatus.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";

/** Two groupings: groups 0-2 (node IDs 0-8) and 3-5 (node IDs 9-17). */
const CONFIG = { ...SEED_CONFIG, groups: 6 };
const layout = new ClusterLayout(CONFIG);
const keys = layout.keys;
const TIMEOUT_MS = 5_000;

/**
 * A lost reply is resolved two ways: etcd3's default policy re-sends the transaction, whose compare
 * then meets the first attempt's deletion; without hidden retries the call fails and a read decides.
 */
const LOST_REPLY_CLIENTS: [name: string, options: Partial<IOptions>][] = [
  ["etcd3 re-sends the transaction", {}],
  ["no hidden retries: a read decides", { faultHandling: { global: noop, host: () => noop } }],
];

const record = (id: number) => JSON.stringify({ id, name: `node-${id}`, address: `127.0.0.1:${7000 + id}` });

interface KeyState {
  value: string;
  createRevision: number;
  modRevision: number;
  lease: string;
}

async function read(client: Etcd3, key: string): Promise<KeyState | undefined> {
  const kv = (await client.get(key).exec()).kvs[0];
  if (!kv) return undefined;
  return {
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease),
  };
}

async function put(client: Etcd3, key: string, value: string, lease?: string): Promise<KeyState> {
  const op = client.put(key).value(value);
  await (lease ? op.lease(lease) : op).exec();
  const state = await read(client, key);
  if (!state) throw new Error(`${key} vanished right after it was written`);
  return state;
}

/** Deletes grouping 1's primary key, planted as garbage, if it is unchanged since `garbage` was read. */
const deleteGarbage = (client: Etcd3, garbage: KeyState) =>
  deletePoisonedLeaderKey(client, keys.leaderKey(1, 1), garbage.modRevision, TIMEOUT_MS);

describe("repair of poisoned leader keys", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let dir: string;
  let configFile: string;
  let leaseId: string;

  beforeEach(async () => {
    etcd = await startEtcd();
    client = etcd.client();
    dir = mkdtempSync(join(tmpdir(), "rdeebee-repair-"));
    configFile = join(dir, "config.yaml");
    writeFileSync(configFile, yaml.dump(CONFIG));
    // The lease a live leader would hold its key under; long enough to outlive the test.
    leaseId = String(await client.lease(600, { autoKeepAlive: false }).grant());
  });

  afterEach(async () => {
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function repair(...flags: string[]): Promise<{ code: number; text: string }> {
    const lines: string[] = [];
    const argv = ["node", "rdeebee-cluster", "repair", "--config", configFile];
    const code = await main([...argv, "--etcd", etcd.endpoints.join(","), ...flags], (t) => lines.push(t));
    return { code, text: lines.join("\n") };
  }

  /** Grouping 0 held by valid leaders; grouping 1 poisoned: garbage without a lease, and an outsider under a lease. */
  async function plantCluster() {
    const validPrimary = await put(client, keys.leaderKey(0, 1), record(1), leaseId);
    const validBackup = await put(client, keys.leaderKey(0, 2), record(4), leaseId);
    const garbage = await put(client, keys.leaderKey(1, 1), "{not json");
    const outsider = await put(client, keys.leaderKey(1, 2), record(2), leaseId);
    const badMember = await put(client, keys.memberKey(0, 0), "nonsense");
    return { validPrimary, validBackup, garbage, outsider, badMember };
  }

  test("without --yes it lists each poisoned key with its reason, lease and mod revision, and deletes nothing", async () => {
    const planted = await plantCluster();
    const { code, text } = await repair();
    expect(code).toBe(0);
    expect(text).toContain("2 poisoned leader key(s)");
    expect(text).toContain(
      `poisoned leader key ${keys.leaderKey(1, 1)}: value is not JSON (no lease, mod revision ${planted.garbage.modRevision})`,
    );
    expect(text).toContain(
      `poisoned leader key ${keys.leaderKey(1, 2)}: names node 2, which is not in this grouping ` +
        `(lease ${leaseId}, mod revision ${planted.outsider.modRevision})`,
    );
    expect(text).toContain(`would delete it if its mod revision is still ${planted.garbage.modRevision}`);
    expect(text).toContain(`bad value (not repaired): ${keys.memberKey(0, 0)}: value is not JSON`);
    expect(text).not.toContain(keys.leaderKey(0, 1));
    for (const [key, state] of [
      [keys.leaderKey(1, 1), planted.garbage],
      [keys.leaderKey(1, 2), planted.outsider],
    ] as const)
      expect(await read(client, key)).toEqual(state);
  });

  test("with --yes it deletes every poisoned key and never a valid leader key or any other bad value", async () => {
    const planted = await plantCluster();
    const { code, text } = await repair("--yes");
    expect(code).toBe(0);
    expect(text.match(/ {2}deleted \(revision \d+\)/g)).toHaveLength(2);
    expect(await read(client, keys.leaderKey(1, 1))).toBeUndefined();
    expect(await read(client, keys.leaderKey(1, 2))).toBeUndefined();
    expect(await read(client, keys.leaderKey(0, 1))).toEqual(planted.validPrimary);
    expect(await read(client, keys.leaderKey(0, 2))).toEqual(planted.validBackup);
    expect(await read(client, keys.memberKey(0, 0))).toEqual(planted.badMember);

    const again = await repair("--yes");
    expect(again.code).toBe(0);
    expect(again.text).toContain("0 poisoned leader key(s)");
    expect(await read(client, keys.leaderKey(0, 1))).toEqual(planted.validPrimary);
  });

  test("a key rewritten after it was read is left alone", async () => {
    const garbage = await put(client, keys.leaderKey(1, 1), "{not json");
    const rewritten = await put(client, keys.leaderKey(1, 1), "still not json");
    const result = await deleteGarbage(client, garbage);
    expect(result).toEqual({ kind: "rewritten", modRevision: rewritten.modRevision });
    expect(await read(client, keys.leaderKey(1, 1))).toEqual(rewritten);
  });

  test("a key already gone (deleted by another remover or an earlier attempt) is reported as gone", async () => {
    const garbage = await put(client, keys.leaderKey(1, 1), "{not json");
    const first = await deleteGarbage(client, garbage);
    expect(first.kind).toBe("removed");
    const second = await deleteGarbage(client, garbage);
    expect(second).toEqual({ kind: "gone" });
  });

  test.each(LOST_REPLY_CLIENTS)(
    "a deletion whose reply was lost is learned from etcd (%s): gone",
    async (_, options) => {
      const garbage = await put(client, keys.leaderKey(1, 1), "{not json");
      const proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
      const proxied = etcd.client({ ...options, hosts: [proxy.endpoint] });
      try {
        await proxied.get(keys.leaderKey(1, 1)).exec(); // connected before the reply is dropped
        proxy.setMode("drop-reply", { match: keys.leaderKey(1, 1) });
        const result = await deleteGarbage(proxied, garbage);
        expect(proxy.repliesDropped).toBe(1);
        expect(result).toEqual({ kind: "gone" });
      } finally {
        proxied.close();
        await proxy.close();
      }
    },
  );

  test("an etcd that does not answer leaves the outcome unknown, said so, with the key intact", async () => {
    const garbage = await put(client, keys.leaderKey(1, 1), "{not json");
    const proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
    const proxied = etcd.client({ hosts: [proxy.endpoint] });
    try {
      await proxied.get(keys.leaderKey(1, 1)).exec();
      proxy.setMode("blackhole");
      await expect(
        deletePoisonedLeaderKey(proxied, keys.leaderKey(1, 1), garbage.modRevision, 1_000),
      ).rejects.toBeInstanceOf(RemovalOutcomeUnknownError);
      expect(await read(client, keys.leaderKey(1, 1))).toEqual(garbage);
    } finally {
      proxied.close();
      await proxy.close();
    }
  });

  test("readPoisonedLeaderKeys finds exactly the poisoned keys of every grouping", async () => {
    const planted = await plantCluster();
    const poisoned = await readPoisonedLeaderKeys(client, layout);
    expect(poisoned).toEqual([
      {
        key: keys.leaderKey(1, 1),
        grouping: 1,
        seat: 1,
        reason: "value is not JSON",
        lease: "0",
        modRevision: planted.garbage.modRevision,
        createRevision: planted.garbage.createRevision,
      },
      {
        key: keys.leaderKey(1, 2),
        grouping: 1,
        seat: 2,
        reason: "names node 2, which is not in this grouping",
        lease: leaseId,
        modRevision: planted.outsider.modRevision,
        createRevision: planted.outsider.createRevision,
      },
    ]);
  });
});

describe("removePoisonedLeaderKey: the grouping's other leader removes it, fenced", () => {
  let etcd: EtcdCluster;
  let client: Etcd3;
  let leaseId: string;
  let fence: FencingToken;
  let poisoned: KeyState;
  const poisonedKey = keys.leaderKey(0, 2);

  beforeEach(async () => {
    etcd = await startEtcd();
    client = etcd.client();
    leaseId = String(await client.lease(600, { autoKeepAlive: false }).grant());
    const own = await put(client, keys.leaderKey(0, 1), record(1), leaseId);
    fence = { grouping: 0, seat: 1, token: own.createRevision };
    poisoned = await put(client, poisonedKey, "{not json");
  });

  afterEach(async () => {
    await etcd.stop();
  });

  const remove = (token: FencingToken, key = poisonedKey, modRevision = poisoned.modRevision) =>
    removePoisonedLeaderKey(client, layout, token, leaseId, key, modRevision, TIMEOUT_MS);

  test("deletes the poisoned key while the remover holds its seat", async () => {
    const result = await remove(fence);
    expect(result.kind).toBe("removed");
    expect(await read(client, poisonedKey)).toBeUndefined();
    expect((await read(client, keys.leaderKey(0, 1)))?.createRevision).toBe(fence.token);
  });

  test("refuses, deleting nothing, when the remover's seat has changed hands", async () => {
    await client.delete().key(keys.leaderKey(0, 1)).exec();
    const successor = await put(client, keys.leaderKey(0, 1), record(2), leaseId);
    expect(successor.createRevision).not.toBe(fence.token);
    await expect(remove(fence)).rejects.toBeInstanceOf(FenceLostError);
    expect(await read(client, poisonedKey)).toEqual(poisoned);
  });

  test("refuses, deleting nothing, when the poisoned key was rewritten since it was read", async () => {
    const rewritten = await put(client, poisonedKey, "other garbage");
    expect(await remove(fence)).toEqual({ kind: "rewritten", modRevision: rewritten.modRevision });
    expect(await read(client, poisonedKey)).toEqual(rewritten);
  });

  test("reports gone, not refused, when a re-sent attempt finds its own deletion done", async () => {
    expect((await remove(fence)).kind).toBe("removed");
    expect(await remove(fence)).toEqual({ kind: "gone" });
  });

  test.each(LOST_REPLY_CLIENTS)(
    "a removal whose reply was lost is learned from etcd (%s): gone",
    async (_, options) => {
      const proxy = await TcpProxy.forEndpoint(etcd.endpoints[0] ?? "");
      const proxied = etcd.client({ ...options, hosts: [proxy.endpoint] });
      try {
        await proxied.get(poisonedKey).exec(); // connected before the reply is dropped
        proxy.setMode("drop-reply", { match: poisonedKey });
        const result = await removePoisonedLeaderKey(
          proxied,
          layout,
          fence,
          leaseId,
          poisonedKey,
          poisoned.modRevision,
          TIMEOUT_MS,
        );
        expect(proxy.repliesDropped).toBe(1);
        expect(result).toEqual({ kind: "gone" });
        expect(await read(client, poisonedKey)).toBeUndefined();
      } finally {
        proxied.close();
        await proxy.close();
      }
    },
  );

  test("removes only the other seat of the remover's grouping, never its own or another grouping's", async () => {
    const elsewhere = await put(client, keys.leaderKey(1, 1), "{not json");
    await expect(remove(fence, keys.leaderKey(0, 1))).rejects.toBeInstanceOf(RangeError);
    await expect(remove(fence, keys.leaderKey(1, 1), elsewhere.modRevision)).rejects.toBeInstanceOf(
      RangeError,
    );
    expect((await read(client, keys.leaderKey(0, 1)))?.createRevision).toBe(fence.token);
    expect(await read(client, keys.leaderKey(1, 1))).toEqual(elsewhere);
  });
});
