import { Etcd3 } from "etcd3";

/** Fails with a message naming the endpoints when etcd does not answer within `timeoutMs`. */
export async function assertEtcdReachable(endpoints: string[], timeoutMs = 5_000): Promise<void> {
  const client = new Etcd3({ hosts: endpoints, dialTimeout: timeoutMs });
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
