import { execFileSync, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  EtcdMember as EtcdMemberProcess,
  EtcdStartError,
  findEtcdBinary,
  freePorts,
  killAllEtcdMembers,
  loopbackUrl,
} from "../cli/local/etcdMember.js";
import { type ConnectOptions, connectEtcd, type Etcd3 } from "../etcd/index.js";

/** Options of a harness client: etcd3's own (hosts included), over etcd3's defaults. */
export type EtcdClientOptions = Partial<ConnectOptions> & { hosts?: string | string[] };

export interface StartEtcdOptions {
  /** The etcd binary; default `ETCD_BIN`, else `etcd` on PATH (Debian: `apt-get install etcd-server`). */
  etcdBin?: string;
  members?: 1 | 3;
  /** Prefix for member names and the cluster token. */
  name?: string;
  /** Appended after the harness flags, so they can override them. */
  extraArgs?: string[];
  /**
   * Also serve clients over TLS with client-certificate authentication (one member only), with
   * certificates made by `openssl` for this etcd: see `EtcdCluster.tls`. `endpoints` stay plain
   * http, for the harness's health checks and `client()`.
   */
  tls?: boolean;
  /** Turns authentication on, with a root user of this password; `client()` then authenticates as root. */
  rootPassword?: string;
}

/** PEM files made for one TLS etcd, as contents and as paths (for CLI flags). */
export interface TlsFiles {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  paths: { ca: string; cert: string; key: string };
}

export interface EtcdTlsEndpoints {
  /** The https client URLs, one per member, which require a client certificate signed by `trusted.ca`. */
  readonly endpoints: string[];
  /** The CA of etcd's server certificate, and a client certificate and key it signed. */
  readonly trusted: TlsFiles;
  /** A CA etcd does not trust, and a client certificate and key it signed. */
  readonly untrusted: TlsFiles;
}

export interface EtcdMember {
  readonly name: string;
  readonly endpoint: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** Pid of the most recently spawned process, even after it exited. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** SIGTERM (SIGKILL after 3 s) and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  /** Stop if running, start again on the same data dir, wait for /health. */
  restart(): Promise<void>;
  /** SIGSTOP: the process stays, holds its ports and answers nothing until resume(). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  readonly paused: boolean;
  /** The last ~200 lines of the member's stderr and stdout. */
  logs(): string;
}

export interface EtcdCluster {
  readonly endpoints: string[];
  /** The TLS side when started with `tls: true`. */
  readonly tls: EtcdTlsEndpoints | undefined;
  readonly members: EtcdMember[];
  readonly rootDir: string;
  /** A new client (default hosts: every endpoint), closed by stop(). */
  client(options?: EtcdClientOptions): Etcd3;
  /** Index in `members` of the current raft leader; waits for an election to settle. */
  leaderIndex(timeoutMs?: number): Promise<number>;
  /**
   * Compacts the key-value history to the current revision, or to `atMost` when that is lower (a
   * watcher that must not lose events passes the revision it has seen); returns the revision.
   */
  compact(atMost?: number): Promise<number>;
  /** Stops every running member (leader last); their data dirs stay for startAll(). */
  stopAll(): Promise<void>;
  /** Starts every stopped member again on its data dir together (one alone has no quorum); waits for /health. */
  startAll(): Promise<void>;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 20_000;
const LEADER_TIMEOUT_MS = 10_000;
const POLL_INTERVAL_MS = 50;
const PEER_LOSS_NOTICE_MS = 300;
const HTTP_TIMEOUT_MS = 500;
const CLIENT_DIAL_TIMEOUT_MS = 2_000;
const CALL_DEADLINE_MS = 5_000;

const liveRootDirs = new Set<string>();

function killMembersAndRemoveRootDirs(): void {
  killAllEtcdMembers();
  for (const rootDir of liveRootDirs) {
    rmSync(rootDir, { recursive: true, force: true, maxRetries: 3 });
  }
}

process.on("exit", killMembersAndRemoveRootDirs);
// Vitest ends its fork workers with SIGTERM, which skips "exit"; re-raise so the default action still applies.
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
  process.once(signal, () => {
    killMembersAndRemoveRootDirs();
    if (process.listenerCount(signal) === 0) {
      process.kill(process.pid, signal);
    }
  });
}

interface MemberStatus {
  header?: { member_id?: string };
  leader?: string;
}

