/**
 * What the lease watchdog takes for a dead node: a pid that is gone, a zombie (dead, not reaped),
 * or a pid now held by another process (its start time differs). `kill(pid, 0)` alone would call
 * the last two alive and leave a dead node's lease to its TTL.
 */
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, test } from "vitest";
import { isProcessAlive, processStartTicks } from "../../src/processLiveness.js";
import { waitUntil } from "../support/waitUntil.js";

const started: number[] = [];

afterEach(() => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
});

test("this process is alive, and only with its own start time", () => {
  const ticks = processStartTicks(process.pid);
  expect(ticks).toBeGreaterThan(0);
  expect(isProcessAlive(process.pid, ticks)).toBe(true);
  expect(isProcessAlive(process.pid, (ticks ?? 0) + 1)).toBe(false);
});

test("a zombie counts as dead though kill(pid, 0) still finds it", async () => {
  // The shell starts a short child, then becomes `sleep 30`, which never reaps it.
  const parent = spawn("sh", ["-c", "sleep 0.1 & echo $!; exec sleep 30"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  started.push(parent.pid ?? -1);
  let out = "";
  parent.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  const zombie = await waitUntil("the child's pid", () =>
    out.includes("\n") ? Number(out.trim()) : undefined,
  );
  await sleep(300);
  expect(() => process.kill(zombie, 0)).not.toThrow();
  expect(isProcessAlive(zombie)).toBe(false);
});

test("a pid that is gone is dead", async () => {
  const child = spawn("sleep", ["30"], { stdio: "ignore" });
  const pid = child.pid ?? -1;
  expect(isProcessAlive(pid, processStartTicks(pid))).toBe(true);
  child.kill("SIGKILL");
  await new Promise((resolve) => child.once("exit", resolve));
  expect(isProcessAlive(pid)).toBe(false);
});
