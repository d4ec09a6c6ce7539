import { setTimeout as sleep } from "node:timers/promises";
import { expectedRoles, type FailoverStep } from "./clusterPaths.js";
import type { EtcdCluster } from "./etcdCluster.js";

/** One server process of the user's, as the driver acts on it. */
export interface ServerHandle {
  readonly name: string;
  /** The role it reports now (`primary`, `backup`, `follower`, ...); undefined when it does not answer. */
  role(): Promise<string | undefined>;
  /** SIGKILL. */
  kill9(): Promise<unknown>;
  /** SIGSTOP. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Graceful stop (SIGTERM). */
  stop(): Promise<unknown>;
}

export interface FailoverTargetOptions {
  /** A three-member etcd for the etcd steps (`startEtcd({ members: 3 })`). */
  etcd: EtcdCluster;
  /** The servers already started. */
  servers: readonly ServerHandle[];
  /** Starts one more server (for `NEW_NODE_JOINS`). */
  startServer(): Promise<ServerHandle>;
  /** The servers' lease TTL: a pause lasts past it. */
  leaseTtlMs: number;
  /** How long the roles may take to settle after a step. Default 60 s. */
  settleTimeoutMs?: number;
  /** How often the roles are polled while settling. Default 100 ms. */
  pollMs?: number;
}

/** Who held the seats, by server name. */
export interface Seats {
  primary: string;
  backup: string | undefined;
}

export interface StepOutcome {
  step: FailoverStep;
  before: Seats;
  after: Seats;
  /** Every live server's role once settled. */
  roles: Record<string, string>;
}

const DEFAULT_SETTLE_TIMEOUT_MS = 60_000;
const DEFAULT_POLL_MS = 100;
const PAUSE_PAST_TTL = 1.5;

/**
 * Applies the steps of generated failover paths to the user's own server processes, and waits
 * after each until the servers report the roles the model expects: exactly one primary, the
 * expected backup and followers, and the primary the model names (the same, or the former backup).
 */
export class FailoverDriver {
  private readonly live: ServerHandle[];
  private readonly deadMembers: number[] = [];

  constructor(private readonly options: FailoverTargetOptions) {
    this.live = [...options.servers];
  }

  /** The servers that run (not killed or stopped by a step). */
  get servers(): readonly ServerHandle[] {
    return this.live;
  }

  /** Waits until the live servers hold `expected` roles; returns the seats and every role. */
  async settle(
    expected: FailoverStep["roles"],
    accept: (seats: Seats) => boolean = () => true,
  ): Promise<{ seats: Seats; roles: Record<string, string> }> {
    const timeoutMs = this.options.settleTimeoutMs ?? DEFAULT_SETTLE_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    let last: Record<string, string> = {};
    for (;;) {
      last = await this.roles();
      const seats = seatsOf(last);
      if (seats !== undefined && matches(last, expected) && accept(seats)) return { seats, roles: last };
      if (Date.now() > deadline)
        throw new Error(
          `roles did not settle to ${JSON.stringify(expected)} within ${timeoutMs} ms; last seen ${JSON.stringify(last)}`,
        );
      await sleep(this.options.pollMs ?? DEFAULT_POLL_MS);
    }
  }

  /** Applies one step and waits for the roles the model expects after it. */
  async apply(step: FailoverStep): Promise<StepOutcome> {
    const before = (await this.settle(expectedRoles(this.live.length))).seats;
    const primary = this.server(before.primary);
    const ttlMs = this.options.leaseTtlMs;
    switch (step.event) {
      case "PRIMARY_CRASHES":
        await primary.kill9();
        this.forget(primary);
        break;
      case "BACKUP_CRASHES": {
        if (before.backup === undefined) throw new Error("BACKUP_CRASHES: the grouping has no backup");
        const backup = this.server(before.backup);
        await backup.kill9();
        this.forget(backup);
        break;
      }
      case "PRIMARY_STOPS":
        await primary.stop();
        this.forget(primary);
        break;
      case "PRIMARY_PAUSES_PAST_TTL":
        primary.pause();
        await sleep(ttlMs * PAUSE_PAST_TTL);
        primary.resume();
        break;
      case "NEW_NODE_JOINS":
        this.live.push(await this.options.startServer());
        break;
      case "ETCD_MEMBER_DIES":
        await this.killEtcdMember();
        break;
      case "ETCD_MEMBER_RESTARTS":
        await this.restartEtcdMember();
        break;
    }
    const expectedPrimary = step.expected.primaryAfter === "unchanged" ? before.primary : before.backup;
    const { seats, roles } = await this.settle(step.roles, (s) => s.primary === expectedPrimary);
    return { step, before, after: seats, roles };
  }

  /** Every live server's role now (`unreachable` when it does not answer). */
  async roles(): Promise<Record<string, string>> {
    const entries = await Promise.all(
      this.live.map(async (server) => [server.name, (await server.role()) ?? "unreachable"] as const),
    );
    return Object.fromEntries(entries);
  }

  private server(name: string): ServerHandle {
    const server = this.live.find((s) => s.name === name);
    if (server === undefined) throw new Error(`no live server named ${name}`);
    return server;
  }

  private forget(server: ServerHandle): void {
    this.live.splice(this.live.indexOf(server), 1);
  }

  private async killEtcdMember(): Promise<void> {
    const { etcd } = this.options;
    if (etcd.members.length < 3)
      throw new Error("ETCD_MEMBER_DIES needs a three-member etcd (startEtcd({ members: 3 }))");
    const index = etcd.members.map((member) => member.running).lastIndexOf(true);
    await etcd.members[index]?.kill();
    this.deadMembers.push(index);
  }

  private async restartEtcdMember(): Promise<void> {
    const index = this.deadMembers.pop();
    if (index === undefined) throw new Error("ETCD_MEMBER_RESTARTS: no etcd member was killed");
    await this.options.etcd.members[index]?.restart();
  }
}

function seatsOf(roles: Record<string, string>): Seats | undefined {
  const names = Object.entries(roles);
  const primaries = names.filter(([, role]) => role === "primary");
  const backups = names.filter(([, role]) => role === "backup");
  if (primaries.length !== 1 || backups.length > 1) return undefined;
  return { primary: primaries[0]?.[0] as string, backup: backups[0]?.[0] };
}

function matches(roles: Record<string, string>, expected: FailoverStep["roles"]): boolean {
  const count = (role: string) => Object.values(roles).filter((r) => r === role).length;
  return (
    count("primary") === expected.primary &&
    count("backup") === expected.backup &&
    count("follower") === expected.follower
  );
}
