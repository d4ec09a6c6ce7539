import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** What `local` tells its reaper, over the IPC channel between them. */
export type ReaperMessage =
  | { kind: "process"; pid: number; role: "node" | "etcd" }
  | { kind: "gone"; pid: number }
  | { kind: "directory"; path: string }
  | { kind: "done" };

const REAPER_SCRIPT = fileURLToPath(new URL("./reaper.js", import.meta.url));

/**
 * `local`'s side of its reaper: a process outside `local`'s process group that outlives it. Node
 * has no parent-death signal, so the reaper learns of `local`'s death from the IPC channel closing
 * (which the kernel does even on SIGKILL) and then stops the processes and removes the directories
 * it was told about and not told were gone.
 */
export class ReaperLink {
  private readonly child: ChildProcess;

  constructor() {
    this.child = spawn(process.execPath, [REAPER_SCRIPT], {
      detached: true,
      stdio: ["ignore", "ignore", "ignore", "ipc"],
    });
    this.child.on("error", () => undefined);
    this.child.unref();
    this.child.channel?.unref();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** A process to stop if `local` dies; nodes are stopped before the etcd they leave through. */
  process(pid: number | undefined, role: "node" | "etcd"): void {
    if (pid !== undefined) this.send({ kind: "process", pid, role });
  }

  gone(pid: number | undefined): void {
    if (pid !== undefined) this.send({ kind: "gone", pid });
  }

  directory(path: string): void {
    this.send({ kind: "directory", path });
  }

  /** Everything was cleaned up by `local` itself: the reaper exits without touching anything. */
  done(): void {
    this.send({ kind: "done" });
    if (this.child.connected) this.child.disconnect();
  }

  private send(message: ReaperMessage): void {
    if (this.child.connected) this.child.send(message);
  }
}
