import type { AnyStateMachine } from "xstate";
import { MACHINES } from "./machines.js";
import { partGraph, toDot } from "./toDot.js";
import { toMachineJson } from "./toMachineJson.js";
import { toMermaid } from "./toMermaid.js";
import { walkMachine } from "./walk.js";

/**
 * Compound states whose inside gets a diagram of its own, by machine: the node machine's diagram is
 * shown in the README at 880 px, where drawing `member` inside it leaves the text too small.
 */
export const DIAGRAM_PARTS: Readonly<Record<string, readonly string[]>> = { node: ["member"] };

/**
 * The text files kept in `visualizations/` for one machine, by file name: `<name>.dot`, and
 * `<name>.<state>.dot` for each state of DIAGRAM_PARTS.
 */
export function machineOutputs(name: string, machine: AnyStateMachine): Map<string, string> {
  const graph = walkMachine(machine);
  const parts = (DIAGRAM_PARTS[name] ?? []).map((key) => `${machine.id}.${key}`);
  return new Map([
    [`${name}.json`, toMachineJson(machine)],
    [`${name}.mmd`, toMermaid(graph)],
    [`${name}.dot`, toDot(graph, { collapse: parts })],
    ...parts.map((id): [string, string] => [
      `${name}.${id.slice(machine.id.length + 1)}.dot`,
      toDot(partGraph(graph, id)),
    ]),
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
