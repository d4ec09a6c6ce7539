import type { Socket } from "node:net";
import { ProxyListener } from "./proxyListener.js";

/**
 * pass: bytes flow both ways. blackhole: open connections stay open but nothing is forwarded,
 * and new connections are accepted and left silent. reset: every connection is destroyed.
 * delay: bytes flow both ways, each chunk `delayMs` after it arrived, in order.
 * stall-upstream: client→upstream bytes are held (not lost) while upstream→client bytes flow;
 * stall-downstream: the reverse. Held bytes are released, in order, once the direction flows again.
 *
 * Two one-shot modes act on one request: bytes flow as in pass until a client sends a request (an
 * HTTP/2 DATA frame; with `match`, one whose payload contains `match`, e.g. a key name). Then the
 * mode becomes `afterwards` (default pass), so a retry on a new connection goes through.
 * drop-reply: a lost reply. The request reaches etcd, but from then on nothing more reaches the
 * client on that connection, and the connection is destroyed as soon as etcd starts answering
 * that request (or after `dropReplyTimeoutMs`): the client sees UNAVAILABLE for a request that etcd
 * received and applied. `repliesDropped` counts them. With `keepConnection`, the connection stays
 * open instead, silent towards the client from then on: the client waits for its deadline.
 * hold-request: a late copy. The request is held back and the client's side of its connection is
 * cut at once, so the client sees UNAVAILABLE before etcd got it; the etcd side stays open.
 * `releaseHeldRequest()` later delivers the request there, after the client has moved on, as a
 * request delayed in the network would arrive, and resolves once etcd has answered it.
 */
export type ProxyMode =
  | "pass"
  | "blackhole"
  | "reset"
  | "delay"
  | "stall-upstream"
  | "stall-downstream"
  | "drop-reply"
  | "hold-request";

export interface ProxyModeOptions {
  /** For `delay`: how long each chunk is held, in milliseconds. */
  delayMs?: number;
  /** For `drop-reply` and `hold-request`: only a request whose bytes contain this is picked. */
  match?: string | Buffer;
  /** For `drop-reply` and `hold-request`: the mode once the request was picked (default pass). */
  afterwards?: Exclude<ProxyMode, "drop-reply" | "hold-request">;
  /** For `drop-reply`: destroy the connection after this long even if etcd has not answered (default 5 s). */
  dropReplyTimeoutMs?: number;
  /** For `drop-reply`: keep the connection open, with nothing more reaching the client on it. */
  keepConnection?: boolean;
}

const HTTP2_CLIENT_PREFACE_BYTES = 24;
const HTTP2_FRAME_HEADER_BYTES = 9;
const HTTP2_DATA = 0;
const HTTP2_HEADERS = 1;
const HTTP2_RST_STREAM = 3;
const DEFAULT_DROP_REPLY_TIMEOUT_MS = 5_000;
const HELD_REQUEST_ANSWER_TIMEOUT_MS = 10_000;

interface Http2Frame {
  type: number;
  streamId: number;
  payload: Buffer;
}

/** Splits one direction of an HTTP/2 connection into whole frames, across chunk boundaries. */
class Http2FrameReader {
  private pending = Buffer.alloc(0);

  constructor(private prefaceLeft: number) {}

  /** The frames that this chunk completes. */
  push(chunk: Buffer): Http2Frame[] {
    let data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    if (this.prefaceLeft > 0) {
      const skipped = Math.min(this.prefaceLeft, data.length);
      data = data.subarray(skipped);
      this.prefaceLeft -= skipped;
    }
    const frames: Http2Frame[] = [];
    while (data.length >= HTTP2_FRAME_HEADER_BYTES) {
      const end = HTTP2_FRAME_HEADER_BYTES + data.readUIntBE(0, 3);
      if (data.length < end) break;
      frames.push({
        type: data[3] ?? -1,
        streamId: data.readUInt32BE(5) & 0x7fffffff,
        payload: data.subarray(HTTP2_FRAME_HEADER_BYTES, end),
      });
      data = data.subarray(end);
    }
    this.pending = Buffer.from(data);
    return frames;
  }
}

type Direction = "upstream" | "downstream";

