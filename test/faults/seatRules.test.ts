import { setTimeout as sleep } from "node:timers/promises";
import { EtcdLeaseInvalidError } from "etcd3";
import { afterEach, expect, inject, test } from "vitest";
import { waitUntil } from "../support/waitUntil.js";
import { Compactor } from "./compactor.js";
import { FaultCluster, rowOf, runScenario, TTL_MS } from "./faultCluster.js";
import type { NodeProcess } from "./nodeProcess.js";
import { appendRow } from "./summary.js";

let cluster: FaultCluster | undefined;

afterEach(async ({ task }) => {
  if (task.result?.state === "fail") cluster?.keepArtifacts();
  await cluster?.close();
  cluster = undefined;
});

/** The create revision of grouping 0's primary key as etcd has it now. */
/*
 * The resignation of a primary that is stopping reaches etcd late, after its lease expired and the
 * backup took the seat: a copy of the request delayed in the network. (A primary paused past its
 * TTL and then stopped does not get that far: once resumed, its lease timer fires before the stop
 * and it gives up the office first.) A resignation not fenced on its own token deletes the
 * successor's key.
 */
test("a deposed primary's resignation arriving late leaves its successor's key alone", async () => {
  cluster = await FaultCluster.start("late-resign", 3);
  const c = cluster;
  const primaryKey = c.layout.keys.leaderKey(0, 1);
  await c.trial(async ({ primary, backup }) => {
    const deposedToken = await c.primaryToken();
    await c.impair("primary's resignation held back, then stopped", primary, async () => {
      primary.setNetwork("hold-request", { match: primaryKey, afterwards: "pass" });
      expect(await primary.stop()).toEqual({ code: 0, signal: null });
      await waitUntil(
        "the backup to take the primary key",
        async () => {
          const token = await c.primaryToken();
          return token !== undefined && token !== deposedToken && backup.role === "primary";
        },
        10 * TTL_MS,
      );
    });
    const successorToken = await c.primaryToken();
    await primary.releaseHeldRequest();
    expect(await c.primaryToken()).toBe(successorToken);
    await c.addNode();
  });
  const report = await c.finish();
  appendRow(
    inject("faultRowsFile"),
    rowOf("primary's resignation arrives after its successor took the seat", c.trials, report),
  );
  expect(report.violations).toEqual([]);
});

/** How many promotions `node` has recorded so far, and how many of them etcd refused. */
function promotions(node: NodeProcess): { all: number; refused: number } {
  const records = node.history().filter((r) => r.kind === "leader" && r.action === "promote");
  return {
    all: records.length,
    refused: records.filter((r) => r.kind === "leader" && r.outcome === "refused").length,
  };
}

/**
 * Revokes `lease` now rather than waiting a TTL for its expiry; the node's lease watchdog may have
 * revoked it first.
 */
async function revokeNow(c: FaultCluster, lease: string): Promise<void> {
  await c.client.leaseClient.leaseRevoke({ ID: lease }).catch((err: unknown) => {
    if (!(err instanceof EtcdLeaseInvalidError)) throw err;
  });
}

/** The lease of `node`'s member key: the one its leader keys are bound to. */
async function leaseOf(c: FaultCluster, node: NodeProcess): Promise<string> {
  const lease = (await c.membership()).members.find((m) => m.name === node.name)?.lease;
  if (!lease) throw new Error(`${node.name} has no member key`);
  return lease;
}

/** Times `node` has taken office as primary so far, by its history. */
function primaryTerms(node: NodeProcess): number {
  let terms = 0;
  let role: string | undefined;
  for (const record of node.history()) {
    if (record.kind !== "transition") continue;
    if (record.role === "primary" && role !== "primary") terms += 1;
    role = record.role;
  }
  return terms;
}

/** Short of the backup's local deadline (TTL − 200 ms after its last acknowledged keepalive). */
const STALL_MS = 500;

interface StaleView {
  /** Runs while the backup's replies are still held, once the primary key was re-created. */
  whileHeld?: () => Promise<void>;
  /**
   * Lets the held replies through: `pass` unless given. The trial sets every proxy of the backup
   * back to `pass` once it has tried to promote (or has not within a TTL).
   */
  release?: (backup: NodeProcess) => void;
}

/**
 * One trial: the backup's replies are held while the primary key is deleted and re-created under
 * the primary's lease, then let through. Says whether the backup tried to promote (acted on the
 * stale view) and whether etcd refused it.
 */
