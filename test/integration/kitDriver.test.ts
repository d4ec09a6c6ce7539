import {
  clusterModelPaths,
  type EtcdCluster,
  FailoverDriver,
  type FailoverStep,
  type ServerHandle,
} from "rdeebee-cluster/testing";
import { describe, expect, test } from "vitest";

/** The failover driver of the testing kit against servers that report scripted roles (no etcd needed). */

class FakeServer implements ServerHandle {
  killed = false;
  constructor(
    readonly name: string,
    public current: string,
  ) {}
  role = async () => (this.killed ? undefined : this.current);
  kill9 = async () => {
    this.killed = true;
  };
  pause = () => {};
  resume = () => {};
  stop = async () => {
    this.killed = true;
  };
}

const step = (name: string): FailoverStep => {
  const found = clusterModelPaths().find((p) => p.name === name)?.steps[0];
  if (!found) throw new Error(`no path ${name}`);
  return found;
};

function driverOf(servers: FakeServer[]) {
  return new FailoverDriver({
    etcd: {} as EtcdCluster,
    servers,
    startServer: async () => new FakeServer("late", "follower"),
    leaseTtlMs: 100,
    settleTimeoutMs: 500,
    pollMs: 10,
  });
}

describe("FailoverDriver", () => {
  test("a crashed primary's step passes once the former backup is the one primary", async () => {
    const [a, b, c] = [
      new FakeServer("a", "primary"),
      new FakeServer("b", "backup"),
      new FakeServer("c", "follower"),
    ];
    const driver = driverOf([a, b, c]);
    setTimeout(() => {
      b.current = "primary";
      c.current = "backup";
    }, 50);
    const outcome = await driver.apply(step("PRIMARY_CRASHES"));
    expect(a.killed).toBe(true);
    expect(outcome.before).toEqual({ primary: "a", backup: "b" });
    expect(outcome.after).toEqual({ primary: "b", backup: "c" });
  });

  test("two servers reporting primary never settle", async () => {
    const driver = driverOf([
      new FakeServer("a", "primary"),
      new FakeServer("b", "primary"),
      new FakeServer("c", "backup"),
    ]);
    await expect(driver.settle({ primary: 1, backup: 1, follower: 0 })).rejects.toThrow(/did not settle/);
  });

  test("a primary other than the one the model names fails the step", async () => {
    const [a, b, c] = [
      new FakeServer("a", "primary"),
      new FakeServer("b", "backup"),
      new FakeServer("c", "follower"),
    ];
    const driver = driverOf([a, b, c]);
    setTimeout(() => {
      c.current = "primary";
    }, 50);
    await expect(driver.apply(step("PRIMARY_CRASHES"))).rejects.toThrow(/did not settle/);
  });

  test("roles that do not match the model's counts do not settle", async () => {
    const driver = driverOf([
      new FakeServer("a", "primary"),
      new FakeServer("b", "follower"),
      new FakeServer("c", "follower"),
    ]);
    await expect(driver.settle({ primary: 1, backup: 1, follower: 1 })).rejects.toThrow(/did not settle/);
  });
});
