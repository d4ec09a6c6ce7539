import { existsSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { isProcessAlive } from "../support/cli.js";
import { type EtcdCluster, type EtcdMember, startEtcd } from "../support/etcdCluster.js";

function pidOf(member: EtcdMember): number {
  const pid = member.pid;
  if (pid === undefined) {
    throw new Error(`${member.name} has no pid`);
  }
  return pid;
}

function memberAt(cluster: EtcdCluster, index: number): EtcdMember {
  const member = cluster.members[index];
  if (member === undefined) {
    throw new Error(`no member at index ${index}`);
  }
  return member;
}

describe("single-member etcd", () => {
  let cluster: EtcdCluster | undefined;

  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it("serves put/get and leaves no process or data behind after stop", async () => {
    cluster = await startEtcd({ name: "single" });
    const member = memberAt(cluster, 0);
    const client = cluster.client();

    await client.put("harness/greeting").value("hello");
    expect(await client.get("harness/greeting").string()).toBe("hello");

    const pid = pidOf(member);
    const rootDir = cluster.rootDir;
    expect(existsSync(member.dataDir)).toBe(true);

    await cluster.stop();

    expect(member.running).toBe(false);
    expect(isProcessAlive(pid)).toBe(false);
    expect(existsSync(rootDir)).toBe(false);
  });
});

describe("three-member etcd", () => {
  let cluster: EtcdCluster;

  beforeAll(async () => {
    cluster = await startEtcd({ members: 3, name: "trio" });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  async function expectSurvivesLosing(victimIndex: number, takeDown: (member: EtcdMember) => Promise<void>) {
    const key = `harness/survivor-${victimIndex}-${Date.now()}`;
    await cluster.client().put(key).value("before");

    const victim = memberAt(cluster, victimIndex);
    const pid = pidOf(victim);
    await takeDown(victim);
    expect(victim.running).toBe(false);
    expect(isProcessAlive(pid)).toBe(false);

    const survivors = cluster.endpoints.filter((endpoint) => endpoint !== victim.endpoint);
    const client = cluster.client({ hosts: survivors });
    expect(await client.get(key).string()).toBe("before");
    await client.put(key).value("during");
    expect(await client.get(key).string()).toBe("during");

    await victim.restart();
    expect(victim.running).toBe(true);

    const victimOnly = cluster.client({ hosts: [victim.endpoint] });
    expect(await victimOnly.get(key).string()).toBe("during");
    await vi.waitFor(async () =>
      expect(await victimOnly.get(key).serializable(true).string()).toBe("during"),
    );
    await victimOnly.put(key).value("after");
    expect(await client.get(key).string()).toBe("after");
  }

  it("keeps serving after the raft leader is SIGKILLed, and the leader rejoins", async () => {
    const leader = await cluster.leaderIndex();
    await expectSurvivesLosing(leader, (member) => member.kill());
    expect(await cluster.leaderIndex()).toBeGreaterThanOrEqual(0);
  });

  it("keeps serving after a follower is stopped, and the follower rejoins", async () => {
    const leader = await cluster.leaderIndex();
    const follower = (leader + 1) % cluster.members.length;
    await expectSurvivesLosing(follower, (member) => member.stop());
    expect(await cluster.leaderIndex()).toBeGreaterThanOrEqual(0);
  });
});

describe("missing etcd binary", () => {
  const original = process.env.ETCD_BIN;

  afterEach(() => {
    if (original === undefined) {
      delete process.env.ETCD_BIN;
    } else {
      process.env.ETCD_BIN = original;
    }
  });

  it("names the Debian package to install", async () => {
    process.env.ETCD_BIN = "/nonexistent/bin/etcd";
    await expect(startEtcd()).rejects.toThrow(/etcd-server/);
  });
});
