import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { keepaliveIntervalProblem, leaseTtlProblem } from "./bounds.js";
import { ConfigError } from "./errors.js";
import { namespaceProblem } from "./keys.js";

export { MAX_LEASE_TTL_SECONDS, MIN_KEEPALIVE_INTERVAL_MS, MIN_LEASE_TTL_SECONDS } from "./bounds.js";

/** TLS material, PEM-encoded: the CA that signed etcd's server certificate; a client certificate and key for mutual TLS. */
export interface EtcdTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** An etcd user: every call carries a token etcd issues for these credentials. */
export interface EtcdAuth {
  username: string;
  password: string;
}

/** How to reach etcd: endpoints, and for a production etcd TLS and a user. */
export interface EtcdConnection {
  /** etcd client URLs, e.g. `https://10.0.0.1:2379`. */
  endpoints: string[];
  tls?: EtcdTls;
  auth?: EtcdAuth;
}

/** Settings of one node, beside the shared cluster config. */
export interface NodeSettings {
  /** Lease TTL in whole seconds (etcd leases have second granularity). */
  leaseTtlSeconds: number;
  /** Time between keepalives, in milliseconds; always below the TTL. */
  keepaliveIntervalMs: number;
  /** etcd client URLs, e.g. `http://127.0.0.1:2379`; the same as `etcd.endpoints` when `etcd` is set. */
  etcdEndpoints: string[];
  /** How to reach etcd (TLS, user); absent means `etcdEndpoints` without TLS or user. */
  etcd?: EtcdConnection;
  /** Prefix of every key of the cluster ("" or ending in "/"); absent means "". */
  namespace?: string;
  /** Human name of the node, shown in logs and leader values. */
  nodeName: string;
  /** `host:port` of the database server that embeds this node. */
  address: string;
  /**
   * A directory (absolute path) where the node keeps the ID it held last, under a lock, so that a
   * restarted node takes it back; absent means the ID is kept in memory only.
   */
  stateDir?: string;
}

/** The etcd connection of `settings`, whether it was resolved here or written as a literal. */
export function etcdConnectionOf(settings: Pick<NodeSettings, "etcd" | "etcdEndpoints">): EtcdConnection {
  return settings.etcd ?? { endpoints: settings.etcdEndpoints };
}

/** Raw values of the etcd connection as they arrive from flags or the environment (files by path). */
export interface RawEtcdSettings {
  etcd?: string | undefined;
  etcdCa?: string | undefined;
  etcdCert?: string | undefined;
  etcdKey?: string | undefined;
  etcdUser?: string | undefined;
  etcdPasswordFile?: string | undefined;
  namespace?: string | undefined;
}

/** Raw values as they arrive from flags or the environment. */
export interface RawNodeSettings extends RawEtcdSettings {
  leaseTtl?: string | undefined;
  refreshInterval?: string | undefined;
  node?: string | undefined;
  address?: string | undefined;
  stateDir?: string | undefined;
}

/** The environment variables of the original server, by setting, and those of a production etcd. */
export const NODE_SETTINGS_ENV = {
  leaseTtl: "LEASE_TTL",
  refreshInterval: "REFRESH_INTERVAL",
  etcd: "ETCD",
  node: "NODE",
  address: "ADDRESS",
  etcdCa: "ETCD_CA",
  etcdCert: "ETCD_CERT",
  etcdKey: "ETCD_KEY",
  etcdUser: "ETCD_USER",
  etcdPasswordFile: "ETCD_PASSWORD_FILE",
  namespace: "NAMESPACE",
  stateDir: "STATE_DIR",
} as const satisfies Record<keyof RawNodeSettings, string>;

/** The etcd user's password itself, never a flag (a flag shows in `ps`); a file is the alternative. */
export const ETCD_PASSWORD_ENV = "ETCD_PASSWORD";

