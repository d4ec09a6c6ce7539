/** What the benchmark process itself uses: memory, file descriptors, TCP connections, event-loop delay. */
import { readdirSync, readFileSync } from "node:fs";
import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

export interface MemorySample {
  heapUsed: number;
  rss: number;
  external: number;
  arrayBuffers: number;
  /** Whether `gc()` ran first (node --expose-gc). */
  gcForced: boolean;
}

const gcFn = (globalThis as { gc?: () => void }).gc;

/** Memory after a forced full GC when `--expose-gc` is on (twice, with a tick between, so weak refs clear). */
export async function sampleMemory(): Promise<MemorySample> {
  if (gcFn) {
    gcFn();
    await sleep(50);
    gcFn();
  }
  const m = process.memoryUsage();
  return {
    heapUsed: m.heapUsed,
    rss: m.rss,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    gcForced: gcFn !== undefined,
  };
}

/** Open file descriptors of this process (Linux /proc), NaN elsewhere. */
export function openFds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return Number.NaN;
  }
}

/** The soft limit on open files (Linux /proc), NaN elsewhere. */
export function fdLimit(): number {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    return Number(line?.split(/\s+/)[3]);
  } catch {
    return Number.NaN;
  }
}

/**
 * Established TCP connections to 127.0.0.1:`port` from any local process (the client side of each
 * connection, i.e. entries whose remote port is `port`), read from /proc/net/tcp; NaN elsewhere.
 */
export function tcpConnectionsTo(port: number): number {
  try {
    const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
    let count = 0;
    for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      let text = "";
      try {
        text = readFileSync(file, "utf8");
      } catch {
        continue;
      }
      for (const line of text.split("\n").slice(1)) {
        const cols = line.trim().split(/\s+/);
        const remote = cols[2];
        const state = cols[3];
        if (remote?.endsWith(`:${hexPort}`) && state === "01") count += 1;
      }
    }
    return count;
  } catch {
    return Number.NaN;
  }
}

export interface LoopDelay {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The sampling interval: an idle loop reports about this much (the histogram includes it). */
  resolutionMs: number;
}

/** Event-loop delay over a phase (perf_hooks `monitorEventLoopDelay`). */
export class LoopDelayMonitor {
  static readonly RESOLUTION_MS = 10;
  private readonly h: IntervalHistogram = monitorEventLoopDelay({
    resolution: LoopDelayMonitor.RESOLUTION_MS,
  });

  constructor() {
    this.h.enable();
  }

  /** The delay since the last read (or since creation), and starts over. */
  read(): LoopDelay {
    const ms = (ns: number) => Math.round((ns / 1e6) * 10) / 10;
    const out = {
      p50Ms: this.h.count > 0 ? ms(this.h.percentile(50)) : Number.NaN,
      p99Ms: this.h.count > 0 ? ms(this.h.percentile(99)) : Number.NaN,
      maxMs: this.h.count > 0 ? ms(this.h.max) : Number.NaN,
      resolutionMs: LoopDelayMonitor.RESOLUTION_MS,
    };
    this.h.reset();
    return out;
  }

  stop(): LoopDelay {
    const out = this.read();
    this.h.disable();
    return out;
  }
}

/** CPU of this process between two `process.cpuUsage()` readings, as a share of one core. */
export function cpuCores(before: NodeJS.CpuUsage, beforeAt: number, afterAt: number): number {
  const d = process.cpuUsage(before);
  const ms = afterAt - beforeAt;
  return ms > 0 ? Math.round(((d.user + d.system) / 1000 / ms) * 100) / 100 : Number.NaN;
}

/** Jiffies of all CPUs of the host, busy and total (Linux /proc/stat); undefined elsewhere. */
export function hostCpuTimes(): { busy: number; total: number } | undefined {
  try {
    const cols = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const total = cols.reduce((sum, x) => sum + x, 0);
    const idle = (cols[3] ?? 0) + (cols[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** How busy the whole host was between two `hostCpuTimes()` readings, in CPUs (2 = two cores busy). */
export function hostBusyCores(
  a: ReturnType<typeof hostCpuTimes>,
  b: ReturnType<typeof hostCpuTimes>,
  cpus: number,
): number {
  if (!a || !b || b.total <= a.total) return Number.NaN;
  return Math.round(((b.busy - a.busy) / (b.total - a.total)) * cpus * 100) / 100;
}
