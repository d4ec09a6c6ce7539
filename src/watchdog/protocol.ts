import type { EtcdConnection as ConfigEtcdConnection } from "../config/index.js";

/**
 * How to reach etcd, as the node does: endpoints, TLS material (PEM) and a user. The same shape as
 * the config's `EtcdConnection`, so a node's connection passes as it is. Sent over IPC by
 * structured clone, so the buffers cross as they are.
 */
export interface EtcdConnection {
  endpoints: string[];
  tls?: { ca?: Uint8Array; cert?: Uint8Array; key?: Uint8Array };
  auth?: { username: string; password: string };
}

/** Node → watchdog. */
export type ToWatchdog =
  | {
      type: "configure";
      connection: EtcdConnection;
      /** The node's pid and its start time in clock ticks (from /proc), so a reused pid is not taken for it. */
      parentPid: number;
      parentStartTicks: number | undefined;
      /** Deadline of each revoke attempt. */
      callTimeoutMs: number;
      nodeName: string;
      logLevel: string | undefined;
    }
  /** The lease to revoke if the node dies; undefined while it has none (or has stopped). */
  | { type: "lease"; leaseId: string | undefined }
  /** Graceful stop: the node revokes its own lease; exit without revoking. */
  | { type: "stop" };

/** Watchdog → node: the lease it now holds (for logs and tests). */
export type FromWatchdog = { type: "holding"; leaseId: string | undefined };

/** A plain copy, so that nothing but data is sent (a class instance or a function would not clone). */
export function transferableConnection(connection: EtcdConnection): EtcdConnection {
  const { endpoints, tls, auth } = connection;
  return {
    endpoints: [...endpoints],
    ...(tls ? { tls: { ca: tls.ca, cert: tls.cert, key: tls.key } } : {}),
    ...(auth ? { auth: { username: auth.username, password: auth.password } } : {}),
  };
}

/** The connection as `connectEtcd` takes it, its TLS material as Buffers again after the IPC crossing. */
export function etcdConnectionFrom(connection: EtcdConnection): ConfigEtcdConnection {
  const { endpoints, tls, auth } = connection;
  const buffer = (bytes: Uint8Array | undefined) => (bytes ? Buffer.from(bytes) : undefined);
  return {
    endpoints,
    ...(tls ? { tls: { ca: buffer(tls.ca), cert: buffer(tls.cert), key: buffer(tls.key) } } : {}),
    ...(auth ? { auth } : {}),
  };
}

export function isToWatchdog(message: unknown): message is ToWatchdog {
  if (typeof message !== "object" || message === null) return false;
  const type = (message as { type?: unknown }).type;
  return type === "configure" || type === "lease" || type === "stop";
}