async function memberStatus(endpoint: string): Promise<MemberStatus | undefined> {
  try {
    const response = await fetch(`${endpoint}/v3/maintenance/status`, {
      method: "POST",
      body: "{}",
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    return response.ok ? ((await response.json()) as MemberStatus) : undefined;
  } catch {
    return undefined;
  }
}

function isLeader(status: MemberStatus | undefined): boolean {
  return status?.leader !== undefined && status.leader !== "0" && status.leader === status.header?.member_id;
}

function formatLogs(members: readonly EtcdMember[]): string {
  return members.map((member) => `--- ${member.name} (${member.endpoint}) ---\n${member.logs()}`).join("\n");
}

async function waitForHealth(members: readonly Member[], timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  await Promise.all(members.map((member) => member.waitUntilHealthy(timeoutMs)));
}

/** A member of a test cluster: the project's etcd launcher, restarted on its data dir by `restart()`. */
class Member extends EtcdMemberProcess implements EtcdMember {
  get peerUrl(): string {
    return this.spec.peerUrl;
  }

  get dataDir(): string {
    return this.spec.dataDir;
  }

  async restart(): Promise<void> {
    await this.stop();
    this.start("existing");
    await waitForHealth([this]);
  }
}

/**
 * A harness client is etcd3 as it comes (the tests pin its behaviour): undefined policies make
 * etcd3 use its own retry and circuit breaker, no default deadline, no gRPC keepalive pings.
 */
const ETCD3_DEFAULTS = {
  defaultCallOptions: undefined,
  faultHandling: { global: undefined, host: undefined },
  grpcOptions: { "grpc.keepalive_time_ms": -1 },
} satisfies ConnectOptions;

/** Unary calls get a deadline; watch streams live on. */
export const withDeadline: NonNullable<ConnectOptions["defaultCallOptions"]> = (context) =>
  context.isStream ? {} : { deadline: new Date(Date.now() + CALL_DEADLINE_MS) };

class Cluster implements EtcdCluster {
  readonly endpoints: string[];
  private readonly clients = new Set<Etcd3>();
  private compactor: Etcd3 | undefined;
  rootPassword: string | undefined;

  constructor(
    readonly rootDir: string,
    readonly members: Member[],
    readonly tls: EtcdTlsEndpoints | undefined,
  ) {
    this.endpoints = members.map((member) => member.endpoint);
  }

  client(options: EtcdClientOptions = {}): Etcd3 {
    const { hosts = this.endpoints, faultHandling, ...rest } = options;
    const root =
      this.rootPassword === undefined ? {} : { auth: { username: "root", password: this.rootPassword } };
    const client = connectEtcd(typeof hosts === "string" ? [hosts] : hosts, {
      ...ETCD3_DEFAULTS,
      dialTimeout: CLIENT_DIAL_TIMEOUT_MS,
      ...root,
      ...rest,
      faultHandling: { ...ETCD3_DEFAULTS.faultHandling, ...faultHandling },
    });
    this.clients.add(client);
    return client;
  }

  async leaderIndex(timeoutMs = LEADER_TIMEOUT_MS): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = await this.currentLeaderIndex();
      if (index >= 0) {
        return index;
      }
      if (Date.now() > deadline) {
        throw new Error(`no etcd raft leader within ${timeoutMs} ms\n${formatLogs(this.members)}`);
      }
      await sleep(POLL_INTERVAL_MS);
    }
  }

  async compact(atMost = Number.POSITIVE_INFINITY): Promise<number> {
    this.compactor ??= this.client({ defaultCallOptions: withDeadline });
    const current = Number((await this.compactor.get("\0").exec()).header.revision);
    const revision = Math.min(current, atMost);
    await this.compactor.kv.compact({ revision: String(revision), physical: false });
    return revision;
  }

  async stopAll(): Promise<void> {
    await this.stopMembersLeaderLast();
  }

  async startAll(): Promise<void> {
    const stopped = this.members.filter((member) => !member.running);
    for (const member of stopped) {
      member.start("existing");
    }
    await waitForHealth(stopped);
  }

  async stop(): Promise<void> {
    for (const client of this.clients) {
      client.close();
    }
    this.clients.clear();
    this.compactor = undefined;
    await this.stopMembersLeaderLast();
    await rm(this.rootDir, { recursive: true, force: true });
    liveRootDirs.delete(this.rootDir);
  }

  private async currentLeaderIndex(): Promise<number> {
    const statuses = await Promise.all(
      this.members.map((member) => (member.running ? memberStatus(member.endpoint) : undefined)),
    );
    return statuses.findIndex(isLeader);
  }

  /**
   * A stopping leader first hands leadership to a peer it believes alive; if that peer just died,
   * the hand-off hangs until SIGKILL. So followers stop first, and the leader gets time to notice.
   */
  private async stopMembersLeaderLast(): Promise<void> {
    const leader = this.members[await this.currentLeaderIndex()];
    const followers = this.members.filter((member) => member !== leader && member.running);
    for (const follower of followers) {
      await follower.stop();
    }
    if (leader?.running) {
      if (followers.length > 0) {
        await sleep(PEER_LOSS_NOTICE_MS);
      }
      await leader.stop();
    }
  }
}

