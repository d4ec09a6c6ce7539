import { setTimeout as sleep } from "node:timers/promises";
import { Subject } from "rxjs";
import { describe, expect, it } from "vitest";
import type { NodeEvent } from "../../machines/node.js";
import { SessionScope, Timers } from "../../src/runtime/sessionScope.js";
import { recordingLogger } from "../support/recordingLogger.js";

function scoped() {
  const delivered: string[] = [];
  const timers = new Timers();
  const { logger, records } = recordingLogger();
  const scope = new SessionScope((event) => delivered.push(event.type), timers, logger);
  return { scope, timers, delivered, records };
}

describe("a session's scope: what one session started, and nothing after it ended", () => {
  it("an effect's result reaches the node while its scope is current, and is dropped after", async () => {
    const { scope, delivered } = scoped();
    const answers: ((event: NodeEvent) => void)[] = [];
    const pending = () => new Promise<NodeEvent>((resolve) => answers.push(resolve));
    scope.run("first", pending, () => ({ type: "RETRY" }));
    scope.run("second", pending, () => ({ type: "RETRY" }));
    answers[0]?.({ type: "CAMPAIGN_LOST" });
    await sleep(0);
    scope.end();
    answers[1]?.({ type: "CAMPAIGN_WON", token: 7 });
    await sleep(0);
    expect(delivered).toEqual(["CAMPAIGN_LOST"]);
  });

  it("a failed effect is logged and answered by its error event", async () => {
    const { scope, delivered, records } = scoped();
    scope.run(
      "claim",
      () => Promise.reject(new Error("etcd down")),
      (error) => ({ type: "ETCD_FAILED", error }),
    );
    await sleep(0);
    expect(delivered).toEqual(["ETCD_FAILED"]);
    expect(records).toContainEqual(
      expect.objectContaining({ message: "etcd operation failed", effect: "claim", error: "etcd down" }),
    );
  });

  it("a delayed event is dropped once the scope ended, and never sent after the timers were cleared", async () => {
    const ended = scoped();
    ended.scope.sendAfter(5, { type: "RETRY" });
    ended.scope.end();
    const cleared = scoped();
    cleared.scope.sendAfter(5, { type: "RETRY" });
    cleared.timers.clear();
    const kept = scoped();
    kept.scope.sendAfter(5, { type: "RETRY" });
    await sleep(50);
    expect([ended.delivered, cleared.delivered, kept.delivered]).toEqual([[], [], ["RETRY"]]);
  });

  it("ending it ends the subscriptions it owns", () => {
    const { scope } = scoped();
    const source = new Subject<number>();
    scope.own(source.subscribe());
    expect(source.observed).toBe(true);
    scope.end();
    expect(source.observed).toBe(false);
  });
});