async function staleViewTrial(
  c: FaultCluster,
  how: StaleView = {},
): Promise<{ tried: boolean; refused: boolean }> {
  const primaryKey = c.layout.keys.leaderKey(0, 1);
  let outcome = { tried: false, refused: false };
  await c.trial(async ({ primary, backup }) => {
    const before = promotions(backup);
    const termsBefore = primaryTerms(primary);
    const seat = (await c.client.get(primaryKey).exec()).kvs[0];
    if (!seat) throw new Error(`${primaryKey} is vacant in a settled cluster`);
    const reseatedToken = await c.impair(`${backup.name}'s replies held`, backup, async () => {
      backup.setNetwork("stall-downstream");
      const heldFrom = Date.now();
      await c.remove(primaryKey);
      const txn = await c.client
        .if(primaryKey, "Create", "==", 0)
        .then(c.client.put(primaryKey).value(seat.value).lease(String(seat.lease)))
        .commit();
      if (!txn.succeeded) throw new Error(`${primaryKey} was taken before the test re-created it`);
      c.foreignRevisions.add(Number(txn.header.revision));
      await how.whileHeld?.();
      await sleep(Math.max(0, STALL_MS - (Date.now() - heldFrom)));
      (how.release ?? ((b) => b.setNetwork("pass")))(backup);
      return Number(txn.header.revision);
    });
    await waitUntil(
      `${backup.name} to try to promote`,
      () => promotions(backup).all > before.all,
      TTL_MS,
      5,
    ).catch(() => undefined);
    backup.setNetwork("pass");
    await waitUntil(
      `${primary.name} to take the re-created key as its own`,
      () => primaryTerms(primary) > termsBefore,
      5 * TTL_MS,
    );
    await sleep(TTL_MS);
    const held = (await c.client.get(primaryKey).exec()).kvs[0];
    expect(Number(held?.create_revision)).toBe(reseatedToken);
    expect(String(held?.lease)).toBe(String(seat.lease));
    const after = promotions(backup);
    outcome = { tried: after.all > before.all, refused: after.refused > before.refused };
  });
  return outcome;
}

const STALE_VIEW_TRIALS = 3;

/*
 * The backup's replies are held (its watch stream stalls; its requests still reach etcd) while the
 * primary key is deleted and re-created under the primary's lease: etcd has a live primary again,
 * and the primary takes the new key as its own. When the held replies come through, the backup's
 * view first shows the seat vacant and it tries to promote over a primary that is there. Only the
 * promotion's primary-absent compare stops it (the backup key is unchanged, so its token compare
 * holds). A trial whose two changes reach the backup in one response proves nothing; at least one
 * must have the backup act on the stale view.
 */
test("a backup acting on a stale view of a vacant primary seat never promotes over the live primary", async () => {
  cluster = await FaultCluster.start("stale-backup", 3);
  const c = cluster;
  const { report } = await runScenario(
    c,
    "backup's view stale while the primary key is re-created",
    inject("faultRowsFile"),
    async () => {
      let refused = 0;
      for (let i = 0; i < STALE_VIEW_TRIALS; i++) if ((await staleViewTrial(c)).refused) refused += 1;
      if (refused === 0)
        throw new Error(`in ${STALE_VIEW_TRIALS} trials the backup never acted on the stale view`);
      return `${refused} of ${STALE_VIEW_TRIALS} stale promotions refused`;
    },
  );
  expect(report.violations).toEqual([]);
});

/** Warnings of `node` that say its watch had to be re-listed or re-opened. */
const watchRepairs = (node: NodeProcess) =>
  node.lines.filter(
    (l) =>
      l.message === "watch cancelled by etcd, re-listing" || l.message === "watch stream broke, reopening it",
  ).length;

/*
 * The same stale view, at the worst moment for the backup's watch: while its replies are held,
 * etcd's history is compacted past the re-created key (twice, so the revision after it is gone
 * too); then the held replies come through, and the reply to the backup's stale promotion is lost
 * with its connection, so the backup settles the promotion by a read while its watch stream
 * resumes below the compacted revision.
 */
test("a backup acting on a stale view under a compaction, the reply to its promotion lost with its link: it never promotes over the live primary, and no node exits", async () => {
  cluster = await FaultCluster.start("stale-backup-compacted", 3);
  const c = cluster;
  // The promotion is the backup's only request that names the backup key (the read settling it does not).
  const backupKey = c.layout.keys.leaderKey(0, 2);
  const compactor = new Compactor(c, TTL_MS);
  const { report } = await runScenario(
    c,
    "backup's view stale, history compacted, its promotion's reply lost",
    inject("faultRowsFile"),
    async () => {
      let refused = 0;
      for (let i = 0; i < STALE_VIEW_TRIALS; i++) {
        const outcome = await staleViewTrial(c, {
          whileHeld: async () => {
            await compactor.compactNow();
            await compactor.compactNow();
          },
          release: (backup) =>
            backup.setNetwork("drop-reply", { match: backupKey, dropReplyTimeoutMs: TTL_MS }),
        });
        if (outcome.refused) refused += 1;
      }
      if (refused === 0)
        throw new Error(`in ${STALE_VIEW_TRIALS} trials the backup never acted on the stale view`);
      const dropped = c.nodes.reduce((sum, n) => sum + n.repliesDropped, 0);
      const repairs = c.nodes.reduce((sum, n) => sum + watchRepairs(n), 0);
      return `${refused} of ${STALE_VIEW_TRIALS} stale promotions refused, ${dropped} replies lost, ${compactor.compactions} compactions, ${repairs} watches re-listed or re-opened`;
    },
  );
  expect(report.violations).toEqual([]);
});