/** One direction of one proxied connection: a queue of chunks, each with the time it may leave. */
class Pipe {
  private readonly queue: { chunk: Buffer; dueAt: number }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly direction: Direction,
    private readonly to: Socket,
    private readonly proxy: TcpProxy,
  ) {}

  push(chunk: Buffer): void {
    const mode = this.proxy.mode;
    if (mode === "blackhole") return;
    const delay = mode === "delay" ? this.proxy.delayMs : 0;
    this.queue.push({ chunk, dueAt: Date.now() + delay });
    this.drain();
  }

  /** Re-evaluates held chunks after a mode change. */
  onModeChange(): void {
    if (this.proxy.mode === "blackhole") this.queue.length = 0;
    this.drain();
  }

  drain(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.proxy.stalls(this.direction) || this.to.destroyed) return;
    const now = Date.now();
    while (this.queue.length > 0) {
      const head = this.queue[0];
      if (head === undefined || head.dueAt > now) break;
      this.queue.shift();
      this.to.write(head.chunk);
    }
    const next = this.queue[0];
    if (next !== undefined) this.timer = setTimeout(() => this.drain(), next.dueAt - now);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.queue.length = 0;
  }
}

interface Pair {
  client: Socket;
  upstream: Socket;
  pipes: Pipe[];
  requests: Http2FrameReader;
  replies: Http2FrameReader;
  /** The HTTP/2 stream whose reply is being dropped; nothing reaches the client any more. */
  droppingReplyTo?: number;
  dropTimer?: NodeJS.Timeout;
  /** Nothing from etcd reaches the client on this connection any more (`keepConnection`). */
  silenced?: boolean;
  /** The request held back by `hold-request`, and who waits for etcd's answer once it is released. */
  held?: { chunk: Buffer; stream: number; answered?: () => void };
}

/** True when one of `frames` starts etcd's answer on `stream`. */
function answers(frames: Http2Frame[], stream: number): boolean {
  return frames.some(
    (f) =>
      f.streamId === stream &&
      (f.type === HTTP2_DATA || f.type === HTTP2_HEADERS || f.type === HTTP2_RST_STREAM),
  );
}

/** A TCP proxy on a free loopback port in front of one upstream `host:port`. */
export class TcpProxy {
  private listener: ProxyListener | undefined;
  private readonly pairs = new Set<Pair>();
  /** Connections whose client side is gone while a held request waits to reach etcd. */
  private readonly heldPairs = new Set<Pair>();
  private currentMode: ProxyMode = "pass";
  private currentDelayMs = 0;
  private requestMatch: Buffer | undefined;
  private modeAfterRequest: ProxyMode = "pass";
  private dropReplyTimeoutMs = DEFAULT_DROP_REPLY_TIMEOUT_MS;
  private keepConnection = false;
  /** Client connections accepted so far. */
  connectionsAccepted = 0;
  /** Client connections closed so far, by either side or by the proxy. */
  connectionsClosed = 0;
  /** Requests whose reply `drop-reply` dropped (their connection destroyed). */
  repliesDropped = 0;

  static async forEndpoint(endpoint: string): Promise<TcpProxy> {
    const proxy = new TcpProxy();
    proxy.listener = await ProxyListener.start(endpoint, (client, upstream) =>
      proxy.accept(client, upstream),
    );
    return proxy;
  }

  get port(): number {
    return this.listener?.port ?? 0;
  }

  get endpoint(): string {
    return this.listener?.endpoint ?? "";
  }

  get mode(): ProxyMode {
    return this.currentMode;
  }

  get delayMs(): number {
    return this.currentDelayMs;
  }

  /** Open client connections. */
  get connections(): number {
    return this.pairs.size;
  }

  /** True while bytes travelling in `direction` are held. */
  stalls(direction: Direction): boolean {
    return this.currentMode === `stall-${direction}`;
  }

  private accept(client: Socket, connectUpstream: () => Socket): void {
    this.connectionsAccepted += 1;
    if (this.currentMode === "reset") {
      this.connectionsClosed += 1;
      client.destroy();
      return;
    }
    const upstream = connectUpstream();
    const toUpstream = new Pipe("upstream", upstream, this);
    const toClient = new Pipe("downstream", client, this);
    const pair: Pair = {
      client,
      upstream,
      pipes: [toUpstream, toClient],
      requests: new Http2FrameReader(HTTP2_CLIENT_PREFACE_BYTES),
      replies: new Http2FrameReader(0),
    };
    this.pairs.add(pair);
    client.on("data", (chunk: Buffer) => {
      const picked = this.pickRequest(pair, chunk);
      if (picked !== "held") toUpstream.push(chunk);
      if (picked === "silenced") this.setMode(this.modeAfterRequest);
    });
    upstream.on("data", (chunk: Buffer) => {
      const frames = pair.replies.push(chunk);
      if (pair.held) {
        if (answers(frames, pair.held.stream)) this.forgetHeld(pair);
      } else if (pair.droppingReplyTo !== undefined) {
        if (answers(frames, pair.droppingReplyTo)) this.replyDropped(pair);
      } else if (!pair.silenced) toClient.push(chunk);
    });
    const close = () => this.destroy(pair);
    const upstreamGone = () => {
      this.forgetHeld(pair);
      this.destroy(pair);
    };
    client.on("error", close).on("close", close);
    upstream.on("error", upstreamGone).on("close", upstreamGone);
  }

