import { Command, CommanderError } from "commander";
import { ConfigError } from "../config/index.js";
import { layoutCommand } from "./layoutCommand.js";

const DEFAULT_CONFIG = "config.yaml";

function buildProgram(out: (text: string) => void): Command {
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

  return program;
}

/** Runs the CLI; returns the process exit code. */
export async function main(
  argv: string[],
  out: (text: string) => void = (t) => console.log(t),
): Promise<number> {
  try {
    await buildProgram(out).parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof ConfigError) {
      process.stderr.write(`rdeebee-cluster: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(
      `rdeebee-cluster: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    return 1;
  }
}