export const NODE_SETTINGS_FLAGS = {
  leaseTtl: "--lease-ttl",
  refreshInterval: "--refresh-interval",
  etcd: "--etcd",
  node: "--node",
  address: "--address",
  etcdCa: "--etcd-ca",
  etcdCert: "--etcd-cert",
  etcdKey: "--etcd-key",
  etcdUser: "--etcd-user",
  etcdPasswordFile: "--etcd-password-file",
  namespace: "--namespace",
  stateDir: "--state-dir",
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

// The rules below are shared by the CLI path (`resolveNodeSettings`, strings naming flags and
// variables) and the code path (`nodeSettings`, typed values naming options): one owner per rule.

const NODE_NAME = /^[\w.-]{1,128}$/;

function nodeNameProblem(name: string): string | undefined {
  return NODE_NAME.test(name) ? undefined : "must be 1-128 letters, digits, '.', '_' or '-'";
}

function addressProblem(address: string): string | undefined {
  return parseHostPort(address) === undefined ? `must be host:port, got "${address}"` : undefined;
}

/** A state directory as given; it is created on start when missing. */
function stateDirProblem(dir: string): string | undefined {
  if (dir.trim() === "") return "must be a directory path, got an empty one";
  return dir.includes("\0") ? "must not contain a NUL character" : undefined;
}

const defaultNodeName = () => `${hostname()}-${process.pid}`;
const DEFAULT_ADDRESS = "127.0.0.1:0";

const hasScheme = (text: string) => /^[a-z]+:\/\//.test(text);

/**
 * One endpoint as a URL, or the problem with it. With TLS an endpoint without a scheme is https;
 * one spelled http:// is refused, since the connection would be TLS all the same.
 */
function endpointOf(text: string, tls: boolean): { endpoint: string } | { problem: string } {
  const endpoint = parseEtcdEndpoint(text);
  if (endpoint === undefined) return { problem: `malformed endpoint "${text}"` };
  if (!tls || endpoint.startsWith("https:")) return { endpoint };
  if (hasScheme(text))
    return { problem: `"${text}" is plain http but TLS is configured: use https:// (or no scheme)` };
  return { endpoint: `https:${endpoint.slice("http:".length)}` };
}

const PEM_MARKERS = { certificate: "-----BEGIN CERTIFICATE-----", key: "PRIVATE KEY-----" } as const;

/** Catches a swapped or wrong file here, where it can be named, rather than as a TLS handshake failure. */
function pemProblem(kind: keyof typeof PEM_MARKERS, content: Buffer): string | undefined {
  if (content.includes(PEM_MARKERS[kind])) return undefined;
  return kind === "certificate"
    ? `is not a PEM certificate (no "${PEM_MARKERS.certificate}")`
    : `is not a PEM private key (no "-----BEGIN ... ${PEM_MARKERS.key}")`;
}

/** Labels of the places a connection's parts came from, for the problems' wording. */
interface ConnectionLabels {
  ca: string;
  cert: string;
  key: string;
  user: string;
  password: string;
}

/** The checks of a connection that do not depend on where its parts came from. */
function connectionProblems(connection: EtcdConnection, labels: ConnectionLabels): string[] {
  const problems: string[] = [];
  const { tls, auth } = connection;
  if (tls?.cert !== undefined && tls.key === undefined)
    problems.push(`${labels.cert}: a client certificate needs its private key (${labels.key})`);
  if (tls?.key !== undefined && tls.cert === undefined)
    problems.push(`${labels.key}: a private key needs its client certificate (${labels.cert})`);
  for (const [label, kind, content] of [
    [labels.ca, "certificate", tls?.ca],
    [labels.cert, "certificate", tls?.cert],
    [labels.key, "key", tls?.key],
  ] as const) {
    const problem = content === undefined ? undefined : pemProblem(kind, content);
    if (problem !== undefined) problems.push(`${label}: ${problem}`);
  }
  if (auth !== undefined && auth.username === "") problems.push(`${labels.user}: must not be empty`);
  if (auth !== undefined && auth.password === "")
    problems.push(`${labels.password}: the password of user "${auth.username}" must not be empty`);
  return problems;
}

/** Only the etcd endpoints (flag, then `ETCD`, then the default), for commands that run no node. */
export function resolveEtcdEndpoints(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  return resolveNodeSettings({ etcd: flag }, { ETCD: env.ETCD }).etcdEndpoints;
}

/** How to reach etcd and which namespace, as the CLI's etcd flags and variables give them. */
export interface EtcdSettings {
  etcd: EtcdConnection;
  namespace: string;
}

/**
 * The etcd connection and namespace from flags, then the environment (`ETCD`, `ETCD_CA`,
 * `ETCD_CERT`, `ETCD_KEY`, `ETCD_USER`, `ETCD_PASSWORD` or `ETCD_PASSWORD_FILE`, `NAMESPACE`),
 * for commands that talk to etcd without running a node (`status`, `repair`). Files are read here.
 */
export function resolveEtcdSettings(
  flags: RawEtcdSettings,
  env: NodeJS.ProcessEnv = process.env,
): EtcdSettings {
  const problems: string[] = [];
  const settings = etcdSettingsFrom(flags, env, problems);
  if (problems.length > 0) throw new ConfigError("etcd settings", problems);
  return settings;
}

function readFileOf(source: Source, problems: string[]): Buffer | undefined {
  try {
    return readFileSync(source.value);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    problems.push(`${source.from}: cannot read "${source.value}": ${reason}`);
    return undefined;
  }
}

/**
 * The password: `--etcd-password-file`, then `ETCD_PASSWORD`, then `ETCD_PASSWORD_FILE`. A file holds
 * the password, perhaps followed by one line break (as editors and `echo` leave).
 */
function passwordFrom(
  flags: RawEtcdSettings,
  env: NodeJS.ProcessEnv,
  problems: string[],
): Source | undefined {
  const password = env[ETCD_PASSWORD_ENV] || undefined;
  const file =
    flags.etcdPasswordFile !== undefined
      ? { value: flags.etcdPasswordFile, from: NODE_SETTINGS_FLAGS.etcdPasswordFile }
      : password === undefined
        ? pick("etcdPasswordFile", {}, env)
        : undefined;
  if (file === undefined)
    return password === undefined ? undefined : { value: password, from: ETCD_PASSWORD_ENV };
  const content = readFileOf(file, problems);
  if (content === undefined) return undefined;
  return { value: content.toString("utf8").replace(/\r?\n$/, ""), from: file.from };
}

function etcdSettingsFrom(flags: RawEtcdSettings, env: NodeJS.ProcessEnv, problems: string[]): EtcdSettings {
  const files = {
    ca: pick("etcdCa", flags, env),
    cert: pick("etcdCert", flags, env),
    key: pick("etcdKey", flags, env),
  };
  const readProblems = problems.length;
  const tls: EtcdTls = {};
  for (const part of ["ca", "cert", "key"] as const) {
    const source = files[part];
    const content = source === undefined ? undefined : readFileOf(source, problems);
    if (content !== undefined) tls[part] = content;
  }
  const withTls = Object.values(files).some((source) => source !== undefined);
  const userSource = pick("etcdUser", flags, env);
  const passwordSource = passwordFrom(flags, env, problems);
  // A file that could not be read is the one problem to report about the connection's parts.
  const allRead = problems.length === readProblems;

  const etcdSource = pick("etcd", flags, env);
  const endpoints: string[] = [];
  // Without a scheme, the default follows the TLS settings like any endpoint typed so.
  const defaultEndpoint = DEFAULT_ETCD_ENDPOINT.slice("http://".length);
  for (const raw of (etcdSource?.value ?? defaultEndpoint).split(",")) {
    const result = endpointOf(raw.trim(), withTls);
    if ("problem" in result) problems.push(`${etcdSource?.from ?? "etcd"}: ${result.problem}`);
    else endpoints.push(result.endpoint);
  }

  let auth: EtcdAuth | undefined;
  if (userSource !== undefined && passwordSource !== undefined)
    auth = { username: userSource.value, password: passwordSource.value };
  else if (userSource !== undefined && allRead)
    problems.push(
      `${userSource.from}: user "${userSource.value}" needs a password: set ${ETCD_PASSWORD_ENV} or ${NODE_SETTINGS_FLAGS.etcdPasswordFile} (${NODE_SETTINGS_ENV.etcdPasswordFile})`,
    );
  else if (userSource === undefined && passwordSource !== undefined)
    problems.push(
      `${passwordSource.from}: a password needs a user: set ${NODE_SETTINGS_FLAGS.etcdUser} (${NODE_SETTINGS_ENV.etcdUser})`,
    );

  const etcd: EtcdConnection = { endpoints, ...(withTls ? { tls } : {}), ...(auth ? { auth } : {}) };
  if (allRead)
    problems.push(
      ...connectionProblems(etcd, {
        ca: files.ca?.from ?? NODE_SETTINGS_FLAGS.etcdCa,
        cert: files.cert?.from ?? NODE_SETTINGS_FLAGS.etcdCert,
        key: files.key?.from ?? NODE_SETTINGS_FLAGS.etcdKey,
        user: userSource?.from ?? NODE_SETTINGS_FLAGS.etcdUser,
        password: passwordSource?.from ?? ETCD_PASSWORD_ENV,
      }),
    );

  const namespaceSource = pick("namespace", flags, env);
  const namespace = namespaceSource?.value ?? "";
  const nsProblem = namespaceProblem(namespace);
  if (nsProblem !== undefined)
    problems.push(`${namespaceSource?.from ?? "namespace"}: namespace ${nsProblem}`);
  return { etcd, namespace };
}

/**
 * Resolves node settings: flags first, then the environment (`LEASE_TTL`, `REFRESH_INTERVAL`,
 * `ETCD`, `NODE`, `ADDRESS` and the etcd connection's, see `resolveEtcdSettings`), then defaults.
 * Every problem is reported at once, naming its source. For settings built in code, see `nodeSettings`.
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
  let keepaliveIntervalMs = defaultKeepaliveIntervalMs(leaseTtlSeconds);
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

  const { etcd, namespace } = etcdSettingsFrom(flags, env, problems);

  const nodeSource = pick("node", flags, env);
  const nodeName = nodeSource?.value ?? defaultNodeName();
  const nameProblem = nodeNameProblem(nodeName);
  if (nameProblem !== undefined) problems.push(`${nodeSource?.from ?? "node"}: node name ${nameProblem}`);

  const addressSource = pick("address", flags, env);
  const address = addressSource?.value ?? DEFAULT_ADDRESS;
  const badAddress = addressProblem(address);
  if (badAddress !== undefined) problems.push(`${addressSource?.from ?? "address"}: address ${badAddress}`);

  const stateDirSource = pick("stateDir", flags, env);
  const stateDirBad = stateDirSource === undefined ? undefined : stateDirProblem(stateDirSource.value);
  if (stateDirSource !== undefined && stateDirBad !== undefined)
    problems.push(`${stateDirSource.from}: state directory ${stateDirBad}`);

  if (problems.length > 0) throw new ConfigError("node settings", problems);
  return {
    leaseTtlSeconds,
    keepaliveIntervalMs,
    etcdEndpoints: etcd.endpoints,
    etcd,
    namespace,
    nodeName,
    address,
    ...(stateDirSource ? { stateDir: resolve(stateDirSource.value) } : {}),
  };
}

const defaultKeepaliveIntervalMs = (ttlSeconds: number) => Math.round((ttlSeconds * 1000) / 3);

/** Node settings built in code: typed values, every one optional (the defaults are the CLI's). */
export interface NodeSettingsOptions {
  /** A connection, or only endpoints; default `http://127.0.0.1:2379`. */
  etcd?: EtcdConnection | readonly string[];
  /** Whole seconds, 2 to 3,600; default 5. */
  leaseTtlSeconds?: number;
  /** Milliseconds, at least 100 and below the TTL; default TTL/3. */
  keepaliveIntervalMs?: number;
  /** Letters, digits, '.', '_', '-'; default `<hostname>-<pid>`. */
  nodeName?: string;
  /** `host:port` of the database server; default `127.0.0.1:0`. */
  address?: string;
  /** Prefix of every key of the cluster, "" or ending in "/"; default "". */
  namespace?: string;
  /** Where the node keeps its ID across restarts, locked (created when missing); default none. */
  stateDir?: string;
}

const shown = (value: unknown) => (typeof value === "string" ? `"${value}"` : String(value));

/**
 * Node settings from code, checked by the same rules as the CLI's flags; every problem names the
 * option (`leaseTtlSeconds: must be ...`) and all are reported at once, as a ConfigError.
 */
export function nodeSettings(options: NodeSettingsOptions = {}): NodeSettings {
  const problems: string[] = [];
  const numberProblem = (name: string, value: unknown, problem: (n: number) => string | undefined) => {
    const why = typeof value === "number" ? problem(value) : "must be a number";
    if (why !== undefined) problems.push(`${name}: ${why}, got ${shown(value)}`);
    return why === undefined;
  };

  const ttl = options.leaseTtlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
  const ttlOk = numberProblem("leaseTtlSeconds", ttl, leaseTtlProblem);
  const leaseTtlSeconds = ttlOk ? ttl : DEFAULT_LEASE_TTL_SECONDS;
  const keepaliveIntervalMs = options.keepaliveIntervalMs ?? defaultKeepaliveIntervalMs(leaseTtlSeconds);
  if (ttlOk)
    numberProblem("keepaliveIntervalMs", keepaliveIntervalMs, (ms) => keepaliveIntervalProblem(ms, ttl));

  const given = options.etcd ?? [DEFAULT_ETCD_ENDPOINT];
  const connection: EtcdConnection = isEndpointList(given) ? { endpoints: [...given] } : given;
  const endpoints: string[] = [];
  if (connection.endpoints.length === 0) problems.push("etcd.endpoints: must list at least one endpoint");
  connection.endpoints.forEach((text, i) => {
    const result = endpointOf(text, connection.tls !== undefined);
    if ("problem" in result) problems.push(`etcd.endpoints[${i}]: ${result.problem}`);
    else endpoints.push(result.endpoint);
  });
  problems.push(
    ...connectionProblems(connection, {
      ca: "etcd.tls.ca",
      cert: "etcd.tls.cert",
      key: "etcd.tls.key",
      user: "etcd.auth.username",
      password: "etcd.auth.password",
    }),
  );
  const etcd = { ...connection, endpoints };

  const nodeName = options.nodeName ?? defaultNodeName();
  const nameProblem = nodeNameProblem(nodeName);
  if (nameProblem !== undefined) problems.push(`nodeName: ${nameProblem}, got ${shown(nodeName)}`);
  const address = options.address ?? DEFAULT_ADDRESS;
  const badAddress = addressProblem(address);
  if (badAddress !== undefined) problems.push(`address: ${badAddress}`);
  const namespace = options.namespace ?? "";
  const nsProblem = namespaceProblem(namespace);
  if (nsProblem !== undefined) problems.push(`namespace: ${nsProblem}`);
  const { stateDir } = options;
  const stateDirBad =
    stateDir === undefined
      ? undefined
      : typeof stateDir === "string"
        ? stateDirProblem(stateDir)
        : "must be a string";
  if (stateDirBad !== undefined) problems.push(`stateDir: ${stateDirBad}, got ${shown(stateDir)}`);

  if (problems.length > 0) throw new ConfigError("node settings", problems);
  return {
    leaseTtlSeconds,
    keepaliveIntervalMs,
    etcdEndpoints: endpoints,
    etcd,
    namespace,
    nodeName,
    address,
    ...(stateDir !== undefined ? { stateDir: resolve(stateDir) } : {}),
  };
}

function isEndpointList(value: EtcdConnection | readonly string[]): value is readonly string[] {
  return Array.isArray(value);
}
