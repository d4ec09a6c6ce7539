import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import type { TcpProxy } from "../support/tcpProxy.js";
import { waitUntil } from "../support/waitUntil.js";
import { FaultCluster, runScenario, TTL_MS } from "./faultCluster.js";
import type { NodeProcess } from "./nodeProcess.js";

const WRITE_TIMEOUT_MS = 15_000;

let cluster: FaultCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/**
 * Arms `count` of the proxies: the next request whose bytes contain `match` reaches etcd, but its
 * reply is lost with the connection. etcd3 re-sends the request on another connection, so the
 * retry may find its own first attempt already applied; with all three armed, every attempt is
 * applied and every reply lost.
 */
function loseNextReply(proxies: readonly TcpProxy[], count: number, match: string): void {
  for (const proxy of proxies.slice(0, count))
    proxy.setMode("drop-reply", { match, dropReplyTimeoutMs: TTL_MS });
}

const totalDropped = (c: FaultCluster) => c.nodes.reduce((sum, n) => sum + n.repliesDropped, 0);

/** A follower, not primary or backup; `undefined` when there is none. */
const followerOf = (c: FaultCluster, primary: NodeProcess, backup: NodeProcess) =>
  c.active().find((n) => n !== primary && n !== backup);

test("lost replies to ID allocations and slot claims (a node started through proxies that drop them): every live node ends with exactly one member key", async () => {
  cluster = await FaultCluster.start("lost-ids", 3);
  const c = cluster;
  const members = c.layout.keys.allMembersPrefix;
  const { report } = await runScenario(
    c,
    "lost replies: ID allocation / slot claim",
    inject("faultRowsFile"),
    async () => {
      for (let i = 0; i < 6; i++) {
        const claim = i % 2 === 1;
        await c.trial(async ({ primary, backup, status }) => {
          if (claim) {
            const victim = followerOf(c, primary, backup);
            if (!victim) throw new Error("no follower to kill");
            const id = status.groups.flatMap((g) => g.members).find((m) => m.name === victim.name)?.id;
            await victim.kill9();
            await waitUntil(
              `slot ${id} advertised`,
              async () => (await c.status()).advertised.some((a) => a.id === id),
              6 * TTL_MS,
            );
          }
          const node = await c.addNode((proxies) => loseNextReply(proxies, (i % 3) + 1, members));
          await waitUntil(`${node.name} to join`, () => node.role === "follower", 6 * TTL_MS);
          node.setNetwork("pass");
        });
      }
      return `allocations and claims alternate, 1-3 proxies armed; ${totalDropped(c)} replies dropped`;
    },
  );
  expect(report.violations).toEqual([]);
});

test("lost replies to campaigns (backup killed) and promotions (primary killed): the seats are filled and held by the nodes that act in them", async () => {
  cluster = await FaultCluster.start("lost-campaign");
  const c = cluster;
  const { report } = await runScenario(
    c,
    "lost replies: campaign / promotion",
    inject("faultRowsFile"),
    async () => {
      for (let i = 0; i < 4; i++) {
        const promotion = i % 2 === 1;
        await c.trial(async ({ primary, backup }) => {
          const count = (i % 3) + 1;
          if (promotion) {
            loseNextReply(backup.proxies, count, c.layout.keys.leaderKey(0, 1));
            await primary.kill9();
          } else {
            for (const n of c.active().filter((n) => n !== primary && n !== backup))
              loseNextReply(n.proxies, count, c.layout.keys.leaderKey(0, 2));
            await backup.kill9();
          }
          await waitUntil(
            "a new primary and backup",
            async () => {
              const leaders = (await c.status()).groupings[0];
              const held = [leaders?.primary?.name, leaders?.backup?.name];
              return held.every((name) => name !== undefined && c.byName(name)?.running);
            },
            8 * TTL_MS,
          );
          for (const n of c.active()) n.setNetwork("pass");
          await c.addNode();
        });
      }
      return `campaigns and promotions alternate, 1-3 proxies armed; ${totalDropped(c)} replies dropped`;
    },
  );
  expect(report.violations).toEqual([]);
});

/** PUT through the example server; the answer (or its absence) is recorded for the checker. */
async function write(c: FaultCluster, via: NodeProcess, key: string, value: string): Promise<number> {
  let status = 0;
  let revision: number | undefined;
  try {
    const res = await fetch(`${via.url}/kv/${encodeURIComponent(key)}`, {
      method: "PUT",
      body: value,
      signal: AbortSignal.timeout(WRITE_TIMEOUT_MS),
    });
    status = res.status;
    const body = (await res.json()) as { revision?: unknown };
    if (typeof body.revision === "number") revision = body.revision;
  } catch {}
  c.writes.push({ node: via.name, key: c.layout.keys.commitRecordKey(0, key), value, status, revision });
  return status;
}

test("lost replies to fenced writes (rdeebee-cluster serve), and writes to a stalled or deposed primary: every write's reported outcome matches etcd", async () => {
  cluster = await FaultCluster.start("lost-writes", { nodes: 3, command: "serve" });
  const c = cluster;
  const recordPrefix = c.layout.keys.commitRecordKey(0, "");
  let n = 0;
  const next = () => {
    n += 1;
    return [`k${n % 3}`, `v${n}-${Date.now()}`] as const;
  };
  const { report } = await runScenario(
    c,
    "lost replies: fenced write (serve)",
    inject("faultRowsFile"),
    async () => {
      for (let i = 0; i < 6; i++) {
        const { primary, backup } = await c.settled();
        loseNextReply(primary.proxies, (i % 3) + 1, recordPrefix);
        await write(c, primary, ...next());
        primary.setNetwork("pass");
        await write(c, backup, ...next());
      }
      for (let i = 0; i < 2; i++) {
        await c.trial(async ({ primary }) => {
          primary.setNetwork("stall-upstream");
          const stale = write(c, primary, ...next());
          await waitUntil(
            "another node to take the primary key",
            async () => {
              const now = (await c.status()).groupings[0]?.primary?.name;
              return now !== undefined && now !== primary.name;
            },
            6 * TTL_MS,
          );
          primary.setNetwork("pass");
          await stale;
          await sleep(100);
          await write(c, primary, ...next());
        });
      }
      const answers = new Map<number, number>();
      for (const w of c.writes) answers.set(w.status, (answers.get(w.status) ?? 0) + 1);
      const tally = [...answers].map(([status, count]) => `${count}x${status || "none"}`).join(" ");
      return `${c.writes.length} writes (${tally}); ${totalDropped(c)} replies dropped`;
    },
  );
  expect(report.violations).toEqual([]);
});
