import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type Logger, silentLogger } from "../logging.js";
import type { ClusterNode } from "../runtime/index.js";
import { ClusterView } from "./clusterView.js";
import { HttpError, readText, sendError, sendJson } from "./httpIo.js";
import type { GetOutcome, KvStore, PutOutcome } from "./kvStore.js";
import type { ServerMetrics } from "./metrics.js";
import { readinessOf } from "./readiness.js";

export interface ServerOptions {
  node: ClusterNode;
  store: KvStore;
  metrics: ServerMetrics;
  /** 0 picks a free port; read the one chosen from `RunningServer.port`. Unused with `listener`. */
  port?: number;
  host?: string;
  /** A socket already listening (see `listenHttp`), e.g. so that the node can advertise its port. */
  listener?: HttpListener;
  maxBodyBytes?: number;
  log?: Logger;
}

export interface RunningServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** Stops accepting connections and resolves once open ones have ended (cut after a grace period). */
  close(): Promise<void>;
}

/** An HTTP socket that listens before the server has its routes; until then it answers 503. */
export interface HttpListener extends RunningServer {
  /** Hands every request from now on to `handler`. */
  attach(handler: (req: IncomingMessage, res: ServerResponse) => void): void;
}

/** The server could not listen; `portInUse` when another process holds the port. */
export class ListenError extends Error {
  override readonly name = "ListenError";
  readonly code: string | undefined;
  constructor(
    readonly host: string,
    readonly port: number,
    cause: NodeJS.ErrnoException,
  ) {
    const where = `${host}:${port}`;
    super(
      cause.code === "EADDRINUSE"
        ? `cannot listen on ${where}: port ${port} is already in use`
        : cause.code === "EACCES"
          ? `cannot listen on ${where}: no permission to use port ${port}`
          : `cannot listen on ${where}: ${cause.message}`,
      { cause },
    );
    this.code = cause.code;
  }

  get portInUse(): boolean {
    return this.code === "EADDRINUSE";
  }
}

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
const MAX_KEY_BYTES = 1024;
const CLOSE_GRACE_MS = 2_000;

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;
type Routes = Record<string, Handler>;

function kvKey(encoded: string): string {
  let key: string;
  try {
    key = decodeURIComponent(encoded);
  } catch {
    throw new HttpError(400, "bad_key", `key "${encoded}" is not valid percent-encoding`);
  }
  if (Buffer.byteLength(key) > MAX_KEY_BYTES)
    throw new HttpError(400, "bad_key", `key is longer than ${MAX_KEY_BYTES} bytes`);
  return key;
}

interface WriteFailure {
  status: number;
  code: string;
}

/**
 * How a write that did not succeed is answered. 409 only when it certainly did not commit because
 * this node does not hold the primary's fence; a write etcd may have committed is never answered
 * 409. Any other reason, such as a write whose outcome is unknown (`outcome-unknown`), is a 5xx.
 */
const WRITE_FAILURES: Record<string, WriteFailure> = {
  "not-primary": { status: 409, code: "write_refused" },
  "fence-lost": { status: 409, code: "write_refused" },
  "lease-invalid": { status: 409, code: "write_refused" },
  "etcd-error": { status: 503, code: "etcd_unavailable" },
  "outcome-unknown": { status: 504, code: "write_outcome_unknown" },
} satisfies Record<string, WriteFailure> & Record<Exclude<PutOutcome, { ok: true }>["reason"], WriteFailure>;
const UNLISTED_WRITE_FAILURE: WriteFailure = { status: 503, code: "etcd_unavailable" };

const READ_FAILURES: Record<Exclude<GetOutcome, { ok: true }>["reason"], WriteFailure> = {
  absent: { status: 404, code: "not_found" },
  "not-member": { status: 503, code: "not_ready" },
  "bad-record": { status: 502, code: "bad_record" },
  "etcd-error": { status: 503, code: "etcd_unavailable" },
};

