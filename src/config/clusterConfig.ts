import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { z } from "zod";
import { CONFIG_SIZE_LIMITS, capacityProblem } from "./bounds.js";
import { ConfigError } from "./errors.js";
import { reservedKeyPrefixes } from "./keys.js";

const positiveInt = z.number({ error: "must be a number" }).int("must be an integer").positive("must be > 0");
const size = (max: number) => positiveInt.max(max, `must be <= ${max.toLocaleString("en-US")}`);
const keyString = z
  .string({ error: "must be a string" })
  .min(1, "must not be empty")
  .regex(/^[^/\s]+$/, "must not contain '/' or whitespace");

export const clusterConfigSchema = z
  .strictObject(
    {
      dbname: keyString,
      groups: size(CONFIG_SIZE_LIMITS.groups),
      group_size: size(CONFIG_SIZE_LIMITS.group_size),
      reads: size(CONFIG_SIZE_LIMITS.reads),
      writes: positiveInt,
      id_key: keyString,
      failover_id_key_prefix: keyString,
    },
    { error: "must be a mapping of the cluster settings" },
  )
  .superRefine((c, ctx) => {
    // Said only when each factor is within its own bound: otherwise that bound is the news.
    if (c.groups > CONFIG_SIZE_LIMITS.groups || c.group_size > CONFIG_SIZE_LIMITS.group_size) return;
    const problem = capacityProblem(c.groups, c.group_size);
    if (problem !== undefined)
      ctx.addIssue({ code: "custom", path: ["groups × group_size"], message: problem });
  })
  .refine((c) => c.writes <= c.group_size, {
    path: ["writes"],
    message: "must be <= group_size",
  })
  .refine((c) => c.id_key !== c.failover_id_key_prefix, {
    path: ["failover_id_key_prefix"],
    message: "must differ from id_key",
  })
  .refine((c) => !reservedKeyPrefixes(c.dbname).some((p) => c.id_key.startsWith(p)), {
    path: ["id_key"],
    message:
      "must not start with a key name the cluster reserves (leader-, election-, member-<dbname>-group-)",
  })
  .refine((c) => !reservedKeyPrefixes(c.dbname).some((p) => c.failover_id_key_prefix.startsWith(p)), {
    path: ["failover_id_key_prefix"],
    message:
      "must not start with a key name the cluster reserves (leader-, election-, member-<dbname>-group-)",
  });

/** The user-defined cluster settings of `config.yaml` (the seed's PreConfig). */
export type ClusterConfig = z.infer<typeof clusterConfigSchema>;

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((k) => `${k}: unknown field`).join("; ");
  }
  const path = issue.path.length > 0 ? issue.path.join(".") : "(root)";
  if (issue.code === "invalid_type" && issue.input === undefined) return `${path}: missing required field`;
  return `${path}: ${issue.message}`;
}

/** Validate an already-parsed value; `source` names where it came from in errors. */
export function parseClusterConfig(value: unknown, source: string): ClusterConfig {
  if (value === undefined || value === null) throw new ConfigError(source, ["file is empty"]);
  // reportInput: without it zod 4 issues carry no `input`, and every type error read as "missing".
  const result = clusterConfigSchema.safeParse(value, { reportInput: true });
  if (!result.success) throw new ConfigError(source, result.error.issues.map(describeIssue));
  return result.data;
}

export function parseClusterConfigYaml(text: string, source: string): ClusterConfig {
  let value: unknown;
  try {
    value = yaml.load(text, { filename: source, schema: yaml.CORE_SCHEMA });
  } catch (err) {
    const reason = err instanceof yaml.YAMLException ? err.reason : String(err);
    throw new ConfigError(source, [`not valid YAML: ${reason}`]);
  }
  return parseClusterConfig(value, source);
}

export function loadClusterConfig(path: string): ClusterConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(path, [`cannot read file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`]);
  }
  return parseClusterConfigYaml(text, path);
}
