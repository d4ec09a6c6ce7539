import {
  type LogLine,
  type ProcessExit,
  type SpawnOptions,
  WatchedProcess,
} from "../cli/local/cliProcess.js";

export { type LogLine, type ProcessExit, parseLogLine } from "../cli/local/cliProcess.js";

export interface TestProcessOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with every complete line of its stderr (JSON lines are parsed). */
  onLine?: SpawnOptions["onLine"];
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

/**
 * A process a test started: `kill -9`, pause (SIGSTOP) and resume (SIGCONT), each sent to its own
 * pid only; SIGKILLed when this process exits if the test did not stop it.
 */
export class TestProcess extends WatchedProcess {
  readonly lines: LogLine[];
  private paused = false;

  constructor(command: string, args: readonly string[], options: TestProcessOptions = {}) {
    const lines: LogLine[] = [];
    super(command, args, {
      ...options,
      onLine: (line, raw) => {
        lines.push(line);
        options.onLine?.(line, raw);
      },
    });
    this.lines = lines;
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  get isPaused(): boolean {
    return this.paused && this.running;
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
}
