/** Exponential backoff: the first retry waits about `initialMs`, each next one twice as long, up to `maxMs`. */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/**
 * How long to wait before retry number `attempt` (0 for the first): uniformly between half and all of
 * the capped exponential step ("equal jitter"), so that clients that failed together spread out,
 * and never zero, so that a retry loop cannot spin.
 */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const step = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return step / 2 + random() * (step / 2);
}

/** A period of at most `intervalMs` and at least half of it, so that periodic work of many views spreads out. */
export function jitteredInterval(intervalMs: number, random: () => number = Math.random): number {
  return intervalMs / 2 + random() * (intervalMs / 2);
}
