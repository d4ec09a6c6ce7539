import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, inject, test } from "vitest";
import type { ProxyMode } from "../support/tcpProxy.js";
import { FaultCluster, rowOf, TTL_MS } from "./faultCluster.js";
import { appendRow } from "./summary.js";

const TRIALS = 3;
const PARTITION_MS = 3 * TTL_MS;
const DELAY_MS = TTL_MS;
const MODES: ProxyMode[] = ["blackhole", "reset", "delay", "stall-upstream", "stall-downstream"];

let cluster: FaultCluster | undefined;

afterEach(async ({ task }) => {
  if (task.result?.state === "fail") cluster?.keepArtifacts();
  await cluster?.close();
  cluster = undefined;
});

test.each(MODES)(
  `the primary cut off from etcd by its proxies (%s) for ${PARTITION_MS / TTL_MS} TTL`,
  async (mode) => {
    cluster = await FaultCluster.start(`partition-${mode}`);
    const c = cluster;
    for (let i = 0; i < TRIALS; i++) {
      await c.trial(async ({ primary }) => {
        primary.setNetwork(mode, { delayMs: DELAY_MS });
        await sleep(PARTITION_MS);
        // Bytes a blackhole dropped leave the connection unusable; a real TCP stack would time it out.
        if (mode === "blackhole") primary.setNetwork("reset");
        primary.setNetwork("pass");
      });
    }
    const report = await c.finish();
    const note = mode === "delay" ? `${DELAY_MS} ms each way` : undefined;
    appendRow(inject("faultRowsFile"), rowOf(`partition primary: ${mode}`, c.trials, report, note));
    expect(report.violations).toEqual([]);
  },
);
