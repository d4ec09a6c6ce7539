import { setTimeout as sleep } from "node:timers/promises";
import { ClientClosedError, EtcdLeaseInvalidError } from "etcd3";
import type { FencingToken } from "./fencing.js";

/**
 * An etcd call failed in a way that says nothing about whether etcd applied it (a lost reply, a
 * passed deadline, a dropped connection), and reading back did not settle it either.
 */
export class OutcomeUnknownError extends Error {
  override readonly name: string = "OutcomeUnknownError";
  constructor(
    readonly operation: string,
    /** How the call itself failed. */
    readonly attemptError: unknown,
    /** How settling its outcome failed. */
    readonly settleError: unknown,
    message = `${operation}: etcd did not confirm whether it was applied (${errorText(attemptError)}), and reading back failed: ${errorText(settleError)}`,
  ) {
    super(message, { cause: attemptError });
  }
}

/**
 * A fenced write whose outcome is unknown: it may have committed or not, and etcd could not be
 * asked which before the call's deadline (or the lease that decides it is gone). Only reading the
 * data written can tell; it is never safe to assume either way.
 */
export class WriteOutcomeUnknownError extends OutcomeUnknownError {
  override readonly name = "WriteOutcomeUnknownError";
  constructor(
    readonly fence: FencingToken,
    readonly markerKey: string,
    attemptError: unknown,
    settleError: unknown,
  ) {
    super(
      "fenced write",
      attemptError,
      settleError,
      `outcome of the fenced write of grouping ${fence.grouping} seat ${fence.seat} token ${fence.token} is unknown: it may or may not have committed (${errorText(attemptError)}; marker ${markerKey}: ${errorText(settleError)})`,
    );
  }
}

/** A fenced write that did not commit and never will (etcd failed, the write was then aborted); safe to retry. */
export class WriteNotCommittedError extends Error {
  override readonly name = "WriteNotCommittedError";
  constructor(
    readonly fence: FencingToken,
    cause: unknown,
  ) {
    super(
      `fenced write of grouping ${fence.grouping} seat ${fence.seat} token ${fence.token} did not commit and will not: ${errorText(cause)}`,
      { cause },
    );
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Errors after which etcd certainly did not apply the request: the client was closed before
 * sending it, or etcd refused it whole because its lease is gone. Anything else (UNAVAILABLE,
 * DEADLINE_EXCEEDED, "request timed out", a reset) may come after etcd applied it.
 */
export function certainlyNotApplied(err: unknown): boolean {
  return err instanceof ClientClosedError || err instanceof EtcdLeaseInvalidError;
}

/** gRPC call options with a deadline `timeoutMs` from now. */
export function deadlineIn(timeoutMs: number): { deadline: Date } {
  return { deadline: new Date(Date.now() + timeoutMs) };
}

export interface Backoff {
  /** No retry comes sooner than this. */
  minMs: number;
  /** The first retry's upper bound; doubled on every further failure. */
  baseMs: number;
  /** The upper bound never exceeds this. */
  maxMs: number;
}

/** Exponential backoff with full jitter: uniform in [min, min(max, base·2^failures)]. */
export function backoffDelay(failures: number, backoff: Backoff): number {
  const cap = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(Math.max(failures, 0), 30));
  const upper = Math.max(backoff.minMs, cap);
  return backoff.minMs + Math.random() * (upper - backoff.minMs);
}

const SETTLE_BACKOFF: Backoff = { minMs: 10, baseMs: 25, maxMs: 500 };

/**
 * Runs `attempt` until it returns, backing off with jitter between failures, for at most
 * `budgetMs`; each attempt gets the time left (at most `callTimeoutMs`) as its deadline.
 * Rejects with the last error once the budget is spent, or at once on a `final` error.
 */
export async function retryWithin<T>(
  budgetMs: number,
  callTimeoutMs: number,
  attempt: (options: { deadline: Date }) => Promise<T>,
  final: (err: unknown) => boolean = () => false,
): Promise<T> {
  const end = Date.now() + budgetMs;
  for (let failures = 0; ; failures++) {
    try {
      return await attempt(deadlineIn(Math.max(1, Math.min(callTimeoutMs, end - Date.now()))));
    } catch (err) {
      const delay = backoffDelay(failures, SETTLE_BACKOFF);
      if (final(err) || Date.now() + delay >= end) throw err;
      await sleep(delay);
    }
  }
}
