import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import { waitUntil } from "../support/waitUntil.js";
import { FaultCluster, runScenario, TTL_MS } from "./faultCluster.js";
import type { NodeProcess } from "./nodeProcess.js";

interface Flap {
  /** After the node became backup: at once (its office read is cut too), or once that read is done. */
  afterMs: number;
  mode: "reset" | "blackhole";
  /** How long the link is down. */
  downMs: number;
}

const FLAPS: Flap[] = [
  { afterMs: 0, mode: "reset", downMs: 300 },
  { afterMs: 300, mode: "reset", downMs: 300 },
  { afterMs: 0, mode: "blackhole", downMs: 600 },
  { afterMs: 300, mode: "blackhole", downMs: 600 },
];
const PROMOTION_TIMEOUT_MS = 10 * TTL_MS;

let cluster: FaultCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** The lease of `node`'s member key: the one its leader keys are bound to. */
async function leaseOf(c: FaultCluster, node: NodeProcess): Promise<string> {
  const { members } = await c.membership();
  const lease = members.find((m) => m.name === node.name)?.lease;
  if (!lease) throw new Error(`${node.name} has no member key`);
  return lease;
}

/**
 * A node that has just become backup (at once, or once its office read is done) loses its link; meanwhile the primary is killed -9 and its
 * lease revoked (etcd expiring it at a chosen moment), so the primary key is deleted while the
 * backup cannot see it. When the link comes back, the backup's watches are created again, and
 * right after the first creation reply the connection is lost once more: the proxy drops it as
 * soon as etcd answers the next watch creation, which carries a member-key prefix. etcd sends a
 * new watch's catch-up events only from its next sync (up to 100 ms later), so the delete of the
 * primary key is on the way when the link goes; the backup must still promote.
 */
test("a node that has just become backup loses its link for a few hundred ms, and again right after its watches are created, while the primary is killed -9: the backup still promotes", async () => {
  cluster = await FaultCluster.start("watch-flap");
  const c = cluster;
  const membersPrefix = c.layout.keys.allMembersPrefix;
  const { report } = await runScenario(
    c,
    "link flap of a new backup + kill -9 primary",
    inject("faultRowsFile"),
    async () => {
      for (const { afterMs, mode, downMs } of FLAPS) {
        await c.trial(async ({ primary, backup }) => {
          await backup.kill9();
          const fresh = await waitUntil(
            "a follower to become backup",
            () => c.active().find((n) => n !== primary && n.role === "backup"),
            6 * TTL_MS,
            5,
          );
          const primaryLease = await leaseOf(c, primary);
          await sleep(afterMs);
          await c.impair(`${mode} ${downMs} ms, ${afterMs} ms after it became backup`, fresh, async () => {
            fresh.setNetwork(mode);
            await primary.kill9();
            await c.client.leaseClient.leaseRevoke({ ID: primaryLease });
            await sleep(downMs);
            if (mode === "blackhole") fresh.setNetwork("reset");
            fresh.setNetwork("drop-reply", { match: membersPrefix, dropReplyTimeoutMs: TTL_MS });
          });
          await waitUntil(
            `${fresh.name} to promote`,
            async () => (await c.status()).groupings[0]?.primary?.name === fresh.name,
            PROMOTION_TIMEOUT_MS,
            50,
          );
          fresh.setNetwork("pass");
          await c.addNode();
          await c.addNode();
        });
      }
      const dropped = c.nodes.reduce((sum, n) => sum + n.repliesDropped, 0);
      const flaps = FLAPS.map((f) => `${f.mode} ${f.downMs} ms at +${f.afterMs} ms`).join(", ");
      return `flaps: ${flaps}; ${dropped} watch creations cut`;
    },
  );
  expect(report.violations).toEqual([]);
});
