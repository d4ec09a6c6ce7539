import { Etcd3, type IOptions } from "etcd3";

export type { Etcd3 } from "etcd3";

const DIAL_TIMEOUT_MS = 2_000;

/** A client for the given endpoints; every etcd connection of the runtime and the CLI is made here. */
export function connectEtcd(endpoints: string[], options: Omit<IOptions, "hosts"> = {}): Etcd3 {
  return new Etcd3({ dialTimeout: DIAL_TIMEOUT_MS, ...options, hosts: endpoints });
}

/** Fails with a message naming the endpoints when etcd does not answer within `timeoutMs`. */
export async function assertEtcdReachable(endpoints: string[], timeoutMs = 5_000): Promise<void> {
  const client = connectEtcd(endpoints, { dialTimeout: timeoutMs });
  try {
    await client
      .get("rdeebee-cluster/reachability-probe")
      .options({ deadline: new Date(Date.now() + timeoutMs) })
      .exec();
  } catch (err) {
    throw new EtcdUnreachableError(endpoints, err instanceof Error ? err.message : String(err));
  } finally {
    client.close();
  }
}

export class EtcdUnreachableError extends Error {
  override readonly name = "EtcdUnreachableError";
  constructor(endpoints: string[], reason: string) {
    super(`cannot reach etcd at ${endpoints.join(", ")}: ${reason.replace(/\s*Resolution note:\s*$/, "")}`);
  }
}
