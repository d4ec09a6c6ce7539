import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterEach, describe, expect, test } from "vitest";
import { scrape, total } from "../../bench/scale/etcdMetrics.js";
import { ClusterLayout } from "../../src/config/index.js";
import { ClaimAbandonedError } from "../../src/etcd/clusterStore.js";
import { classifyKey } from "../../src/etcd/codec.js";
import { ClusterStore, connectEtcd } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { SEED_CONFIG } from "../support/clusterNodes.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { TcpProxy } from "../support/tcpProxy.js";

/** One grouping of four groups of ten: 40 slots, so the rounds run into the capacity. */
const LAYOUT = new ClusterLayout({ ...SEED_CONFIG, groups: 4, group_size: 10, reads: 4 });
const KEYS = LAYOUT.keys;
const ROUNDS = 12;
const ALLOCATORS_PER_ROUND = 6;
const WAITERS_PER_ROUND = 3;
const DEATHS_PER_ROUND = 2;
const CALL_TIMEOUT_MS = 1_000;
const ATTEMPTS = 10;
/** How long a waiter keeps trying to claim an advertisement in its round. */
const WAIT_FOR_AD_MS = 3_000;
/** How long the claim's link stays dark in the rounds that cut it. */
const DARK_MS = 1_500;

const record = (name: string) => ({ name, address: "127.0.0.1:1" });

interface Holder {
  name: string;
  lease: string;
  id?: number;
  abandoned?: boolean;
  dead?: boolean;
}

/**
 * A Jepsen-style run of the ticket scheme: each round, fresh allocations and waiting nodes
 * claiming advertisements at once, with a primary advertising every handed-out slot without a
 * member (a burnt ticket, an issued ticket not claimed yet, a dead member), lost replies and
 * requests held on the wire for the ticket put, the claim and the advertisement claim; then
 * members die and the held requests arrive late. After each round and at the end: one member key
 * per lease, every reported ID held by its reporter, no ID reported by two live holders, no
 * advertisement of a slot that has a member, every abandoned lease revoked and holding nothing.
 */
