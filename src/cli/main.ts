import { Command, CommanderError } from "commander";
import { ConfigError } from "../config/index.js";
import { EtcdUnreachableError } from "../runtime/index.js";
import { ListenError } from "../server/httpServer.js";
import { layoutCommand } from "./layoutCommand.js";
import { registerLocalCommand } from "./local/localCommand.js";
import { type NodeCommandOptions, nodeCommand } from "./nodeCommand.js";
import { DEFAULT_CONFIG, withNodeSettingsFlags } from "./nodeOptions.js";
import { type RepairCommandOptions, repairCommand } from "./repairCommand.js";
import { type ServeCommandOptions, serveCommand } from "./serveCommand.js";
import { type StatusCommandOptions, statusCommand } from "./statusCommand.js";
import { type TimelineOptions, timelineCommand } from "./timelineCommand.js";

/** Exit codes: 0 ok, 1 unexpected error, 2 bad config/flags, 3 etcd unreachable, 4 server port in use. */
export const EXIT = { ok: 0, failure: 1, badInput: 2, etcdUnreachable: 3, portInUse: 4 } as const;

function buildProgram(out: (text: string) => void, setExit: (code: number) => void): Command {
  const program = new Command("rdeebee-cluster")
    .description("Cluster runtime for RDeeBee: node IDs, groups and leaders coordinated through etcd")
    .exitOverride()
    .showHelpAfterError();

  program
    .command("layout")
    .description("print the cluster layout derived from the config file (touches no etcd)")
    .option("-c, --config <file>", "cluster config file", DEFAULT_CONFIG)
    .option("--json", "print JSON")
    .action((opts: { config: string; json?: boolean }) => layoutCommand(opts, out));

  withNodeSettingsFlags(program.command("node"))
    .description("run one cluster node until SIGTERM/SIGINT, then leave the cluster gracefully")
    .option("--log-level <level>", "winston log level (env LOG_LEVEL)")
    .option("--inspect-file <file>", "append every XState inspection event to this JSON-lines file")
    .option("--inspect-ws <url>", "stream inspection events to a @statelyai/inspect WebSocket receiver")
    .option(
      "--history-file <file>",
      "append transitions and leader actions (with tokens and deadlines) as JSON lines",
    )
    .action(async (opts: NodeCommandOptions) => setExit(await nodeCommand(opts)));

  withNodeSettingsFlags(program.command("serve"))
    .description("run the example key-value server beside one cluster node until SIGTERM/SIGINT")
    .option("-p, --port <port>", "HTTP port (0 picks a free one)", "8080")
    .option("--host <host>", "HTTP listen address", "127.0.0.1")
    .option("--log-level <level>", "winston log level (env LOG_LEVEL)")
    .action(async (opts: ServeCommandOptions) => setExit(await serveCommand(opts)));

  program
    .command("status")
    .description(
      "print every grouping's leaders, every group's members and missing slots, and advertised slots",
    )
    .option("-c, --config <file>", "cluster config file", DEFAULT_CONFIG)
    .option("--etcd <endpoints>", "etcd endpoints, comma-separated (env ETCD)")
    .option("--json", "print JSON")
    .action((opts: StatusCommandOptions) => statusCommand(opts, out));

  program
    .command("repair")
    .description(
      "list poisoned leader keys and other bad values; with --yes delete each poisoned leader key unchanged since read",
    )
    .option("-c, --config <file>", "cluster config file", DEFAULT_CONFIG)
    .option("--etcd <endpoints>", "etcd endpoints, comma-separated (env ETCD)")
    .option("--yes", "delete the poisoned leader keys (without it, only print what would be done)")
    .action(async (opts: RepairCommandOptions) => setExit(await repairCommand(opts, out)));

  registerLocalCommand(program, setExit);

  program
    .command("timeline")
    .description("print the role transitions recorded by --inspect-file, across nodes, in time order")
    .argument("<files...>", "inspection JSON-lines files")
    .option("--html <file>", "also write a self-contained HTML page")
    .action((files: string[], opts: TimelineOptions) => timelineCommand(files, opts, out));

  return program;
}

/** Runs the CLI; returns the process exit code. */
export async function main(
  argv: string[],
  out: (text: string) => void = (t) => console.log(t),
): Promise<number> {
  let exitCode: number = EXIT.ok;
  try {
    await buildProgram(out, (code) => {
      exitCode = code;
    }).parseAsync(argv);
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.badInput;
    if (err instanceof ConfigError) {
      process.stderr.write(`rdeebee-cluster: ${err.message}\n`);
      return EXIT.badInput;
    }
    if (err instanceof ListenError) {
      process.stderr.write(`rdeebee-cluster: ${err.message}\n`);
      return err.portInUse ? EXIT.portInUse : EXIT.failure;
    }
    if (err instanceof EtcdUnreachableError) {
      process.stderr.write(`rdeebee-cluster: ${err.message}\n`);
      return EXIT.etcdUnreachable;
    }
    process.stderr.write(
      `rdeebee-cluster: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    return EXIT.failure;
  }
}
