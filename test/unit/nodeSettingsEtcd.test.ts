import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  type RawNodeSettings,
  resolveEtcdSettings,
  resolveNodeSettings,
} from "../../src/config/index.js";

/** The etcd connection flags and variables of the CLI: files read, passwords, the namespace. */
let dir: string;
const file = (name: string) => join(dir, name);
const CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const OTHER_CERT = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
const KEY = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "rdeebee-settings-"));
  writeFileSync(file("ca.crt"), CERT);
  writeFileSync(file("other.crt"), OTHER_CERT);
  writeFileSync(file("client.key"), KEY);
  writeFileSync(file("password"), "s3cret \n");
  writeFileSync(file("password-crlf"), "two\r\nlines\r\n");
  writeFileSync(file("empty"), "");
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NAMED: RawNodeSettings = { node: "n1" };

function problemsOf(flags: RawNodeSettings, env: NodeJS.ProcessEnv = {}): readonly string[] {
  let caught: unknown;
  try {
    resolveNodeSettings({ ...NAMED, ...flags }, env);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  return (caught as ConfigError).problems;
}

describe("TLS files", () => {
  it("reads the CA, certificate and key named by the flags; scheme-less endpoints become https", () => {
    const s = resolveNodeSettings(
      {
        ...NAMED,
        etcd: "a:1",
        etcdCa: file("ca.crt"),
        etcdCert: file("other.crt"),
        etcdKey: file("client.key"),
      },
      {},
    );
    expect(s.etcd).toEqual({
      endpoints: ["https://a:1"],
      tls: { ca: Buffer.from(CERT), cert: Buffer.from(OTHER_CERT), key: Buffer.from(KEY) },
    });
    expect(s.etcdEndpoints).toEqual(["https://a:1"]);
  });

  it("reads them from ETCD_CA, ETCD_CERT, ETCD_KEY; a flag wins over its variable", () => {
    const env = { ETCD_CA: file("other.crt"), ETCD_CERT: file("other.crt"), ETCD_KEY: file("client.key") };
    const s = resolveNodeSettings({ ...NAMED, etcdCa: file("ca.crt") }, env);
    expect(s.etcd?.tls).toEqual({
      ca: Buffer.from(CERT),
      cert: Buffer.from(OTHER_CERT),
      key: Buffer.from(KEY),
    });
  });

  it("a CA alone is TLS without a client certificate", () => {
    expect(resolveNodeSettings({ ...NAMED, etcdCa: file("ca.crt") }, {}).etcd).toEqual({
      endpoints: ["https://127.0.0.1:2379"],
      tls: { ca: Buffer.from(CERT) },
    });
  });

  it("an unreadable file is refused naming the flag or variable and the path", () => {
    expect(problemsOf({ etcdCa: file("missing.crt") })).toEqual([
      expect.stringMatching(/^--etcd-ca: cannot read ".*missing\.crt": ENOENT/),
    ]);
    expect(problemsOf({}, { ETCD_KEY: file("missing.key"), ETCD_CERT: file("ca.crt") })).toEqual([
      expect.stringMatching(/^ETCD_KEY: cannot read ".*missing\.key": ENOENT/),
    ]);
  });

  it("a certificate without its key (and the reverse) is refused", () => {
    expect(problemsOf({ etcdCert: file("ca.crt") })).toEqual([
      "--etcd-cert: a client certificate needs its private key (--etcd-key)",
    ]);
    expect(problemsOf({}, { ETCD_KEY: file("client.key") })).toEqual([
      "ETCD_KEY: a private key needs its client certificate (--etcd-cert)",
    ]);
  });

  it("files that are not what the flag says are refused before any handshake", () => {
    expect(problemsOf({ etcdCa: file("client.key") })).toEqual([
      '--etcd-ca: is not a PEM certificate (no "-----BEGIN CERTIFICATE-----")',
    ]);
    expect(problemsOf({ etcdCert: file("ca.crt"), etcdKey: file("ca.crt") })).toEqual([
      '--etcd-key: is not a PEM private key (no "-----BEGIN ... PRIVATE KEY-----")',
    ]);
  });

  it("an endpoint spelled http:// is refused when TLS is configured", () => {
    expect(problemsOf({ etcd: "https://a:1,http://b:2", etcdCa: file("ca.crt") })).toEqual([
      '--etcd: "http://b:2" is plain http but TLS is configured: use https:// (or no scheme)',
    ]);
  });
});

describe("user and password", () => {
  it("takes the password from ETCD_PASSWORD", () => {
    const s = resolveNodeSettings({ ...NAMED, etcdUser: "alice" }, { ETCD_PASSWORD: "pw" });
    expect(s.etcd).toEqual({
      endpoints: ["http://127.0.0.1:2379"],
      auth: { username: "alice", password: "pw" },
    });
  });

  it("takes it from a file, without the one line break that ends it", () => {
    const fromFlag = resolveNodeSettings(
      { ...NAMED, etcdUser: "alice", etcdPasswordFile: file("password") },
      {},
    );
    expect(fromFlag.etcd?.auth).toEqual({ username: "alice", password: "s3cret " });
    const fromEnv = resolveNodeSettings(NAMED, {
      ETCD_USER: "bob",
      ETCD_PASSWORD_FILE: file("password-crlf"),
    });
    expect(fromEnv.etcd?.auth).toEqual({ username: "bob", password: "two\r\nlines" });
  });

  it("--etcd-password-file wins over ETCD_PASSWORD, which wins over ETCD_PASSWORD_FILE", () => {
    const env = { ETCD_USER: "alice", ETCD_PASSWORD: "from-env", ETCD_PASSWORD_FILE: file("password-crlf") };
    expect(
      resolveNodeSettings({ ...NAMED, etcdPasswordFile: file("password") }, env).etcd?.auth?.password,
    ).toBe("s3cret ");
    expect(resolveNodeSettings(NAMED, env).etcd?.auth?.password).toBe("from-env");
  });

  it("a user without a password, or a password without a user, is refused", () => {
    expect(problemsOf({ etcdUser: "alice" })).toEqual([
      '--etcd-user: user "alice" needs a password: set ETCD_PASSWORD or --etcd-password-file (ETCD_PASSWORD_FILE)',
    ]);
    expect(problemsOf({}, { ETCD_PASSWORD: "pw" })).toEqual([
      "ETCD_PASSWORD: a password needs a user: set --etcd-user (ETCD_USER)",
    ]);
  });

  it("an unreadable or empty password file is one problem, naming the file", () => {
    expect(problemsOf({ etcdUser: "alice", etcdPasswordFile: file("missing") })).toEqual([
      expect.stringMatching(/^--etcd-password-file: cannot read ".*missing": ENOENT/),
    ]);
    expect(problemsOf({ etcdUser: "alice", etcdPasswordFile: file("empty") })).toEqual([
      '--etcd-password-file: the password of user "alice" must not be empty',
    ]);
  });
});

describe("namespace", () => {
  it("comes from --namespace, then NAMESPACE, and is empty by default", () => {
    expect(resolveNodeSettings(NAMED, {}).namespace).toBe("");
    expect(resolveNodeSettings(NAMED, { NAMESPACE: "env/" }).namespace).toBe("env/");
    expect(resolveNodeSettings({ ...NAMED, namespace: "flag/x/" }, { NAMESPACE: "env/" }).namespace).toBe(
      "flag/x/",
    );
  });

  it.each(["prod", "/prod/", "a//", "a b/", "ü/"])("%j is refused naming its source", (namespace) => {
    const [problem] = problemsOf({ namespace });
    expect(problem).toMatch(/^--namespace: namespace must be empty or segments of letters, digits/);
    expect(problemsOf({}, { NAMESPACE: namespace })[0]).toMatch(/^NAMESPACE: namespace must/);
  });

  it("is at most 128 characters", () => {
    expect(problemsOf({ namespace: `${"a".repeat(128)}/` })).toEqual([
      "--namespace: namespace must be at most 128 characters, got 129",
    ]);
  });
});

describe("resolveEtcdSettings (status, repair)", () => {
  it("resolves the connection and namespace alone, under 'etcd settings'", () => {
    expect(
      resolveEtcdSettings({ etcd: "e:1", namespace: "n/" }, { ETCD_USER: "u", ETCD_PASSWORD: "p" }),
    ).toEqual({
      etcd: { endpoints: ["http://e:1"], auth: { username: "u", password: "p" } },
      namespace: "n/",
    });
    let caught: unknown;
    try {
      resolveEtcdSettings({ etcdUser: "u" }, {});
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).source).toBe("etcd settings");
  });
});
