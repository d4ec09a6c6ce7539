import { ClientClosedError, EtcdLeaseInvalidError } from "etcd3";
import { afterEach, describe, expect, test, vi } from "vitest";
import {
  backoffDelay,
  certainlyNotApplied,
  deadlineIn,
  errorText,
  OutcomeUnknownError,
  retryWithin,
  WriteNotCommittedError,
  WriteOutcomeUnknownError,
} from "../../src/etcd/outcome.js";

const FENCE = { grouping: 2, seat: 1 as const, token: 57 };

describe("outcome errors say what happened and keep what caused it", () => {
  test("OutcomeUnknownError names the operation, both failures, and keeps them", () => {
    const attempt = new Error("reply lost");
    const settle = new Error("read timed out");
    const err = new OutcomeUnknownError("campaign", attempt, settle);
    expect(err.name).toBe("OutcomeUnknownError");
    expect(err.message).toBe(
      "campaign: etcd did not confirm whether it was applied (reply lost), and reading back failed: read timed out",
    );
    expect(err.cause).toBe(attempt);
    expect(err.operation).toBe("campaign");
    expect(err.attemptError).toBe(attempt);
    expect(err.settleError).toBe(settle);
    expect(new OutcomeUnknownError("op", "a", "b", "given message").message).toBe("given message");
  });

  test("WriteOutcomeUnknownError names the fence and the marker, and is an OutcomeUnknownError", () => {
    const attempt = new Error("UNAVAILABLE");
    const err = new WriteOutcomeUnknownError(FENCE, "marker/x", attempt, "lease gone");
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(err.name).toBe("WriteOutcomeUnknownError");
    expect(err.message).toBe(
      "outcome of the fenced write of grouping 2 seat 1 token 57 is unknown: it may or may not have committed (UNAVAILABLE; marker marker/x: lease gone)",
    );
    expect(err.operation).toBe("fenced write");
    expect(err.fence).toBe(FENCE);
    expect(err.markerKey).toBe("marker/x");
    expect(err.cause).toBe(attempt);
  });

  test("WriteNotCommittedError names the fence and keeps its cause", () => {
    const cause = new Error("aborted");
    const err = new WriteNotCommittedError(FENCE, cause);
    expect(err.name).toBe("WriteNotCommittedError");
    expect(err.message).toBe(
      "fenced write of grouping 2 seat 1 token 57 did not commit and will not: aborted",
    );
    expect(err.cause).toBe(cause);
    expect(err.fence).toBe(FENCE);
  });

  test("errorText is an error's message, or anything else as a string", () => {
    expect(errorText(new Error("boom"))).toBe("boom");
    expect(errorText("plain")).toBe("plain");
    expect(errorText(42)).toBe("42");
  });
});

describe("certainlyNotApplied", () => {
  test("only a closed client and an invalid lease say etcd did not apply the request", () => {
    expect(certainlyNotApplied(new ClientClosedError("kv"))).toBe(true);
    expect(certainlyNotApplied(new EtcdLeaseInvalidError("7"))).toBe(true);
    expect(certainlyNotApplied(new Error("14 UNAVAILABLE"))).toBe(false);
    expect(certainlyNotApplied("DEADLINE_EXCEEDED")).toBe(false);
  });
});

describe("deadlineIn", () => {
  test("is a deadline that far from now", () => {
    const before = Date.now();
    const { deadline } = deadlineIn(1_500);
    const after = Date.now();
    expect(deadline.getTime()).toBeGreaterThanOrEqual(before + 1_500);
    expect(deadline.getTime()).toBeLessThanOrEqual(after + 1_500);
  });
});

describe("backoffDelay", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  const backoff = { minMs: 50, baseMs: 100, maxMs: 1_000 };
  const withRandom = (value: number, failures: number, policy = backoff) => {
    vi.spyOn(Math, "random").mockReturnValue(value);
    return backoffDelay(failures, policy);
  };

  test("is uniform between the minimum and base · 2^failures", () => {
    expect(withRandom(0, 0)).toBe(50);
    expect(withRandom(1, 0)).toBe(100);
    expect(withRandom(0.5, 0)).toBe(75);
    expect(withRandom(1, 2)).toBe(400);
  });

  test("the upper bound stops at the maximum, also for huge failure counts, and counts negative failures as none", () => {
    expect(withRandom(1, 4)).toBe(1_000);
    expect(withRandom(1, 1_000)).toBe(1_000);
    expect(withRandom(1, -3)).toBe(100);
  });

  test("never below the minimum, even when the cap is", () => {
    expect(withRandom(1, 0, { minMs: 300, baseMs: 100, maxMs: 200 })).toBe(300);
    expect(withRandom(0, 0, { minMs: 300, baseMs: 100, maxMs: 200 })).toBe(300);
  });
});

describe("retryWithin", () => {
  test("returns the first result without retrying", async () => {
    const attempt = vi.fn(async () => "ok");
    await expect(retryWithin(1_000, 500, attempt)).resolves.toBe("ok");
    expect(attempt).toHaveBeenCalledTimes(1);
  });

  test("retries a failed attempt after a backoff of at least 10 ms, until one returns", async () => {
    const calledAt: number[] = [];
    const attempt = vi.fn(async () => {
      calledAt.push(performance.now());
      if (calledAt.length < 3) throw new Error(`failure ${calledAt.length}`);
      return "third";
    });
    await expect(retryWithin(5_000, 500, attempt)).resolves.toBe("third");
    expect(attempt).toHaveBeenCalledTimes(3);
    for (let i = 1; i < calledAt.length; i++) {
      expect((calledAt[i] ?? 0) - (calledAt[i - 1] ?? 0)).toBeGreaterThanOrEqual(9);
    }
  });

  test("gives each attempt the call timeout as its deadline, or the budget left when that is shorter", async () => {
    const deadlines: number[] = [];
    const start = Date.now();
    await retryWithin(300, 100, async ({ deadline }) => {
      deadlines.push(deadline.getTime() - Date.now());
      if (deadlines.length === 1) throw new Error("first");
      return undefined;
    });
    expect(deadlines[0]).toBeLessThanOrEqual(100);
    expect(deadlines[0]).toBeGreaterThan(50);
    const budgetLeft = start + 300 - Date.now();
    expect(deadlines[1]).toBeLessThanOrEqual(Math.max(100, budgetLeft + 5));

    const late: number[] = [];
    await expect(
      retryWithin(200, 10_000, async ({ deadline }) => {
        late.push(deadline.getTime() - Date.now());
        throw new Error("always");
      }),
    ).rejects.toThrow("always");
    expect(Math.max(...late)).toBeLessThanOrEqual(200);
    expect(Math.min(...late)).toBeGreaterThanOrEqual(1);
  });

  test("rejects with the last error once the budget is spent, having retried meanwhile", {
    timeout: 10_000,
  }, async () => {
    let calls = 0;
    const message = await retryWithin(300, 100, async () => {
      calls += 1;
      throw new Error(`failure ${calls}`);
    }).catch((err: Error) => err.message);
    expect(calls).toBeGreaterThan(1);
    expect(message).toBe(`failure ${calls}`);
  });

  test("rejects at once on a final error", async () => {
    const attempt = vi.fn(async () => {
      throw new EtcdLeaseInvalidError("9");
    });
    await expect(
      retryWithin(5_000, 500, attempt, (err) => err instanceof EtcdLeaseInvalidError),
    ).rejects.toBeInstanceOf(EtcdLeaseInvalidError);
    expect(attempt).toHaveBeenCalledTimes(1);
  });
});
