export * from "../../src/testing/nodeProcess.js";

import type { Exit, NodeProcess } from "../../src/testing/nodeProcess.js";

/** `kill -9` of every one of `nodes` in the same tick (a power cut), then waits until all are gone. */
export function kill9All(nodes: readonly NodeProcess[]): Promise<Exit[]> {
  return Promise.all(nodes.map((node) => node.kill9()));
}
