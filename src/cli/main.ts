import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { ConfigError } from "../config/index.js";
import { importOptional, MissingOptionalDependencyError } from "../optionalDependency.js";
import { EtcdUnreachableError } from "../runtime/index.js";
import { ListenError } from "../server/httpServer.js";
import type { LayoutOptions } from "./layoutCommand.js";
import { PACKAGE_ROOT } from "./local/cliProcess.js";
import { registerLocalCommand } from "./local/registerLocalCommand.js";
import type { NodeCommandOptions } from "./nodeCommand.js";
import { DEFAULT_CONFIG, withEtcdConnectionFlags, withNodeSettingsFlags } from "./nodeOptions.js";
import type { RepairCommandOptions } from "./repairCommand.js";
import type { ServeCommandOptions } from "./serveCommand.js";
import type { StatusCommandOptions } from "./statusCommand.js";
import type { TimelineOptions } from "./timelineCommand.js";

/** Exit codes: 0 ok, 1 unexpected error, 2 bad config/flags, 3 etcd unreachable, 4 server port in use. */
export const EXIT = { ok: 0, failure: 1, badInput: 2, etcdUnreachable: 3, portInUse: 4 } as const;

type Commander = typeof import("commander");

/** The installed package's version, read from its package.json at run time. */
function packageVersion(): string {
  const { version } = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as {
    version: string;
  };
  return version;
}

/** Where a node's inspection events and history go (`node` and `serve`). */
function withRecordingFlags(command: Command): Command {
  return command
    .option("--inspect-file <file>", "append every XState inspection event to this JSON-lines file")
    .option("--inspect-ws <url>", "stream inspection events to a @statelyai/inspect WebSocket receiver")
    .option(
      "--history-file <file>",
      "append transitions and leader actions (with tokens and deadlines) as JSON lines",
    );
}

/** `--no-watchdog` (commander: `opts.watchdog === false`) on the commands that run a node. */
function withWatchdogFlag(command: Command): Command {
  return command.option(
    "--no-watchdog",
    "no lease watchdog process: a killed node then fails over by its lease TTL",
  );
}

/**
 * The command modules are imported when their command runs, so that a command needing an optional
 * package (prom-client for `serve`, the inspector for `--inspect-ws`) fails alone, saying what to install.
 */
function buildProgram(
  commander: Commander,
  out: (text: string) => void,
  setExit: (code: number) => void,
): Command {
  const program = new commander.Command("rdeebee-cluster")
    .description("Cluster runtime for RDeeBee: node IDs, groups and leaders coordinated through etcd")
    .version(packageVersion(), "-V, --version", "print the version of rdeebee-cluster")
    .exitOverride()
    .showHelpAfterError();

  program
    .command("layout")
    .description("print the cluster layout derived from the config file (touches no etcd)")
    .option("-c, --config <file>", "cluster config file", DEFAULT_CONFIG)
    .option("--json", "print JSON")
    .action(async (opts: LayoutOptions) => (await import("./layoutCommand.js")).layoutCommand(opts, out));

  withWatchdogFlag(withRecordingFlags(withNodeSettingsFlags(program.command("node"))))
    .description("run one cluster node until SIGTERM/SIGINT, then leave the cluster gracefully")
    .option("--log-level <level>", "winston log level (env LOG_LEVEL)")
    .action(async (opts: NodeCommandOptions) =>
      setExit(await (await import("./nodeCommand.js")).nodeCommand(opts)),
    );

  withWatchdogFlag(withRecordingFlags(withNodeSettingsFlags(program.command("serve"))))
    .description("run the example key-value server beside one cluster node until SIGTERM/SIGINT")
    .option("-p, --port <port>", "HTTP port (0 picks a free one)", "8080")
    .option("--host <host>", "HTTP listen address", "127.0.0.1")
    .option("--log-level <level>", "winston log level (env LOG_LEVEL)")
    .action(async (opts: ServeCommandOptions) =>
      setExit(await (await import("./serveCommand.js")).serveCommand(opts)),
    );

  withEtcdConnectionFlags(program.command("status"))
    .description(
      "print every grouping's leaders, every group's members and missing slots, and advertised slots",
    )
    .option("-c, --config <file>", "cluster config file", DEFAULT_CONFIG)
    .option("--json", "print JSON")
    .action(async (opts: StatusCommandOptions) =>
      (await import("./statusCommand.js")).statusCommand(opts, out),
    );

  withEtcdConnectionFlags(program.command("repair"))
    .description(
      "list poisoned leader keys and other bad values; with --yes delete each poisoned leader key unchanged since read",
    )
    .option("-c, --config <file>", "cluster config file", DEFAULT_CONFIG)
    .option("--yes", "delete the poisoned leader keys (without it, only print what would be done)")
    .action(async (opts: RepairCommandOptions) =>
      setExit(await (await import("./repairCommand.js")).repairCommand(opts, out)),
    );

  registerLocalCommand(program, setExit);

  program
    .command("timeline")
    .description("print the role transitions recorded by --inspect-file, across nodes, in time order")
    .argument("<files...>", "inspection JSON-lines files")
    .option("--html <file>", "also write a self-contained HTML page")
    .action(async (files: string[], opts: TimelineOptions) =>
      (await import("./timelineCommand.js")).timelineCommand(files, opts, out),
    );

  return program;
}

function fail(message: string, code: number): number {
  process.stderr.write(`rdeebee-cluster: ${message}\n`);
  return code;
}

/** Runs the CLI; returns the process exit code. */
export async function main(
  argv: string[],
  out: (text: string) => void = (t) => console.log(t),
): Promise<number> {
  let exitCode: number = EXIT.ok;
  let commander: Commander | undefined;
  try {
    commander = await importOptional<Commander>("commander", "the rdeebee-cluster command line");
    await buildProgram(commander, out, (code) => {
      exitCode = code;
    }).parseAsync(argv);
    return exitCode;
  } catch (err) {
    if (commander && err instanceof commander.CommanderError)
      return err.exitCode === 0 ? EXIT.ok : EXIT.badInput;
    if (err instanceof MissingOptionalDependencyError) return fail(err.message, EXIT.failure);
    if (err instanceof ConfigError) return fail(err.message, EXIT.badInput);
    if (err instanceof ListenError) return fail(err.message, err.portInUse ? EXIT.portInUse : EXIT.failure);
    if (err instanceof EtcdUnreachableError) return fail(err.message, EXIT.etcdUnreachable);
    return fail(err instanceof Error ? (err.stack ?? err.message) : String(err), EXIT.failure);
  }
}
