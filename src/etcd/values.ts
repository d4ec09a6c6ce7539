import { z } from "zod";

/** Who a node is, as written into its member key and any leader key it holds. */
export const nodeRecordSchema = z.strictObject({
  id: z.number().int().nonnegative(),
  name: z.string().min(1).max(256),
  address: z.string().min(1).max(256),
});
export type NodeRecord = z.infer<typeof nodeRecordSchema>;

/** A failed slot advertised by a grouping's leader. */
export const failoverAdSchema = z.strictObject({
  id: z.number().int().nonnegative(),
  group: z.number().int().nonnegative(),
  advertisedBy: z.number().int().nonnegative(),
  token: z.number().int().positive(),
});
export type FailoverAd = z.infer<typeof failoverAdSchema>;

export type Decoded<T> = { ok: true; value: T } | { ok: false; problem: string };

const MAX_VALUE_BYTES = 64 * 1024;

/** Parses a value found in etcd; never throws, so a bad value can be logged and ignored. */
export function decodeValue<T>(schema: z.ZodType<T>, text: string): Decoded<T> {
  if (text.length > MAX_VALUE_BYTES)
    return { ok: false, problem: `value of ${text.length} bytes is too large` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, problem: "value is not JSON" };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      problem: `value has the wrong shape (${issue?.path.join(".") || "(root)"}: ${issue?.message})`,
    };
  }
  return { ok: true, value: parsed.data };
}

/**
 * The decimal node-ID counter under `id_key`: how many IDs were handed out, so at most `capacity`.
 * Undefined when malformed or beyond the capacity (such a value was not written by this runtime).
 */
export function decodeCounter(text: string, capacity: number): number | undefined {
  if (!/^(0|[1-9]\d{0,8})$/.test(text)) return undefined;
  const count = Number(text);
  return count <= capacity ? count : undefined;
}