/**
 * One trial: the follower's campaign for the backup seat is held in the network (it sees it fail
 * and runs again), the backup and then the primary are killed, and the follower is promoted, the
 * only node left to lead. `whilePrimary` runs then, given the indexes of the etcd members whose
 * proxies hold a campaign; then the held campaigns reach etcd. Returns how many did.
 */
async function lateCampaignTrial(
  c: FaultCluster,
  whilePrimary?: (last: NodeProcess, heldAt: readonly number[]) => Promise<void>,
): Promise<number> {
  const backupKey = c.layout.keys.leaderKey(0, 2);
  let delivered = 0;
  await c.trial(async ({ primary, backup }) => {
    const last = c.active().find((n) => n !== primary && n !== backup);
    if (!last) throw new Error("no follower");
    const [primaryLease, backupLease] = [await leaseOf(c, primary), await leaseOf(c, backup)];
    last.setNetwork("hold-request", { match: backupKey, afterwards: "pass" });
    await backup.kill9();
    await revokeNow(c, backupLease);
    await waitUntil(
      `${last.name}'s campaign for the backup seat to be held`,
      () => last.proxies.some((p) => p.mode !== "hold-request"),
      5 * TTL_MS,
      5,
    );
    const heldAt = last.proxies.flatMap((p, i) => (p.mode === "hold-request" ? [] : [i]));
    last.setNetwork("pass");
    await waitUntil(`${last.name} to become backup`, () => last.role === "backup", 5 * TTL_MS);
    await primary.kill9();
    await revokeNow(c, primaryLease);
    await waitUntil(`${last.name} to be promoted`, () => last.role === "primary", 5 * TTL_MS);
    await whilePrimary?.(last, heldAt);
    const released = await Promise.allSettled(last.proxies.map((p) => p.releaseHeldRequest()));
    delivered = released.filter((r) => r.status === "fulfilled").length;
    expect(delivered).toBeGreaterThan(0);
    expect((await c.client.get(backupKey).exec()).kvs).toEqual([]);
    expect(last.role).toBe("primary");
    await c.addNode();
    await c.addNode();
  });
  return delivered;
}

const BOTH_SEATS_TRIALS = 2;

/*
 * One node left to lead its grouping, and its own campaign for the backup seat reaches etcd late:
 * the backup seat is vacant, so only the campaign's other-seat compare (the primary key is not
 * under this lease) keeps the node from both seats.
 */
test("the only node left to lead a grouping never holds both seats, even when its own campaign for the backup seat arrives late", async () => {
  cluster = await FaultCluster.start("both-seats", 3);
  const c = cluster;
  const { report } = await runScenario(
    c,
    "late campaign of the only node left to lead",
    inject("faultRowsFile"),
    async () => {
      let late = 0;
      for (let i = 0; i < BOTH_SEATS_TRIALS; i++) late += await lateCampaignTrial(c);
      return `${late} late campaigns for the backup seat reached etcd while their node held the primary seat`;
    },
  );
  expect(report.violations).toEqual([]);
});

/*
 * The same, with etcd's quorum lost while the node is the only one left: the two members that do
 * not hold its late campaign are stopped for two TTLs, so the node passes its local deadline and
 * drops its office, then they come back and it resumes the primary seat it still holds; only then
 * does the late campaign reach etcd.
 */
test("the only node left to lead, suspended by a quorum loss and back in its seat, never holds both seats when its late campaign arrives", async () => {
  cluster = await FaultCluster.start("both-seats-quorum", 3);
  const c = cluster;
  const { report } = await runScenario(
    c,
    "late campaign of the only node left to lead, after a quorum loss",
    inject("faultRowsFile"),
    async () => {
      let late = 0;
      for (let i = 0; i < BOTH_SEATS_TRIALS; i++)
        late += await lateCampaignTrial(c, async (last, heldAt) => {
          // A campaign held at another member as well is lost with it; one delivered late is enough.
          const others = c.etcd.members.filter((_, j) => j !== heldAt[0]);
          const termsBefore = primaryTerms(last);
          await c.impair(
            `etcd members ${others.map((m) => m.name).join(", ")} stopped`,
            undefined,
            async () => {
              await Promise.all(others.map((m) => m.stop()));
              await sleep(2 * TTL_MS);
              for (const member of others) await member.restart();
            },
          );
          await waitUntil(
            `${last.name} to resume the primary seat`,
            () => primaryTerms(last) > termsBefore,
            10 * TTL_MS,
          );
        });
      return `${late} late campaigns for the backup seat reached etcd after their node resumed the primary seat`;
    },
  );
  expect(report.violations).toEqual([]);
});
