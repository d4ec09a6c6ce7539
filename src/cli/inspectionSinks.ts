import type { InspectionEvent } from "xstate";
import { createLogger, type Logger } from "../logging.js";
import { InspectionFileWriter } from "../runtime/inspection.js";
import { openWebSocketInspection, type WebSocketInspection } from "./inspectWebSocket.js";
import { parseInspectWsUrl } from "./inspectWsUrl.js";

export interface InspectionFlags {
  inspectFile?: string;
  inspectWs?: string;
}

export interface InspectionSinks {
  /** The `inspect` callback for the node's actor, or undefined when no flag asks for one. */
  inspect: ((event: InspectionEvent) => void) | undefined;
  /** The WebSocket sink when `--inspect-ws` was given (its `ready` rejects when a package is missing). */
  webSocket: WebSocketInspection | undefined;
  close(): void;
}

/** Refuses bad inspection flags (a ConfigError naming the flag) without opening anything; call it before touching the network. */
export function checkInspectionFlags(flags: InspectionFlags): void {
  if (flags.inspectWs !== undefined) parseInspectWsUrl(flags.inspectWs);
}

/**
 * Builds the `inspect` callback for the flags given, and a function that closes what it opened.
 * A bad `--inspect-ws` URL throws a ConfigError naming the flag before anything is opened; a
 * receiver that is down, slow or goes away never throws into the node (see `InspectSocket`).
 */
export function inspectionSinks(
  flags: InspectionFlags,
  nodeName: string,
  logger: Logger = createLogger(),
): InspectionSinks {
  const url = flags.inspectWs === undefined ? undefined : parseInspectWsUrl(flags.inspectWs);
  const sinks: ((event: InspectionEvent) => void)[] = [];
  const closers: (() => void)[] = [];
  if (flags.inspectFile) {
    const writer = new InspectionFileWriter(flags.inspectFile, nodeName);
    sinks.push(writer.inspect);
    closers.push(() => writer.close());
  }
  const webSocket =
    url === undefined ? undefined : openWebSocketInspection(url, logger.child({ node: nodeName }));
  if (webSocket) {
    sinks.push(webSocket.inspect);
    closers.push(() => webSocket.close());
  }
  return {
    inspect:
      sinks.length === 0
        ? undefined
        : (event: InspectionEvent) => {
            for (const sink of sinks) sink(event);
          },
    webSocket,
    close: () => {
      for (const close of closers) close();
    },
  };
}
