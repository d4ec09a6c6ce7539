import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import { FaultCluster, runScenario, TTL_MS } from "./faultCluster.js";
import type { NodeProcess } from "./nodeProcess.js";

const TRIALS = 2;
const DOWN_MS = 3 * TTL_MS;
/**
 * CPU a node may use while etcd is down, as a share of one core. Measured: about 1 % idle, 1–2 %
 * while etcd is down; 10–14 % when keepalives are retried without a pause.
 */
const MAX_CPU_SHARE_WHILE_DOWN = 0.05;

let cluster: FaultCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

/** CPU milliseconds each node uses while `during` runs, over its wall time. */
async function cpuShares(
  nodes: readonly NodeProcess[],
  during: () => Promise<void>,
): Promise<Map<string, number>> {
  const before = new Map(nodes.map((n) => [n.name, n.cpuMs()]));
  const startedAt = Date.now();
  await during();
  const elapsed = Date.now() - startedAt;
  return new Map(
    nodes.flatMap((n) => {
      const [from, to] = [before.get(n.name), n.cpuMs()];
      return from === undefined || to === undefined ? [] : [[n.name, (to - from) / elapsed] as const];
    }),
  );
}

const percent = (shares: Iterable<number>) => `${(Math.max(0, ...shares) * 100).toFixed(1)} %`;

test(`etcd down for ${DOWN_MS / TTL_MS} TTL (every member stopped, then started on its data dir): no node exits or spins, the cluster re-forms`, async () => {
  cluster = await FaultCluster.start("etcd-down");
  const c = cluster;
  const idle: number[] = [];
  const down: number[] = [];
  const spinning: string[] = [];
  const dials: number[] = [];
  const { report } = await runScenario(
    c,
    `etcd down ${DOWN_MS / TTL_MS} TTL`,
    inject("faultRowsFile"),
    async () => {
      for (let i = 0; i < TRIALS; i++) {
        await c.trial(async () => {
          const nodes = c.active();
          idle.push(...(await cpuShares(nodes, () => sleep(DOWN_MS))).values());
          await c.impair("every etcd member down", undefined, async () => {
            await c.etcd.stopAll();
            const dialed = nodes.map((n) => n.connectionsAccepted);
            const shares = await cpuShares(nodes, () => sleep(DOWN_MS));
            dials.push(...nodes.map((n, j) => n.connectionsAccepted - (dialed[j] ?? 0)));
            for (const [name, share] of shares) {
              down.push(share);
              if (share > MAX_CPU_SHARE_WHILE_DOWN) spinning.push(`${name} ${(share * 100).toFixed(0)} %`);
            }
            await c.etcd.startAll();
          });
        }, 60_000);
      }
      return `max CPU per node: ${percent(idle)} of a core idle, ${percent(down)} while etcd was down (all: ${down.map((d) => (d * 100).toFixed(1)).join(" ")}); dials per node while down: ${dials.join(" ")}`;
    },
  );
  expect(spinning, `nodes above ${MAX_CPU_SHARE_WHILE_DOWN * 100} % of a core while etcd was down`).toEqual(
    [],
  );
  expect(report.violations).toEqual([]);
});
