/**
 * The example server as processes (`rdeebee-cluster serve` from dist/): an acknowledged write is
 * read on every node, and survives `kill -9` of the primary's process.
 */
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { CliProcess, type LogLine } from "../../src/cli/local/cliProcess.js";
import type { Readiness } from "../../src/server/readiness.js";
import { ensureBuilt, PACKAGE_ROOT } from "../support/cli.js";
import { type EtcdCluster, startEtcd } from "../support/etcdCluster.js";
import { waitUntil } from "../support/waitUntil.js";

const CONFIG = join(PACKAGE_ROOT, "config.yaml");
const TTL_SECONDS = 2;
const WAIT_MS = 60_000;

class ServeProcess {
  readonly lines: LogLine[] = [];
  readonly process: CliProcess;

  constructor(
    readonly name: string,
    endpoint: string,
  ) {
    const args = ["serve", "--port", "0", "--etcd", endpoint, "--node", name];
    this.process = new CliProcess([...args, "--lease-ttl", String(TTL_SECONDS), "--config", CONFIG], {
      onLine: (line) => this.lines.push(line),
    });
  }

  get url(): string | undefined {
    const line = this.lines.find((l) => l.message === "serving" && typeof l.url === "string");
    return line?.url as string | undefined;
  }

  async readiness(): Promise<Readiness | undefined> {
    if (!this.url) return undefined;
    return (await (await fetch(`${this.url}/readyz`)).json()) as Readiness;
  }

  get(key: string): Promise<Response> {
    return fetch(`${this.url}/kv/${encodeURIComponent(key)}`);
  }

  put(key: string, value: string): Promise<Response> {
    return fetch(`${this.url}/kv/${encodeURIComponent(key)}`, { method: "PUT", body: value });
  }
}

let etcd: EtcdCluster | undefined;
const servers: ServeProcess[] = [];

beforeAll(ensureBuilt);

afterEach(async () => {
  for (const s of servers) s.process.signal("SIGKILL");
  await Promise.all(servers.map((s) => s.process.exited));
  servers.length = 0;
  await etcd?.stop();
  etcd = undefined;
});

/** Each server by the seat its node holds, once every one is ready. */
async function seated(running: ServeProcess[]): Promise<Record<"primary" | "backup" | "none", ServeProcess>> {
  return waitUntil(
    "one primary, one backup and the rest followers, all ready",
    async () => {
      const seats = await Promise.all(running.map(async (s) => ({ s, r: await s.readiness() })));
      if (!seats.every(({ r }) => r?.ready)) return undefined;
      const bySeat = (seat: Readiness["seat"]) => seats.filter(({ r }) => r?.seat === seat).map(({ s }) => s);
      const [primary, backup, none] = [bySeat("primary"), bySeat("backup"), bySeat(null)];
      if (primary.length !== 1 || backup.length !== 1 || none.length !== running.length - 2) return undefined;
      return { primary: primary[0], backup: backup[0], none: none[0] } as Record<
        "primary" | "backup" | "none",
        ServeProcess
      >;
    },
    WAIT_MS,
  );
}

describe("rdeebee-cluster serve processes", () => {
  test("a write the primary acknowledged is read on a follower, and on the new primary and a follower after kill -9 of the primary's process", async () => {
    etcd = await startEtcd();
    const endpoint = etcd.endpoints[0] ?? "";
    // Four, so that a follower is left after the kill: the old follower that takes the backup seat is not one.
    for (const name of ["serve-a", "serve-b", "serve-c", "serve-d"])
      servers.push(new ServeProcess(name, endpoint));
    const before = await seated(servers);

    const written = await before.primary.put("greeting", "hello");
    expect(written.status).toBe(200);
    const ack = (await written.json()) as { revision: number; token: number };
    const onFollower = await before.none.get("greeting");
    expect(onFollower.status).toBe(200);
    expect(await onFollower.json()).toMatchObject({
      value: "hello",
      revision: ack.revision,
      token: ack.token,
    });

    // A write to a non-primary names the primary, at the HTTP address its node advertises.
    const refused = await before.none.put("greeting", "not here");
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({
      error: "write_refused",
      reason: "not-primary",
      primary: { name: before.primary.name, address: new URL(before.primary.url ?? "").host },
    });

    before.primary.process.signal("SIGKILL");
    expect((await before.primary.process.exited).signal).toBe("SIGKILL");
    const after = await seated(servers.filter((s) => s !== before.primary));
    expect(after.primary, "the backup was promoted").toBe(before.backup);

    for (const s of [after.primary, after.none]) {
      const read = await s.get("greeting");
      expect(read.status, `read on ${s.name}`).toBe(200);
      expect(await read.json()).toMatchObject({
        key: "greeting",
        value: "hello",
        revision: ack.revision,
        token: ack.token,
        writer: before.primary.name,
        servedBy: { node: s.name },
      });
    }
    const rewritten = await after.primary.put("greeting", "hello again");
    expect(rewritten.status).toBe(200);
    expect(await (await after.none.get("greeting")).json()).toMatchObject({
      value: "hello again",
      writer: after.primary.name,
    });

    const alive = servers.filter((s) => s !== before.primary);
    for (const s of alive) s.process.signal("SIGTERM");
    for (const s of alive)
      expect(await s.process.exited, `${s.name} stops gracefully`).toEqual({ code: 0, signal: null });
  });
});