  /**
   * In `drop-reply` and `hold-request`, picks the first request that matches: `held` when the chunk
   * carrying it must not be forwarded (`hold-request`), `silenced` when its connection stays open
   * but silent (`keepConnection`), `dropping` when the connection is cut once etcd answers.
   */
  private pickRequest(pair: Pair, chunk: Buffer): "none" | "dropping" | "silenced" | "held" {
    const frames = pair.requests.push(chunk);
    const mode = this.currentMode;
    if ((mode !== "drop-reply" && mode !== "hold-request") || pair.droppingReplyTo !== undefined)
      return "none";
    const match = this.requestMatch;
    const request = frames.find(
      (f) =>
        f.type === HTTP2_DATA &&
        f.streamId !== 0 &&
        f.payload.length > 0 &&
        (match === undefined || f.payload.includes(match)),
    );
    if (request === undefined) return "none";
    if (mode === "drop-reply") {
      pair.droppingReplyTo = request.streamId;
      // The mode changes once this chunk went through (and, unless kept, the connection is cut).
      this.currentMode = "pass";
      if (this.keepConnection) {
        pair.silenced = true;
        return "silenced";
      }
      pair.dropTimer = setTimeout(() => this.destroyForDroppedReply(pair), this.dropReplyTimeoutMs);
      return "dropping";
    }
    pair.held = { chunk, stream: request.streamId };
    this.pairs.delete(pair);
    this.heldPairs.add(pair);
    this.connectionsClosed += 1;
    pair.pipes[1]?.dispose();
    pair.client.destroy();
    this.setMode(this.modeAfterRequest);
    return "held";
  }

  private replyDropped(pair: Pair): void {
    if (!pair.silenced) {
      this.destroyForDroppedReply(pair);
      return;
    }
    this.repliesDropped += 1;
    pair.droppingReplyTo = undefined;
  }

  private destroyForDroppedReply(pair: Pair): void {
    if (!this.pairs.has(pair)) return;
    this.repliesDropped += 1;
    this.destroy(pair);
    this.setMode(this.modeAfterRequest);
  }

  /**
   * Delivers the request that `hold-request` held back to etcd, on the connection it was meant
   * for; resolves once etcd has answered it (the answer goes nowhere).
   */
  releaseHeldRequest(): Promise<void> {
    const [pair] = this.heldPairs;
    const held = pair?.held;
    if (!pair || !held) return Promise.reject(new Error("no request is held"));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.forgetHeld(pair);
        reject(
          new Error(`etcd did not answer the released request within ${HELD_REQUEST_ANSWER_TIMEOUT_MS} ms`),
        );
      }, HELD_REQUEST_ANSWER_TIMEOUT_MS);
      held.answered = () => {
        clearTimeout(timer);
        resolve();
      };
      pair.upstream.write(held.chunk);
    });
  }

  private forgetHeld(pair: Pair): void {
    if (!this.heldPairs.delete(pair)) return;
    pair.held?.answered?.();
    pair.upstream.destroy();
  }

  private destroy(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    this.connectionsClosed += 1;
    clearTimeout(pair.dropTimer);
    for (const pipe of pair.pipes) pipe.dispose();
    pair.client.destroy();
    pair.upstream.destroy();
  }

  setMode(mode: ProxyMode, options: ProxyModeOptions = {}): void {
    this.currentMode = mode;
    if (options.delayMs !== undefined) this.currentDelayMs = options.delayMs;
    if (mode === "drop-reply" || mode === "hold-request") {
      this.requestMatch = options.match === undefined ? undefined : Buffer.from(options.match);
      this.modeAfterRequest = options.afterwards ?? "pass";
      this.dropReplyTimeoutMs = options.dropReplyTimeoutMs ?? DEFAULT_DROP_REPLY_TIMEOUT_MS;
      this.keepConnection = options.keepConnection ?? false;
    }
    if (mode === "reset") {
      for (const pair of [...this.pairs]) this.destroy(pair);
      return;
    }
    for (const pair of this.pairs) for (const pipe of pair.pipes) pipe.onModeChange();
  }

  async close(): Promise<void> {
    this.setMode("reset");
    for (const pair of [...this.heldPairs]) this.forgetHeld(pair);
    await this.listener?.close();
  }
}
