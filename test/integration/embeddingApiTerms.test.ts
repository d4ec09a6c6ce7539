import { BehaviorSubject, Subject } from "rxjs";
import { afterEach, describe, expect, test } from "vitest";
import { silentLogger } from "../../src/logging.js";
import { type LeadershipEndReason, LeadershipTerms } from "../../src/runtime/leadership.js";
import type { NodeStatus } from "../../src/runtime/nodeStatus.js";

/**
 * The rules of LeadershipTerms that no etcd timing can pin down: which status changes and
 * deadline moves start and end a term. The sources are driven by hand; the etcd-driven cases
 * (stalled link, deposed, resign, stop) are in embeddingApi.test.ts.
 */
const LEAD_MS = 300;
const fence = { grouping: 0, seat: 1 as const, token: 42 };
const primary: NodeStatus = { name: "n", role: "primary", state: "member.leader", id: 0, fence };
const follower: NodeStatus = { name: "n", role: "follower", state: "member.follower", id: 0 };

function harness(remaining: number | undefined) {
  const status$ = new BehaviorSubject<NodeStatus>(follower);
  const deadlineMoved$ = new Subject<number>();
  const clock = { remaining };
  const terms = new LeadershipTerms({
    status$,
    remainingMs: () => clock.remaining,
    deadlineMoved$,
    leadMs: LEAD_MS,
    log: silentLogger(),
  });
  const ended: LeadershipEndReason[] = [];
  let started = 0;
  terms.observe({
    started: () => {
      started += 1;
    },
    stopped: ({ reason }) => {
      ended.push(reason);
    },
  });
  return { status$, deadlineMoved$, clock, terms, ended, started: () => started };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe("leadership terms", () => {
  let close: (() => void) | undefined;
  afterEach(() => close?.());

  test("a resigned seat starts no new term when a keepalive moves the deadline meanwhile", async () => {
    const h = harness(5_000);
    close = () => h.terms.close();
    h.status$.next(primary);
    await flush();
    expect(h.started()).toBe(1);
    h.terms.end("resigned", true);
    h.deadlineMoved$.next(1);
    h.status$.next({ ...primary, state: "member.leader" });
    await flush();
    expect(h.terms.term).toBeUndefined();
    expect(h.started()).toBe(1);
    expect(h.ended).toEqual(["resigned"]);
  });

  test("a primary too close to its deadline gets no term until a keepalive moves the deadline", async () => {
    const h = harness(LEAD_MS - 1);
    close = () => h.terms.close();
    h.status$.next(primary);
    await flush();
    expect(h.terms.term).toBeUndefined();
    h.clock.remaining = 5_000;
    h.deadlineMoved$.next(1);
    await flush();
    expect(h.terms.term?.fence).toEqual(fence);
    expect(h.started()).toBe(1);
  });

  test("the deadline timer ends the term once less than the lead is left, before the deadline", async () => {
    const h = harness(LEAD_MS + 50);
    close = () => h.terms.close();
    h.status$.next(primary);
    expect(h.terms.term).toBeDefined();
    h.clock.remaining = LEAD_MS - 1;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(h.terms.term).toBeUndefined();
    expect(h.ended).toEqual(["deadline"]);
  });

  test("leaving the primary role ends the term as deposed; a new token starts a new term", async () => {
    const h = harness(5_000);
    close = () => h.terms.close();
    h.status$.next(primary);
    h.status$.next({ ...primary, fence: { ...fence, token: 43 } });
    h.status$.next(follower);
    h.status$.next({ ...follower, role: "suspended", state: "suspended" });
    await flush();
    expect(h.ended).toEqual(["deposed", "deposed"]);
    expect(h.started()).toBe(2);
  });

  test("close ends the running term as stopping and starts none after", async () => {
    const h = harness(5_000);
    h.status$.next(primary);
    h.terms.close();
    h.status$.next({ ...primary, fence: { ...fence, token: 44 } });
    await flush();
    expect(h.ended).toEqual(["stopping"]);
    expect(h.started()).toBe(1);
  });
});
