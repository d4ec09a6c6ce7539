import { createWebSocketInspector } from "@statelyai/inspect";
import type { InspectionEvent } from "xstate";
import { InspectionFileWriter } from "../runtime/inspection.js";

export interface InspectionFlags {
  inspectFile?: string;
  inspectWs?: string;
}

/** Builds the `inspect` callback for the flags given, and a function that closes what it opened. */
export function inspectionSinks(flags: InspectionFlags, nodeName: string) {
  const sinks: ((event: InspectionEvent) => void)[] = [];
  const closers: (() => void)[] = [];
  if (flags.inspectFile) {
    const writer = new InspectionFileWriter(flags.inspectFile, nodeName);
    sinks.push(writer.inspect);
    closers.push(() => writer.close());
  }
  if (flags.inspectWs) {
    const inspector = createWebSocketInspector({ url: flags.inspectWs });
    inspector.start();
    sinks.push((event) => inspector.inspect.next?.(event));
    closers.push(() => inspector.stop());
  }
  return {
    inspect:
      sinks.length === 0
        ? undefined
        : (event: InspectionEvent) => {
            for (const sink of sinks) sink(event);
          },
    close: () => {
      for (const close of closers) close();
    },
  };
}
