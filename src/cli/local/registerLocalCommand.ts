import type { Command } from "commander";
import { DEFAULT_CONFIG } from "../nodeOptions.js";

export interface LocalCommandOptions {
  nodes: string;
  config: string;
  etcd?: string;
  leaseTtl: string;
  inspectDir?: string;
}

export const DEFAULT_LOCAL_NODES = 6;
const DEFAULT_LOCAL_LEASE_TTL = 2;
export const KEYS_HELP = "↑/↓ or j/k select · c crash · p pause · r resume · s stop · a add · q/Ctrl-C quit";

/** `local`'s flags; its module (and cli-table3) is loaded only when it runs. */
export function registerLocalCommand(program: Command, setExit: (code: number) => void): void {
  program
    .command("local")
    .description("run a whole cluster on this machine in a live table: a throwaway etcd and N node processes")
    .option(
      "-n, --nodes <count>",
      "node processes to start; the default 6 fills groups 0 and 1 of grouping 0 of the seed config, " +
        "so you see a primary, a backup and four followers, and room is left for `a` (add)",
      String(DEFAULT_LOCAL_NODES),
    )
    .option("-c, --config <file>", "cluster config file", DEFAULT_CONFIG)
    .option("--etcd <endpoints>", "use this etcd (comma-separated) instead of starting a throwaway one")
    .option(
      "--lease-ttl <seconds>",
      "lease TTL of every node, whole seconds >= 2; short, so that a crash shows within seconds",
      String(DEFAULT_LOCAL_LEASE_TTL),
    )
    .option(
      "--inspect-dir <dir>",
      "record every node's inspection events in DIR/<node>.jsonl (created if missing; kept on quit), " +
        "for `rdeebee-cluster timeline DIR/*.jsonl`",
    )
    .addHelpText(
      "after",
      `\nKeys: ${KEYS_HELP}.\n` +
        "Without --etcd, etcd runs from the `etcd` binary (Debian: etcd-server) on free loopback ports with a\n" +
        "temporary data dir; quitting stops every node (SIGTERM, SIGKILL after 2 s) and the etcd, and removes\n" +
        "the dir. If `local` itself is killed (even kill -9), a reaper process stops its nodes and etcd and\n" +
        "removes the dir. When stdin is not a terminal the table is printed on every change and SIGINT/SIGTERM quits.",
    )
    .action(async (opts: LocalCommandOptions) =>
      setExit(await (await import("./localCommand.js")).localCommand(opts)),
    );
}
