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
