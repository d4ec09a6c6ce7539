import { Etcd3 } from "etcd3";
import { describe, expect, test } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import type { BackupSeat } from "../../src/etcd/handoff.js";
import { ClusterStore, connectEtcd, FenceLostError, type FencingToken } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";

const LAYOUT = new ClusterLayout(ONE_GROUPING);
const KEYS = LAYOUT.keys;
const PRIMARY_KEY = KEYS.leaderKey(0, 1);
const BACKUP_KEY = KEYS.leaderKey(0, 2);
const CALL_TIMEOUT_MS = 1_000;
const recordOf = (id: number) =>
  JSON.stringify({ id, name: `node-${id}`, address: `127.0.0.1:${7000 + id}` });

describe("ClusterStore.handoff: a stopping primary's office to its backup in one fenced transaction", () => {
  const env = proxiedEtcdPerTest();
  const storeOver = (client: Etcd3) =>
    new ClusterStore(env.track(client), LAYOUT, silentLogger(), { callTimeoutMs: CALL_TIMEOUT_MS });
  /** The runtime's client (no retries), through the proxy. */
  const store = () => storeOver(connectEtcd([env.proxy.endpoint]));
  /** etcd3's default client re-sends a txn whose reply was lost. */
  const storeOverRetryingClient = () => storeOver(new Etcd3({ hosts: [env.proxy.endpoint] }));
  const grantLease = async () => String(await env.direct.lease(60, { autoKeepAlive: false }).grant());
  const kvOf = async (key: string) => (await env.direct.get(key).exec()).kvs[0];
  const revisionNow = async () => Number((await env.direct.get("probe").exec()).header.revision);

  /** A primary (node 1) and a backup (node 2), each under its own lease, as campaigns make them. */
  const seated = async () => {
    const [primaryLease, backupLease] = [await grantLease(), await grantLease()];
    const p = await env.direct.put(PRIMARY_KEY).value(recordOf(1)).lease(primaryLease).exec();
    const b = await env.direct.put(BACKUP_KEY).value(recordOf(2)).lease(backupLease).exec();
    const primary: FencingToken = { grouping: 0, seat: 1, token: Number(p.header.revision) };
    const backup: BackupSeat = { token: Number(b.header.revision), lease: backupLease, value: recordOf(2) };
    return { primary, primaryLease, backup };
  };

  test("the primary key goes to the backup's lease and value and the backup key goes, in one revision", async () => {
    const { primary, primaryLease, backup } = await seated();
    const before = await revisionNow();
    const result = await store().handoff(primary, primaryLease, backup);
    expect(result).toEqual({ kind: "handedOff", token: primary.token, revision: before + 1 });
    const now = await kvOf(PRIMARY_KEY);
    expect(now?.lease).toBe(backup.lease);
    expect(now?.value.toString()).toBe(backup.value);
    expect(Number(now?.create_revision)).toBe(primary.token);
    expect(Number(now?.mod_revision)).toBe(before + 1);
    expect(await kvOf(BACKUP_KEY)).toBeUndefined();
    expect(await revisionNow()).toBe(before + 1);
  });

  test("after the handoff the old primary's fenced write is refused and the new primary's commits", async () => {
    const { primary, primaryLease, backup } = await seated();
    await store().handoff(primary, primaryLease, backup);
    const put = (key: string) => (client: Etcd3) => [client.put(key).value("v")];
    await expect(store().fencedTxn(primary, put("app/old"), primaryLease)).rejects.toBeInstanceOf(
      FenceLostError,
    );
    expect(await kvOf("app/old")).toBeUndefined();
    const write = await store().fencedTxn(primary, put("app/new"), backup.lease);
    expect(write.revision).toBeGreaterThan(primary.token);
    expect(await kvOf("app/new")).toBeDefined();
  });

  test("a primary key re-created since (another token) is neither handed off nor deleted", async () => {
    const { primary, primaryLease, backup } = await seated();
    await env.direct.delete().key(PRIMARY_KEY);
    const again = await env.direct.put(PRIMARY_KEY).value(recordOf(1)).lease(primaryLease).exec();
    expect(await store().handoff(primary, primaryLease, backup)).toEqual({ kind: "notHeld" });
    const now = await kvOf(PRIMARY_KEY);
    expect(now?.lease).toBe(primaryLease);
    expect(Number(now?.create_revision)).toBe(Number(again.header.revision));
    expect(Number((await kvOf(BACKUP_KEY))?.create_revision)).toBe(backup.token);
  });

  test("a stale handoff after the key was handed off does not move it again, to a new backup", async () => {
    const { primary, primaryLease, backup } = await seated();
    await store().handoff(primary, primaryLease, backup);
    const newBackupLease = await grantLease();
    const b2 = await env.direct.put(BACKUP_KEY).value(recordOf(3)).lease(newBackupLease).exec();
    const newBackup = { token: Number(b2.header.revision), lease: newBackupLease, value: recordOf(3) };
    expect(await store().handoff(primary, primaryLease, newBackup)).toEqual({
      kind: "handedOff",
      token: primary.token,
    });
    expect((await kvOf(PRIMARY_KEY))?.lease).toBe(backup.lease);
    expect((await kvOf(BACKUP_KEY))?.lease).toBe(newBackupLease);
  });

  test("a repeated stop without a backup in view leaves the key it handed off alone", async () => {
    const { primary, primaryLease, backup } = await seated();
    await store().handoff(primary, primaryLease, backup);
    expect(await store().handoff(primary, primaryLease, undefined)).toEqual({
      kind: "handedOff",
      token: primary.token,
    });
    expect((await kvOf(PRIMARY_KEY))?.lease).toBe(backup.lease);
  });

  test("a backup key re-created since (another token) gets nothing: the primary resigns", async () => {
    const { primary, primaryLease, backup } = await seated();
    await env.direct.delete().key(BACKUP_KEY);
    const again = await env.direct.put(BACKUP_KEY).value(backup.value).lease(backup.lease).exec();
    expect(await store().handoff(primary, primaryLease, backup)).toEqual({ kind: "resigned" });
    expect(await kvOf(PRIMARY_KEY)).toBeUndefined();
    expect(Number((await kvOf(BACKUP_KEY))?.create_revision)).toBe(Number(again.header.revision));
  });

  test("a backup key now under another lease gets nothing: the primary resigns", async () => {
    const { primary, primaryLease, backup } = await seated();
    const otherLease = await grantLease();
    await env.direct.put(BACKUP_KEY).value(recordOf(4)).lease(otherLease).exec();
    expect(await store().handoff(primary, primaryLease, backup)).toEqual({ kind: "resigned" });
    expect(await kvOf(PRIMARY_KEY)).toBeUndefined();
    expect((await kvOf(BACKUP_KEY))?.lease).toBe(otherLease);
  });

  test("without a backup the primary resigns", async () => {
    const { primary, primaryLease } = await seated();
    await env.direct.delete().key(BACKUP_KEY);
    expect(await store().handoff(primary, primaryLease, undefined)).toEqual({ kind: "resigned" });
    expect(await kvOf(PRIMARY_KEY)).toBeUndefined();
  });

  test("a lost reply of the committed handoff is settled by reading the primary key: handed off", async () => {
    const { primary, primaryLease, backup } = await seated();
    env.proxy.setMode("drop-reply", { match: BACKUP_KEY });
    expect(await store().handoff(primary, primaryLease, backup)).toEqual({
      kind: "handedOff",
      token: primary.token,
    });
    expect(env.proxy.repliesDropped).toBe(1);
    expect((await kvOf(PRIMARY_KEY))?.lease).toBe(backup.lease);
    expect(await kvOf(BACKUP_KEY)).toBeUndefined();
  });

  test("a re-sent handoff whose compare fails on its own first attempt reports it handed off", async () => {
    const { primary, primaryLease, backup } = await seated();
    env.proxy.setMode("drop-reply", { match: BACKUP_KEY });
    expect(await storeOverRetryingClient().handoff(primary, primaryLease, backup)).toEqual({
      kind: "handedOff",
      token: primary.token,
    });
    expect((await kvOf(PRIMARY_KEY))?.lease).toBe(backup.lease);
  });

  test("a lost reply of the fallback resignation reports it resigned", async () => {
    const { primary, primaryLease } = await seated();
    await env.direct.delete().key(BACKUP_KEY);
    env.proxy.setMode("drop-reply", { match: PRIMARY_KEY });
    expect(await store().handoff(primary, primaryLease, undefined)).toEqual({ kind: "resigned" });
    expect(env.proxy.repliesDropped).toBe(1);
    expect(await kvOf(PRIMARY_KEY)).toBeUndefined();
  });

  test("a lost reply of a resignation that found the key handed off reports it handed off", async () => {
    const { primary, primaryLease, backup } = await seated();
    await store().handoff(primary, primaryLease, backup);
    env.proxy.setMode("drop-reply", { match: PRIMARY_KEY });
    expect(await store().handoff(primary, primaryLease, undefined)).toEqual({
      kind: "handedOff",
      token: primary.token,
    });
    expect(env.proxy.repliesDropped).toBe(1);
    expect((await kvOf(PRIMARY_KEY))?.lease).toBe(backup.lease);
  });

  test("a resignation that did not reach etcd before its deadline is not reported done", async () => {
    const { primary, primaryLease } = await seated();
    await env.direct.delete().key(BACKUP_KEY);
    env.proxy.setMode("hold-request", { match: PRIMARY_KEY });
    await expect(store().handoff(primary, primaryLease, undefined)).rejects.toThrow();
    expect((await kvOf(PRIMARY_KEY))?.lease).toBe(primaryLease);
    await env.proxy.releaseHeldRequest();
  });

  test("a handoff held on the wire and released after the fallback resignation never applies", async () => {
    const { primary, primaryLease, backup } = await seated();
    env.proxy.setMode("hold-request", { match: BACKUP_KEY });
    expect(await store().handoff(primary, primaryLease, backup)).toEqual({ kind: "resigned" });
    await env.proxy.releaseHeldRequest();
    expect(await kvOf(PRIMARY_KEY)).toBeUndefined();
    expect(Number((await kvOf(BACKUP_KEY))?.create_revision)).toBe(backup.token);
  });
});
