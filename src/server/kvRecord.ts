import { z } from "zod";

/** What the example server keeps in etcd for one key: the value and who committed it under which term. */
export interface KvRecord {
  value: string;
  /** Name of the node that wrote it as its grouping's primary. */
  node: string;
  /** Fencing token (create revision of the primary key) it was written under. */
  token: number;
}

const kvRecordSchema = z.strictObject({
  value: z.string(),
  node: z.string(),
  token: z.number().int().positive(),
});

export function encodeKvRecord(record: KvRecord): string {
  return JSON.stringify(record);
}

/** The record stored under `key`, or why the text is not one (a value written by hand, by another program). */
export function decodeKvRecord(
  text: string,
): { ok: true; record: KvRecord } | { ok: false; problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, problem: "not JSON" };
  }
  const parsed = kvRecordSchema.safeParse(json);
  if (parsed.success) return { ok: true, record: parsed.data };
  const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(value)"}: ${i.message}`);
  return { ok: false, problem: issues.join("; ") };
}
