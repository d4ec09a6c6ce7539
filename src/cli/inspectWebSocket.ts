import type { AnyActorRef, InspectionEvent } from "xstate";
import type { Logger } from "../logging.js";
import { importOptional } from "../optionalDependency.js";
import {
  DEFAULT_MAX_QUEUED,
  InspectSocket,
  type InspectSocketCounts,
  type WireSocket,
} from "./inspectSocket.js";
import { wireJson } from "./inspectWireJson.js";

/** One message of the @statelyai/inspect wire format, as its `createInspector` hands it to an adapter. */
interface StatelyMessage {
  type: string;
  sessionId: string;
}

interface StatelyInspectModule {
  createInspector(adapter: { send(message: StatelyMessage): void }): {
    inspect: { next?: (event: InspectionEvent) => void };
  };
}

interface WsModule {
  WebSocket: new (url: string) => WireSocket;
}

const FEATURE = "--inspect-ws (live inspection)";

export interface WebSocketInspection {
  inspect(event: InspectionEvent): void;
  close(): void;
  /** Resolves once the inspector is loaded and connecting; rejects when a package is missing. */
  readonly ready: Promise<void>;
  stats(): InspectSocketCounts;
}

type ActorWithParent = AnyActorRef & { _parent?: ActorWithParent };

/** A root actor is live while active; a child while its parent is live and still lists it. */
function isLive(actor: ActorWithParent): boolean {
  const parent = actor._parent;
  if (!parent) return actor.getSnapshot().status === "active";
  const children = (parent.getSnapshot() as { children?: Record<string, unknown> }).children ?? {};
  return Object.values(children).includes(actor) && isLive(parent);
}

/**
 * Streams a node's inspection events to a @statelyai/inspect WebSocket receiver (the Stately
 * inspector, or anything speaking its wire format). The messages are made by the library's own
 * `createInspector`; the socket is ours (see `InspectSocket`), because the library's WebSocket
 * adapter crashes the process or goes silent when the receiver is late, slow or goes away
 * (docs/machines.md, "Why not createWebSocketInspector").
 *
 * Events that arrive while the packages load wait in a queue of the same bound as the socket's.
 */
export function openWebSocketInspection(url: string, logger: Logger): WebSocketInspection {
  const early: InspectionEvent[] = [];
  let earlyDropped = 0;
  let forward: ((event: InspectionEvent) => void) | undefined;
  let socket: InspectSocket | undefined;
  let closed = false;
  const actors = new Map<string, ActorWithParent>();
  const registrations = new Map<string, string>();

  const liveRegistrations = (): string[] => {
    for (const [sessionId, actor] of actors) {
      if (!isLive(actor)) {
        actors.delete(sessionId);
        registrations.delete(sessionId);
      }
    }
    return [...registrations.values()];
  };

  const ready = Promise.all([
    importOptional<StatelyInspectModule>("@statelyai/inspect", FEATURE),
    importOptional<WsModule>("ws", FEATURE),
  ]).then(([stately, ws]) => {
    if (closed) return;
    const wire = new InspectSocket({ url, logger, open: (target) => new ws.WebSocket(target) }, () =>
      liveRegistrations(),
    );
    socket = wire;
    const inspector = stately.createInspector({
      send: (message) => {
        let text: string;
        try {
          text = wireJson(message);
        } catch (err) {
          logger.debug("inspection event not serializable, skipped", {
            type: message.type,
            error: String(err),
          });
          return;
        }
        if (message.type === "@xstate.actor") {
          registrations.set(message.sessionId, text);
          liveRegistrations();
        }
        wire.send(text);
      },
    });
    forward = (event) => {
      if (event.type === "@xstate.actor")
        actors.set(event.actorRef.sessionId, event.actorRef as ActorWithParent);
      inspector.inspect.next?.(event);
    };
    wire.connect();
    for (const event of early.splice(0)) forward(event);
  });
  ready.catch((err: unknown) => {
    logger.error("live inspection is off", { url, error: err instanceof Error ? err.message : String(err) });
  });

  return {
    ready,
    inspect(event) {
      if (closed) return;
      if (forward) {
        forward(event);
        return;
      }
      early.push(event);
      if (early.length > DEFAULT_MAX_QUEUED) {
        early.shift();
        earlyDropped++;
      }
    },
    close() {
      closed = true;
      early.length = 0;
      socket?.close();
    },
    stats() {
      const counts = socket?.stats ?? { sent: 0, dropped: 0, queued: early.length, connections: 0 };
      return { ...counts, dropped: counts.dropped + earlyDropped };
    },
  };
}
