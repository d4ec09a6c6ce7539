import { afterEach, expect, inject, test } from "vitest";
import type { ProxyMode } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";
import { FaultCluster, runScenario, TTL_MS } from "./faultCluster.js";

let cluster: FaultCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** What the stopping primary's link does once its handoff reached etcd and the reply was dropped. */
const AFTERWARDS: readonly Exclude<ProxyMode, "drop-reply" | "hold-request">[] = [
  "pass",
  "blackhole",
  "reset",
];

/*
 * The worst moments of a graceful handoff: the transaction reaches etcd and its reply is lost,
 * then the link passes (the resignation settles it), goes dark (nothing settles it before the
 * process exits) or is reset. Whatever the stopping primary learns, the backup must hold the
 * office, by the handoff or (if it never applied) by promotion after the lease is gone; the
 * process exits cleanly, and the history checker finds every safety rule kept.
 */
test("graceful stops of the primary whose handoff's reply is lost, then the link passes, goes dark or resets: the backup takes office", async () => {
  cluster = await FaultCluster.start("handoff", 4);
  const c = cluster;
  const backupKey = c.layout.keys.leaderKey(0, 2);
  let handedOver = 0;
  const { report } = await runScenario(
    c,
    "graceful handoff: reply lost, then pass / blackhole / reset",
    inject("faultRowsFile"),
    async () => {
      for (let i = 0; i < 6; i++) {
        const afterwards = AFTERWARDS[i % AFTERWARDS.length] ?? "pass";
        await c.trial(async ({ primary, backup }) => {
          const token = (await c.status()).groupings[0]?.primary?.token;
          const id = (await c.status()).groups
            .flatMap((g) => g.members)
            .find((m) => m.name === primary.name)?.id;
          await c.impair(`primary's handoff reply lost, then ${afterwards}`, primary, async () => {
            primary.setNetwork("drop-reply", { match: backupKey, afterwards, dropReplyTimeoutMs: TTL_MS });
            expect(await primary.stop()).toEqual({ code: 0, signal: null });
          });
          await waitUntil("the backup to be primary", () => backup.role === "primary", 10 * TTL_MS);
          if ((await c.status()).groupings[0]?.primary?.token === token) handedOver += 1;
          // The newcomer claims the stopped primary's slot once the new primary advertised it.
          await waitUntil(
            `slot ${id} advertised`,
            async () => (await c.status()).advertised.some((a) => a.id === id),
            6 * TTL_MS,
          );
          await c.addNode();
        });
      }
      return `${handedOver} of 6 by the handoff itself`;
    },
  );
  expect(handedOver).toBeGreaterThan(0);
  expect(report.violations).toEqual([]);
});

/*
 * The handoff is held on the wire and the stopping primary's link then goes dark: nothing it sends
 * reaches etcd, so its lease expires and the backup is promoted (a new token). The handoff,
 * delivered after that, must change nothing: it compares the old token.
 */
test("a handoff held on the wire past the primary's lease expiry and released after the backup's promotion changes nothing", async () => {
  cluster = await FaultCluster.start("late-handoff", 4);
  const c = cluster;
  const backupKey = c.layout.keys.leaderKey(0, 2);
  const { report } = await runScenario(
    c,
    "graceful handoff held past lease expiry",
    inject("faultRowsFile"),
    async () => {
      for (let i = 0; i < 2; i++)
        await c.trial(async ({ primary, backup }) => {
          const stoppedToken = await c.primaryToken();
          const id = (await c.status()).groups
            .flatMap((g) => g.members)
            .find((m) => m.name === primary.name)?.id;
          await c.impair("primary's handoff held, then its link dark", primary, async () => {
            primary.setNetwork("hold-request", { match: backupKey, afterwards: "blackhole" });
            expect(await primary.stop()).toEqual({ code: 0, signal: null });
            await waitUntil(
              "the backup promoted under a new token",
              async () =>
                backup.role === "primary" && ((await c.primaryToken()) ?? stoppedToken) !== stoppedToken,
              10 * TTL_MS,
            );
          });
          await waitUntil(
            "a new backup",
            async () => (await c.client.get(backupKey).exec()).kvs.length > 0,
            10 * TTL_MS,
          );
          const successor = await c.primaryToken();
          const backupSeat = (await c.client.get(backupKey).exec()).kvs[0]?.create_revision;
          await primary.releaseHeldRequest();
          expect(await c.primaryToken()).toBe(successor);
          expect((await c.client.get(backupKey).exec()).kvs[0]?.create_revision).toBe(backupSeat);
          await waitUntil(
            `slot ${id} advertised`,
            async () => (await c.status()).advertised.some((a) => a.id === id),
            6 * TTL_MS,
          );
          await c.addNode();
        });
      return undefined;
    },
  );
  expect(report.violations).toEqual([]);
});
