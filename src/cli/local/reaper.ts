import { rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { isProcessAlive } from "../../processLiveness.js";
import type { ReaperMessage } from "./reaperLink.js";

/**
 * The reaper of one `local` run, started by `ReaperLink`. It waits for its IPC channel to `local`
 * to close. After a "done" it just exits; otherwise `local` died without cleaning up (e.g. kill -9)
 * and the reaper does it: SIGTERM to every process still listed (nodes first, so that they can
 * leave the cluster while the etcd still runs), SIGKILL to those left after the grace period, then
 * removes the directories.
 */

const GRACE_MS = 3_000;
const POLL_MS = 50;

const processes = { node: new Set<number>(), etcd: new Set<number>() };
const directories: string[] = [];
let done = false;

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {}
}

async function stop(pids: readonly number[]): Promise<void> {
  for (const pid of pids) {
    signal(pid, "SIGTERM");
    signal(pid, "SIGCONT");
  }
  const deadline = Date.now() + GRACE_MS;
  while (pids.some((pid) => isProcessAlive(pid)) && Date.now() < deadline) await sleep(POLL_MS);
  for (const pid of pids.filter((pid) => isProcessAlive(pid))) signal(pid, "SIGKILL");
  while (pids.some((pid) => isProcessAlive(pid))) await sleep(POLL_MS);
}

async function reap(): Promise<void> {
  await stop([...processes.node]);
  await stop([...processes.etcd]);
  for (const path of directories) rmSync(path, { recursive: true, force: true, maxRetries: 3 });
}

process.on("message", (message: ReaperMessage) => {
  switch (message.kind) {
    case "process":
      processes[message.role].add(message.pid);
      break;
    case "gone":
      processes.node.delete(message.pid);
      processes.etcd.delete(message.pid);
      break;
    case "directory":
      directories.push(message.path);
      break;
    case "done":
      done = true;
      break;
  }
});

process.on("disconnect", () => {
  if (done) process.exit(0);
  void reap().finally(() => process.exit(0));
});
