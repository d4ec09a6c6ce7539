import { hostname } from "node:os";
import { keepaliveIntervalProblem, leaseTtlProblem } from "./bounds.js";
import { ConfigError } from "./errors.js";

export { MAX_LEASE_TTL_SECONDS, MIN_KEEPALIVE_INTERVAL_MS, MIN_LEASE_TTL_SECONDS } from "./bounds.js";

/** Settings of one node, beside the shared cluster config. */
export interface NodeSettings {
  /** Lease TTL in whole seconds (etcd leases have second granularity). */
  leaseTtlSeconds: number;
  /** Time between keepalives, in milliseconds; always below the TTL. */
  keepaliveIntervalMs: number;
  /** etcd client URLs, e.g. `http://127.0.0.1:2379`. */
  etcdEndpoints: string[];
  /** Human name of the node, shown in logs and leader values. */
  nodeName: string;
  /** `host:port` of the database server that embeds this node. */
  address: string;
}

/** Raw values as they arrive from flags or the environment. */
export interface RawNodeSettings {
  leaseTtl?: string | undefined;
  refreshInterval?: string | undefined;
  etcd?: string | undefined;
  node?: string | undefined;
  address?: string | undefined;
}

/** The environment variables of the original server, by setting. */
export const NODE_SETTINGS_ENV = {
  leaseTtl: "LEASE_TTL",
  refreshInterval: "REFRESH_INTERVAL",
  etcd: "ETCD",
  node: "NODE",
  address: "ADDRESS",
} as const satisfies Record<keyof RawNodeSettings, string>;

export const NODE_SETTINGS_FLAGS = {
  leaseTtl: "--lease-ttl",
  refreshInterval: "--refresh-interval",
  etcd: "--etcd",
  node: "--node",
  address: "--address",
} as const satisfies Record<keyof RawNodeSettings, string>;

export const DEFAULT_LEASE_TTL_SECONDS = 5;
export const DEFAULT_ETCD_ENDPOINT = "http://127.0.0.1:2379";

type Source = { value: string; from: string };

function pick(
  key: keyof RawNodeSettings,
  flags: RawNodeSettings,
  env: NodeJS.ProcessEnv,
): Source | undefined {
  const flag = flags[key];
  if (flag !== undefined) return { value: flag, from: NODE_SETTINGS_FLAGS[key] };
  const fromEnv = env[NODE_SETTINGS_ENV[key]];
  // npm sets NODE to the path of the node binary for every script it runs; that is not a node name.
  if (key === "node" && fromEnv?.includes("/")) return undefined;
  if (fromEnv !== undefined && fromEnv !== "") return { value: fromEnv, from: NODE_SETTINGS_ENV[key] };
  return undefined;
}

const HOST =
  /^(localhost|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])$/;

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

/** Splits `host:port` (IPv6 in brackets); undefined when malformed. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const at = text.lastIndexOf(":");
  if (at <= 0) return undefined;
  const host = text.slice(0, at);
  const port = parsePort(text.slice(at + 1));
  if (port === undefined || !HOST.test(host)) return undefined;
  return { host, port };
}

export function parseEtcdEndpoint(text: string): string | undefined {
  const withScheme = /^[a-z]+:\/\//.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.port === "" || url.pathname !== "/" || url.search !== "" || url.hash !== "" || url.username !== "")
    return undefined;
  return `${url.protocol}//${url.host}`;
}

/** A decimal number of seconds, as typed; undefined for anything else (signs, exponents, units). */
function parseSeconds(text: string): number | undefined {
  if (!/^\d+(\.\d+)?$/.test(text.trim())) return undefined;
  return Number(text);
}

/** Only the etcd endpoints (flag, then `ETCD`, then the default), for commands that run no node. */
export function resolveEtcdEndpoints(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  return resolveNodeSettings({ etcd: flag }, { ETCD: env.ETCD }).etcdEndpoints;
}

/**
 * Resolves node settings: flags first, then the environment (`LEASE_TTL`, `REFRESH_INTERVAL`,
 * `ETCD`, `NODE`, `ADDRESS`), then defaults. Every problem is reported at once, naming its source.
 */
export function resolveNodeSettings(
  flags: RawNodeSettings,
  env: NodeJS.ProcessEnv = process.env,
): NodeSettings {
  const problems: string[] = [];

  const ttlSource = pick("leaseTtl", flags, env);
  let leaseTtlSeconds = DEFAULT_LEASE_TTL_SECONDS;
  if (ttlSource) {
    const ttl = parseSeconds(ttlSource.value);
    const problem = ttl === undefined ? "must be a whole number of seconds" : leaseTtlProblem(ttl);
    if (problem !== undefined || ttl === undefined) {
      problems.push(`${ttlSource.from}: lease TTL ${problem}, got "${ttlSource.value}"`);
    } else leaseTtlSeconds = ttl;
  }

  const intervalSource = pick("refreshInterval", flags, env);
  let keepaliveIntervalMs = Math.round((leaseTtlSeconds * 1000) / 3);
  if (intervalSource) {
    const { value, from } = intervalSource;
    const seconds = parseSeconds(value);
    // Compared in whole milliseconds, as used: 0.0001 s must not become 0 ms, nor 4.9999 s equal a 5 s TTL.
    const ms = seconds === undefined ? undefined : Math.round(seconds * 1000);
    const problem = ms === undefined ? undefined : keepaliveIntervalProblem(ms, leaseTtlSeconds);
    if (ms === undefined)
      problems.push(`${from}: keepalive interval must be a number of seconds, got "${value}"`);
    else if (problem !== undefined) problems.push(`${from}: keepalive interval (${value} s) ${problem}`);
    else keepaliveIntervalMs = ms;
  }

  const etcdSource = pick("etcd", flags, env);
  const etcdEndpoints: string[] = [];
  for (const raw of (etcdSource?.value ?? DEFAULT_ETCD_ENDPOINT).split(",")) {
    const endpoint = parseEtcdEndpoint(raw.trim());
    if (endpoint === undefined)
      problems.push(`${etcdSource?.from ?? "etcd"}: malformed endpoint "${raw.trim()}"`);
    else etcdEndpoints.push(endpoint);
  }

  const nodeSource = pick("node", flags, env);
  const nodeName = nodeSource?.value ?? `${hostname()}-${process.pid}`;
  if (!/^[\w.-]{1,128}$/.test(nodeName)) {
    problems.push(`${nodeSource?.from ?? "node"}: node name must be 1-128 letters, digits, '.', '_' or '-'`);
  }

  const addressSource = pick("address", flags, env);
  const address = addressSource?.value ?? "127.0.0.1:0";
  if (parseHostPort(address) === undefined) {
    problems.push(`${addressSource?.from ?? "address"}: address must be host:port, got "${address}"`);
  }

  if (problems.length > 0) throw new ConfigError("node settings", problems);
  return { leaseTtlSeconds, keepaliveIntervalMs, etcdEndpoints, nodeName, address };
}