function takePort(ports: number[]): number {
  const port = ports.shift();
  if (port === undefined) {
    throw new Error("ran out of free ports");
  }
  return port;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

/** A CA, and a certificate it signed for 127.0.0.1 (server and client use), both with EC keys. */
function makeCertificates(dir: string, name: string): TlsFiles {
  mkdirSync(dir, { recursive: true });
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(
    dir,
    "req",
    "-x509",
    ...key,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    `/CN=${name}-ca`,
  );
  openssl(dir, "req", ...key, "-keyout", "cert.key", "-out", "cert.csr", "-subj", `/CN=${name}`);
  writeFileSync(
    join(dir, "ext.cnf"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "cert.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "cert.crt",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  );
  const paths = { ca: join(dir, "ca.crt"), cert: join(dir, "cert.crt"), key: join(dir, "cert.key") };
  return { ca: readFileSync(paths.ca), cert: readFileSync(paths.cert), key: readFileSync(paths.key), paths };
}

/** Adds root with `password` and turns authentication on. */
async function enableAuth(endpoints: string[], password: string): Promise<void> {
  const client = connectEtcd(endpoints, { dialTimeout: CLIENT_DIAL_TIMEOUT_MS });
  try {
    await client.user("root").create(password);
    await client.user("root").addRole("root");
    await client.auth.authEnable({});
  } finally {
    client.close();
  }
}

/** The binary to run: `etcdBin` when given (checked), else `ETCD_BIN` or `etcd` on PATH. */
function etcdBinary(etcdBin: string | undefined): string {
  if (etcdBin === undefined) return findEtcdBinary();
  const probe = spawnSync(etcdBin, ["--version"], { stdio: "ignore" });
  if (probe.error !== undefined || probe.status !== 0)
    throw new EtcdStartError(
      `startEtcd: etcdBin "${etcdBin}" does not run (\`${etcdBin} --version\` failed); ` +
        "give the path of an etcd 3.4+ binary (Debian: apt-get install -y etcd-server)",
    );
  return etcdBin;
}

/**
 * A throwaway etcd of 1 or 3 members on free loopback ports, in a temporary folder; `stop()` ends
 * it, and any member still running is killed when this process exits.
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const binary = etcdBinary(options.etcdBin);
  const size = options.members ?? 1;
  if (options.tls && size !== 1) throw new Error("startEtcd: tls is for one member only");
  const prefix = options.name ?? "etcd";
  const rootDir = await mkdtemp(join(tmpdir(), "rdeebee-etcd-"));
  liveRootDirs.add(rootDir);
  const ports = await freePorts(size * (options.tls ? 3 : 2));
  const names = Array.from({ length: size }, (_, i) => `${prefix}-${i}`);
  const urls = names.map((name) => ({
    name,
    endpoint: loopbackUrl(takePort(ports)),
    peerUrl: loopbackUrl(takePort(ports)),
  }));
  const initialCluster = urls.map(({ name, peerUrl }) => `${name}=${peerUrl}`).join(",");
  const token = `${prefix}-${randomUUID()}`;
  let tls: EtcdTlsEndpoints | undefined;
  const tlsArgs: string[] = [];
  if (options.tls) {
    const server = makeCertificates(join(rootDir, "tls"), "etcd");
    tls = {
      endpoints: urls.map(() => `https://127.0.0.1:${takePort(ports)}`),
      trusted: server,
      untrusted: makeCertificates(join(rootDir, "tls-untrusted"), "stranger"),
    };
    const clientUrls = [urls[0]?.endpoint, tls.endpoints[0]].join(",");
    tlsArgs.push(
      ...["--listen-client-urls", clientUrls, "--advertise-client-urls", clientUrls],
      ...["--cert-file", server.paths.cert, "--key-file", server.paths.key],
      ...["--client-cert-auth", "--trusted-ca-file", server.paths.ca],
    );
  }
  const members = urls.map(
    (url) =>
      new Member(binary, {
        ...url,
        dataDir: join(rootDir, url.name),
        initialCluster,
        token,
        extraArgs: [...tlsArgs, ...(options.extraArgs ?? [])],
      }),
  );
  const cluster = new Cluster(rootDir, members, tls);
  try {
    for (const member of members) {
      member.start("new");
    }
    await waitForHealth(members);
    if (options.rootPassword !== undefined) {
      await enableAuth(cluster.endpoints, options.rootPassword);
      cluster.rootPassword = options.rootPassword;
    }
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
