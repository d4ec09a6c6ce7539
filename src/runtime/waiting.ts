import { type Observable, Subscription } from "rxjs";
import type { NodeStatus } from "./nodeStatus.js";
import type { NodeRole } from "./roles.js";

/** How long a wait may last: until `signal` aborts, or `timeoutMs` milliseconds at most (default: no limit). */
export interface WaitOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** `start()`'s options: a start that is aborted or times out stops the node and closes its client. */
export type StartOptions = WaitOptions;

/** `start({ timeoutMs })` ran out of time after etcd was reached (e.g. the node was still waiting for an ID). */
export class StartTimeoutError extends Error {
  override readonly name = "StartTimeoutError";
  constructor(
    readonly nodeName: string,
    readonly timeoutMs: number,
    readonly status: NodeStatus,
  ) {
    super(`node ${nodeName} did not join within ${timeoutMs} ms (last state: ${status.state})`);
  }
}

/** `start({ signal })`'s signal aborted before the node joined; `cause` is the signal's reason. */
export class StartAbortedError extends Error {
  override readonly name = "StartAbortedError";
  constructor(
    readonly nodeName: string,
    reason: unknown,
  ) {
    super(`start of node ${nodeName} was aborted`, { cause: reason });
  }
}

/** A `waitFor`/`waitForRole` ran out of time. */
export class WaitTimeoutError extends Error {
  override readonly name = "WaitTimeoutError";
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    readonly status: NodeStatus,
  ) {
    super(`timed out after ${timeoutMs} ms waiting for ${what} (role: ${status.role})`);
  }
}

/** A `waitFor`/`waitForRole`'s signal aborted; `cause` is the signal's reason. */
export class WaitAbortedError extends Error {
  override readonly name = "WaitAbortedError";
  constructor(
    readonly what: string,
    reason: unknown,
  ) {
    super(`wait for ${what} was aborted`, { cause: reason });
  }
}

/** The node stopped while something waited for a status it can no longer reach. */
export class NodeStoppedError extends Error {
  override readonly name = "NodeStoppedError";
  constructor(
    readonly nodeName: string,
    readonly what: string,
  ) {
    super(`node ${nodeName} stopped while waiting for ${what}`);
  }
}

/** Why a wait on the status ended without its status: each becomes the caller's own error. */
export type WaitEnd =
  | { kind: "timeout"; timeoutMs: number; status: NodeStatus }
  | { kind: "aborted"; reason: unknown }
  | { kind: "stopped"; status: NodeStatus };

/** Largest delay Node's timers take; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Checks `timeoutMs` (a clear error naming the option) and returns it, or undefined for no limit. */
export function checkedTimeout(timeoutMs: number | undefined, caller: string): number | undefined {
  if (timeoutMs === undefined || timeoutMs === Number.POSITIVE_INFINITY) return undefined;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_TIMER_MS)
    throw new RangeError(
      `${caller} option timeoutMs must be a number of milliseconds in [0, ${MAX_TIMER_MS}] or Infinity, got ${timeoutMs}`,
    );
  return timeoutMs;
}

/**
 * The first status that satisfies `predicate`. A stopped node that does not satisfy it, a timeout
 * or an aborted signal ends the wait with `fail(end)`'s error; the timer, the signal listener and
 * the subscription are all released whichever way it ends.
 */
export function awaitStatus(
  status$: Observable<NodeStatus>,
  current: () => NodeStatus,
  predicate: (status: NodeStatus) => boolean,
  options: WaitOptions & { caller: string },
  fail: (end: WaitEnd) => Error,
): Promise<NodeStatus> {
  const { signal } = options;
  return new Promise<NodeStatus>((resolve, reject) => {
    const timeoutMs = checkedTimeout(options.timeoutMs, options.caller);
    const subscription = new Subscription();
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const onAbort = () => finish(() => reject(fail({ kind: "aborted", reason: signal?.reason })));
    function finish(settle: () => void): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      subscription.unsubscribe();
      settle();
    }
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs !== undefined)
      timer = setTimeout(
        () => finish(() => reject(fail({ kind: "timeout", timeoutMs, status: current() }))),
        timeoutMs,
      );
    subscription.add(
      status$.subscribe((status) => {
        if (predicate(status)) finish(() => resolve(status));
        else if (status.role === "stopped") finish(() => reject(fail({ kind: "stopped", status })));
      }),
    );
  });
}

/** The errors of `waitFor` and `waitForRole`, naming what was awaited. */
export function waitError(nodeName: string, what: string): (end: WaitEnd) => Error {
  return (end) => {
    if (end.kind === "timeout") return new WaitTimeoutError(what, end.timeoutMs, end.status);
    if (end.kind === "aborted") return new WaitAbortedError(what, end.reason);
    return new NodeStoppedError(nodeName, what);
  };
}

export const roleLabel = (roles: readonly NodeRole[]): string => `role ${roles.join(" or ")}`;
