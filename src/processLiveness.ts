import { readFileSync } from "node:fs";

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/**
 * This host's current boot (Linux's random boot id); undefined where it cannot be read. Two
 * processes that saw the same boot id ran on the same host since its last boot.
 */
export function currentBootId(): string | undefined {
  try {
    const id = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    return /^[0-9a-f-]{36}$/.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/** The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat); undefined off Linux. */
export function processStartTicks(pid: number): number | undefined {
  const start = statFields(pid)?.[19];
  return start === undefined ? undefined : Number(start);
}

/**
 * True while `pid` is a live process, and the same one as when `startTicks` was read. A zombie
 * (dead, not yet reaped by its parent) counts as dead, and so does a pid reused by a newer process.
 * Where /proc cannot be read, `process.kill(pid, 0)` alone decides.
 */
export function isProcessAlive(pid: number, startTicks?: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  const fields = statFields(pid);
  if (!fields) return true;
  const state = fields[0];
  if (state === "Z" || state === "X" || state === "x") return false;
  return startTicks === undefined || Number(fields[19]) === startTicks;
}