const formatUrl = (host: string, port: number) => `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

/**
 * Listens on `host:port` (0 picks a free port) and answers every request 503 until a handler is
 * attached; rejects with a ListenError when the port cannot be used.
 */
export async function listenHttp(
  port: number,
  host: string = DEFAULT_HOST,
  log: Logger = silentLogger(),
): Promise<HttpListener> {
  let handler = (_: IncomingMessage, res: ServerResponse) =>
    sendError(res, new HttpError(503, "starting", "the server is starting"));
  const server = createHttpServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(new ListenError(host, port, err));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => log.error("http server error", { error: String(err) }));
  const bound = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    host,
    port: bound,
    url: formatUrl(host, bound),
    attach: (next) => {
      handler = next;
    },
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        server.close((err) => {
          clearTimeout(cut);
          if (err) reject(err);
          else resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

/**
 * The example server beside a cluster node: liveness, readiness, the node's view of the cluster,
 * Prometheus metrics, and a key-value store in etcd that only the grouping's primary writes and
 * every member reads.
 */
export async function createServer(options: ServerOptions): Promise<RunningServer> {
  const { node, store, metrics } = options;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const log = options.log ?? silentLogger();
  const listener =
    options.listener ?? (await listenHttp(options.port ?? 0, options.host ?? DEFAULT_HOST, log));
  const view = new ClusterView(node);
  const servedBy = () => ({ node: node.settings.nodeName, id: node.id ?? null, role: node.role });

  const fixedRoutes: Record<string, Routes> = {
    "/healthz": {
      GET: (_, res) =>
        node.role === "stopped"
          ? sendJson(res, 503, { error: "stopped", message: "the cluster node has stopped", ...servedBy() })
          : sendJson(res, 200, { status: "ok", ...servedBy() }),
    },
    "/readyz": {
      GET: (_, res) => {
        const readiness = readinessOf(node);
        sendJson(res, readiness.ready ? 200 : 503, readiness);
      },
    },
    "/cluster": { GET: (_, res) => sendJson(res, 200, view.toJSON()) },
    "/metrics": {
      GET: async (_, res) => {
        const text = await metrics.text();
        res.writeHead(200, {
          "content-type": metrics.contentType,
          "content-length": Buffer.byteLength(text),
        });
        res.end(text);
      },
    },
  };

  const kvRoutes = (key: string): Routes => ({
    GET: async (_, res) => {
      const outcome = await store.get(key);
      if (outcome.ok) {
        const { ok: _ok, ...entry } = outcome;
        sendJson(res, 200, { ...entry, servedBy: servedBy() });
        return;
      }
      const { status, code } = READ_FAILURES[outcome.reason];
      throw new HttpError(status, code, outcome.message, {
        reason: outcome.reason,
        key,
        servedBy: servedBy(),
      });
    },
    PUT: async (req, res) => {
      const outcome = await store.put(key, await readText(req, maxBodyBytes));
      if (outcome.ok) {
        const { ok: _, ...written } = outcome;
        sendJson(res, 200, { ...written, servedBy: servedBy() });
        return;
      }
      const { status, code } = WRITE_FAILURES[outcome.reason] ?? UNLISTED_WRITE_FAILURE;
      throw new HttpError(status, code, outcome.message, {
        reason: outcome.reason,
        key,
        servedBy: servedBy(),
        primary: view.primary(),
      });
    },
  });

  const routesFor = (path: string): Routes | undefined => {
    const fixed = fixedRoutes[path];
    if (fixed) return fixed;
    const kv = /^\/kv\/([^/]+)$/.exec(path);
    return kv?.[1] ? kvRoutes(kvKey(kv[1])) : undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://server").pathname;
    const routes = routesFor(path);
    if (!routes) throw new HttpError(404, "not_found", `no route for ${path}`, { path });
    const handler = Object.hasOwn(routes, req.method ?? "") ? routes[req.method ?? ""] : undefined;
    if (!handler) {
      const allow = Object.keys(routes).join(", ");
      throw new HttpError(
        405,
        "method_not_allowed",
        `${req.method} is not allowed on ${path}; use ${allow}`,
        {
          path,
          allow: Object.keys(routes),
        },
        { allow },
      );
    }
    await handler(req, res);
  };

  listener.attach((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
      } else if (err instanceof HttpError) {
        sendError(res, err);
      } else {
        log.error("request failed", { method: req.method, url: req.url, error: String(err) });
        sendError(res, new HttpError(500, "internal_error", "the server failed to answer this request"));
      }
    });
  });

  let closing: Promise<void> | undefined;
  return {
    host: listener.host,
    port: listener.port,
    url: listener.url,
    close: () => {
      closing ??= listener.close().finally(() => view.close());
      return closing;
    },
  };
}
