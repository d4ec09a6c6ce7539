import { type ChildProcess, spawn } from "node:child_process";

/** A line of the process's stderr: its JSON object, or the text as a `raw` message. */
export interface LogLine {
  level?: string;
  message?: string;
  [field: string]: unknown;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TestProcessOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with every complete line of its stderr (JSON lines are parsed). */
  onLine?: (line: LogLine, raw: string) => void;
}

const DEFAULT_STOP_GRACE_MS = 5_000;

const live = new Set<TestProcess>();

function killLive(): void {
  for (const child of live) child.signal("SIGKILL");
}

process.on("exit", killLive);

/** SIGKILLs, by pid, every process a TestProcess started that still runs, and waits for them. */
export async function killAllTestProcesses(): Promise<void> {
  const running = [...live];
  killLive();
  await Promise.all(running.map((child) => child.exited));
}

export function parseLogLine(raw: string): LogLine {
  try {
    const value: unknown = JSON.parse(raw);
    if (typeof value === "object" && value !== null) return value as LogLine;
  } catch {}
  return { level: "raw", message: raw };
}

/**
 * A process a test started: `kill -9`, pause (SIGSTOP) and resume (SIGCONT), each sent to its own
 * pid only; SIGKILLed when this process exits if the test did not stop it.
 */
export class TestProcess {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<ProcessExit>;
  private readonly child: ChildProcess;
  private exitStatus: ProcessExit | undefined;
  private failure: string | undefined;
  private partial = "";
  private paused = false;

  constructor(command: string, args: readonly string[], options: TestProcessOptions = {}) {
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    live.add(this);
    this.child.stderr?.setEncoding("utf8");
    this.child.stderr?.on("data", (chunk: string) => this.read(chunk, options.onLine));
    this.exited = new Promise((resolve) => {
      const end = (exit: ProcessExit) => {
        live.delete(this);
        this.exitStatus ??= exit;
        resolve(this.exitStatus);
      };
      this.child.once("error", (err) => {
        this.failure = err.message;
        end({ code: null, signal: null });
      });
      this.child.once("exit", (code, signal) => end({ code, signal }));
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitStatus === undefined && this.child.pid !== undefined;
  }

  get exit(): ProcessExit | undefined {
    return this.exitStatus;
  }

  get isPaused(): boolean {
    return this.paused && this.running;
  }

  /** Why it could not be started, if it could not. */
  get spawnError(): string | undefined {
    return this.failure;
  }

  /** Sends `signal` to its pid; false when it is not running. */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.running || this.child.pid === undefined) return false;
    process.kill(this.child.pid, signal);
    return true;
  }

  /** SIGKILL, and its exit. */
  kill9(): Promise<ProcessExit> {
    this.signal("SIGKILL");
    return this.exited;
  }

  /** SIGSTOP: it keeps its sockets and answers nothing until `resume()`. */
  pause(): void {
    this.signal("SIGSTOP");
    this.paused = true;
  }

  resume(): void {
    this.signal("SIGCONT");
    this.paused = false;
  }

  /** SIGTERM (after SIGCONT, in case it is paused), SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<ProcessExit> {
    this.resume();
    this.signal("SIGTERM");
    const escalation = setTimeout(() => this.signal("SIGKILL"), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(escalation);
    }
  }

  private read(chunk: string, onLine: TestProcessOptions["onLine"]): void {
    const lines = (this.partial + chunk).split("\n");
    this.partial = lines.pop() ?? "";
    for (const raw of lines) {
      if (raw.trim() === "") continue;
      const line = parseLogLine(raw);
      this.lines.push(line);
      onLine?.(line, raw);
    }
  }
}
