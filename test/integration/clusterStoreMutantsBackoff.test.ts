import { afterEach, describe, expect, test, vi } from "vitest";
import { ClusterLayout } from "../../src/config/index.js";
import { ClusterStore } from "../../src/etcd/index.js";
import { silentLogger } from "../../src/logging.js";
import { ONE_GROUPING } from "../support/clusterNodes.js";
import { proxiedEtcdPerTest } from "../support/proxiedEtcd.js";

/** Every wait of `node:timers/promises`' `setTimeout` (the store's sleep), recorded and then taken. */
const sleeps = vi.hoisted(() => ({ delays: [] as number[] }));
vi.mock("node:timers/promises", async (importOriginal) => {
  const original = await importOriginal<typeof import("node:timers/promises")>();
  return {
    ...original,
    setTimeout: (delay?: number, ...rest: unknown[]) => {
      sleeps.delays.push(delay ?? 0);
      return (original.setTimeout as (...args: unknown[]) => Promise<unknown>)(delay, ...rest);
    },
  };
});

const LAYOUT = new ClusterLayout(ONE_GROUPING);
const KEYS = LAYOUT.keys;
const RECORD = { name: "backoff", address: "127.0.0.1:1" };

/**
 * A ticket whose slot is found taken costs a new one, after a jittered backoff (0 to 5 ms, doubling
 * up to 20 ms): a retry loop without one would hammer etcd while an `id_key` reset walks the tickets
 * up past live members. Math.random is fixed at one half, so each wait is half its bound.
 */
describe("fresh-ID allocation: tickets that meet taken slots", () => {
  const env = proxiedEtcdPerTest();
  afterEach(() => {
    vi.restoreAllMocks();
  });

  test("back off before each further ticket, with a bound that doubles from 5 ms up to 20 ms", async () => {
    const others = String(await env.direct.lease(60, { autoKeepAlive: false }).grant());
    for (const id of [0, 1, 2, 3])
      await env.direct
        .put(KEYS.memberKey(LAYOUT.nodeGroup(id), id))
        .value(JSON.stringify({ ...RECORD, id }))
        .lease(others)
        .exec();
    const lease = String(await env.direct.lease(60, { autoKeepAlive: false }).grant());
    const store = new ClusterStore(env.direct, LAYOUT, silentLogger(), { callTimeoutMs: 5_000 });
    vi.spyOn(Math, "random").mockReturnValue(0.5);
    sleeps.delays.length = 0;
    const result = await store.allocateFreshId(RECORD, lease);
    const delays = [...sleeps.delays];
    vi.restoreAllMocks();
    expect(result).toEqual({ kind: "allocated", id: 4 });
    expect(Number((await env.direct.get(KEYS.idKey).exec()).kvs[0]?.version)).toBe(5);
    expect(delays).toEqual([2.5, 5, 10, 10]);
  });
});