describe("tickets under lost replies, late copies, advertisements and deaths", () => {
  let etcd: EtcdCluster | undefined;
  const proxies: TcpProxy[] = [];
  const clients: Etcd3[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    for (const proxy of proxies.splice(0)) await proxy.close();
    await etcd?.stop();
  });

  test(`${ROUNDS} rounds: never one ID twice, never one lease with two member keys`, async () => {
    etcd = await startEtcd();
    const direct = etcd.client();
    for (let i = 0; i < 3; i++) proxies.push(await TcpProxy.forEndpoint(etcd.endpoints[0] ?? ""));
    const links = [...proxies.map((p) => connectEtcd([p.endpoint])), connectEtcd(etcd.endpoints)];
    clients.push(...links);
    const storeOn = (i: number) =>
      new ClusterStore(links[i % links.length] as Etcd3, LAYOUT, silentLogger(), {
        callTimeoutMs: CALL_TIMEOUT_MS,
      });
    const grant = async () => String(await direct.lease(600, { autoKeepAlive: false }).grant());
    const holders: Holder[] = [];
    const writesHandled = async () => {
      const s = await scrape(etcd?.endpoints[0] ?? "");
      return (
        total(s, "grpc_server_handled_total", { grpc_method: "Txn" }) +
        total(s, "grpc_server_handled_total", { grpc_method: "Put" })
      );
    };

    // The primary: a member of the grouping holding its primary seat, advertising missing slots.
    const primaryLease = await grant();
    const primaryStore = new ClusterStore(direct, LAYOUT, silentLogger());
    const primaryId = await primaryStore.allocateFreshId(record("primary"), primaryLease);
    if (primaryId.kind !== "allocated") throw new Error("no ID for the primary");
    const seat = await primaryStore.campaign(0, 1, { ...record("primary"), id: primaryId.id }, primaryLease);
    if (seat.kind !== "won") throw new Error("the primary seat was vacant");
    const fence = { grouping: 0, seat: 1 as const, token: seat.token };
    let advertised = 0;
    let advertising = true;
    const advertiser = (async () => {
      while (advertising) {
        const mark = await primaryStore.allocatedCount();
        const members = new Set(
          (await direct.getAll().prefix(KEYS.allMembersPrefix).keys()).flatMap((k) => {
            const name = classifyKey(LAYOUT, k);
            return name.kind === "member" ? [name.id] : [];
          }),
        );
        const ads = new Set(
          (await direct.getAll().prefix(KEYS.failoverPrefix).keys()).flatMap((k) => {
            const name = classifyKey(LAYOUT, k);
            return name.kind === "failoverAd" ? [name.id] : [];
          }),
        );
        for (let id = 0; id < Math.min(mark, LAYOUT.capacity); id++)
          if (
            !members.has(id) &&
            !ads.has(id) &&
            (await primaryStore.advertiseFailedSlot(fence, primaryLease, id, primaryId.id))
          )
            advertised += 1;
        await sleep(25);
      }
    })();

    const settle = async (holder: Holder, work: () => Promise<number | undefined>) => {
      for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
        try {
          holder.id = await work();
          return;
        } catch (err) {
          if (err instanceof ClaimAbandonedError) {
            holder.abandoned = true;
            return;
          }
          await sleep(50 + Math.random() * 100);
        }
      }
    };

    const check = async (when: string) => {
      const kvs = (await direct.getAll().prefix(KEYS.allMembersPrefix).exec()).kvs;
      const byLease = new Map<string, string[]>();
      for (const kv of kvs) byLease.set(kv.lease, [...(byLease.get(kv.lease) ?? []), kv.key.toString()]);
      for (const [lease, keys] of byLease) expect(keys, `${when}: lease ${lease}`).toHaveLength(1);
      const held = new Map(kvs.map((kv) => [kv.key.toString(), kv.lease]));
      const live = holders.filter((h) => h.id !== undefined && !h.dead && !h.abandoned);
      for (const h of live)
        expect(held.get(KEYS.memberKey(LAYOUT.nodeGroup(h.id ?? 0), h.id ?? 0)), `${when}: ${h.name}`).toBe(
          h.lease,
        );
      expect(new Set(live.map((h) => h.id)).size, `${when}: IDs of live holders`).toBe(live.length);
      // An advertisement is made only while its slot has no member, and every claim deletes it.
      for (const key of await direct.getAll().prefix(KEYS.failoverPrefix).keys()) {
        const name = classifyKey(LAYOUT, key);
        if (name.kind === "failoverAd")
          expect(held.has(KEYS.memberKey(LAYOUT.nodeGroup(name.id), name.id)), `${when}: ${key}`).toBe(false);
      }
      for (const h of holders.filter((x) => x.abandoned)) {
        expect(byLease.get(h.lease), `${when}: abandoned ${h.name}`).toBeUndefined();
        expect(Number((await direct.leaseClient.leaseTimeToLive({ ID: h.lease })).TTL)).toBe(-1);
      }
    };

    const writesBefore = await writesHandled();
    let released = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const [ticketLink, claimLink, adLink] = proxies as [TcpProxy, TcpProxy, TcpProxy];
      ticketLink.setMode(round % 2 ? "drop-reply" : "hold-request", { match: KEYS.idKey });
      // Every third round the claim's link then goes dark for a while: the settlement cannot reach
      // etcd while the primary advertises the ticket's slot and a waiter claims it.
      const dark = round % 3 === 2;
      claimLink.setMode(round % 2 || dark ? "hold-request" : "drop-reply", {
        match: KEYS.allMembersPrefix,
        afterwards: dark ? "blackhole" : "pass",
      });
      const relit = dark
        ? sleep(DARK_MS).then(() => {
            claimLink.setMode("reset");
            claimLink.setMode("pass");
          })
        : Promise.resolve();
      adLink.setMode(round % 3 ? "hold-request" : "drop-reply", { match: KEYS.failoverPrefix });
      const work: Promise<void>[] = [];
      for (let i = 0; i < ALLOCATORS_PER_ROUND; i++) {
        const holder: Holder = { name: `fresh-${round}-${i}`, lease: await grant() };
        holders.push(holder);
        const store = storeOn(i);
        work.push(
          settle(holder, async () => {
            const result = await store.allocateFreshId(record(holder.name), holder.lease);
            return result.kind === "allocated" ? result.id : undefined;
          }),
        );
      }
      // In a dark round more waiters come, once the primary has had time to advertise the held
      // claim's slot, so that one of them takes it while its claimer cannot settle.
      for (let i = 0; i < (dark ? 2 * WAITERS_PER_ROUND : WAITERS_PER_ROUND); i++) {
        const holder: Holder = { name: `waiter-${round}-${i}`, lease: await grant() };
        holders.push(holder);
        const store = storeOn(i + 2);
        const until = Date.now() + WAIT_FOR_AD_MS;
        work.push(
          settle(holder, async () => {
            if (dark) await sleep(DARK_MS / 3);
            for (;;) {
              const id = await store.claimAdvertisedSlot(record(holder.name), holder.lease);
              if (id !== undefined || Date.now() > until) return id;
              await sleep(20 + Math.random() * 30);
            }
          }),
        );
      }
      await Promise.all([...work, relit]);
      await check(`round ${round}`);
      // Members die (their slots get advertised), then the requests held on the wire arrive.
      const alive = holders.filter((h) => h.id !== undefined && !h.dead && !h.abandoned);
      for (const h of alive.sort(() => Math.random() - 0.5).slice(0, DEATHS_PER_ROUND)) {
        await direct.leaseClient.leaseRevoke({ ID: h.lease });
        h.dead = true;
      }
      await sleep(200);
      for (const proxy of proxies) if (proxy.mode === "hold-request") proxy.setMode("pass");
      for (const proxy of proxies)
        await proxy.releaseHeldRequest().then(
          () => {
            released += 1;
          },
          () => undefined,
        );
      await sleep(100);
      await check(`round ${round}, late copies arrived`);
    }
    advertising = false;
    await advertiser;
    const writes = (await writesHandled()) - writesBefore;
    const got = holders.filter((h) => h.id !== undefined);
    const lost = proxies.reduce((n, p) => n + p.repliesDropped, 0);
    console.log(
      JSON.stringify({
        holders: holders.length,
        gotId: got.length,
        abandoned: holders.filter((h) => h.abandoned).length,
        deaths: holders.filter((h) => h.dead).length,
        repliesDropped: lost,
        lateCopiesReleased: released,
        advertised,
        writes,
      }),
    );
    expect(got.length).toBeGreaterThan(0);
  });
});
