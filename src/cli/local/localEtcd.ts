import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EtcdMember, EtcdStartError, findEtcdBinary, freePorts, loopbackUrl } from "./etcdMember.js";
import type { ReaperLink } from "./reaperLink.js";

export { EtcdStartError } from "./etcdMember.js";

const READY_TIMEOUT_MS = 20_000;
const OUTPUT_LINES_KEPT = 50;

/** A throwaway single-member etcd on loopback ports, with its data in a temporary directory. */
export interface LocalEtcd {
  readonly endpoint: string;
  /** The temporary directory holding the data dir; removed by stop(). */
  readonly rootDir: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Exit code or signal once the process has gone, for display. */
  readonly exitReason: string | undefined;
  /** Settles when the process has gone, whoever ended it. */
  readonly exited: Promise<void>;
  /** SIGTERM, SIGKILL after 3 s, then remove the directory. */
  stop(): Promise<void>;
}

class TemporaryEtcd implements LocalEtcd {
  constructor(
    private readonly member: EtcdMember,
    readonly rootDir: string,
  ) {}

  get endpoint(): string {
    return this.member.endpoint;
  }

  get pid(): number | undefined {
    return this.member.pid;
  }

  get running(): boolean {
    return this.member.running;
  }

  get exitReason(): string | undefined {
    return this.member.exitReason;
  }

  get exited(): Promise<void> {
    return this.member.exited;
  }

  async stop(): Promise<void> {
    process.off("exit", this.removeNow);
    await this.member.stop();
    await rm(this.rootDir, { recursive: true, force: true, maxRetries: 3 });
  }

  /** On a process exit that skipped stop(): the member is killed by its launcher, the data removed here. */
  readonly removeNow = () => rmSync(this.rootDir, { recursive: true, force: true });
}

/**
 * Starts a throwaway etcd on free loopback ports and waits until `/health` answers. The reaper, if
 * given, is told of its directory and process before anything else can fail.
 */
export async function startLocalEtcd(
  reaper?: Pick<ReaperLink, "process" | "gone" | "directory">,
): Promise<LocalEtcd> {
  const binary = findEtcdBinary();
  const [clientPort, peerPort] = await freePorts(2);
  if (clientPort === undefined || peerPort === undefined) throw new EtcdStartError("no free ports");
  const rootDir = await mkdtemp(join(tmpdir(), "rdeebee-local-"));
  reaper?.directory(rootDir);
  const peerUrl = loopbackUrl(peerPort);
  const member = new EtcdMember(
    binary,
    {
      name: "local",
      dataDir: join(rootDir, "data"),
      endpoint: loopbackUrl(clientPort),
      peerUrl,
      initialCluster: `local=${peerUrl}`,
    },
    { detached: true, logLines: OUTPUT_LINES_KEPT },
  );
  const etcd = new TemporaryEtcd(member, rootDir);
  process.on("exit", etcd.removeNow);
  member.start("new");
  const pid = member.pid;
  reaper?.process(pid, "etcd");
  void member.exited.then(() => reaper?.gone(pid));
  try {
    await member.waitUntilHealthy(READY_TIMEOUT_MS);
  } catch (err) {
    await etcd.stop();
    throw err;
  }
  return etcd;
}
