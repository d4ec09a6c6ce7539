import type { AnyStateMachine } from "xstate";
import { MACHINES } from "./machines.js";
import { toDot } from "./toDot.js";
import { toMachineJson } from "./toMachineJson.js";
import { toMermaid } from "./toMermaid.js";
import { walkMachine } from "./walk.js";

/** The text files kept in `visualizations/` for one machine, by file name. */
export function machineOutputs(name: string, machine: AnyStateMachine): Map<string, string> {
  const graph = walkMachine(machine);
  return new Map([
    [`${name}.json`, toMachineJson(machine)],
    [`${name}.mmd`, toMermaid(graph)],
    [`${name}.dot`, toDot(graph)],
  ]);
}

/** The text files of every machine, by file name (the `.svg` files are rendered from the `.dot`). */
export function allOutputs(
  machines: Readonly<Record<string, AnyStateMachine>> = MACHINES,
): Map<string, string> {
  const files = new Map<string, string>();
  for (const [name, machine] of Object.entries(machines)) {
    for (const [file, text] of machineOutputs(name, machine)) files.set(file, text);
  }
  return files;
}

/** The extensions of the files this generator owns in `visualizations/`. */
export const GENERATED_EXTENSIONS = [".json", ".mmd", ".dot", ".svg"] as const;
