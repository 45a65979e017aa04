import type { Failure } from "../common/pipeline.js";
import { DecodeError, type Reading, readingProblem, type SchemaRegistry } from "../schemas/index.js";

export type Decoded =
  | { readonly ok: true; readonly reading: Reading }
  | { readonly ok: false; readonly failure: Failure };

/**
 * The processor's decode step: a message body becomes a reading (any released schema version, resolved to the
 * current one) checked against the contract's rules, or the failure that sends it to `<QUEUE>.dead`
 * (`not-avro`, `unknown-schema`, `truncated`, `invalid`). Pure: never throws.
 */
export function decodeMessage(body: Buffer, schemas: SchemaRegistry): Decoded {
  let reading: Reading;
  try {
    reading = schemas.decode(body);
  } catch (err) {
    const kind = err instanceof DecodeError ? err.kind : "invalid";
    return { ok: false, failure: { kind, reason: err instanceof Error ? err.message : String(err) } };
  }
  const problem = readingProblem(reading);
  return problem ? { ok: false, failure: { kind: "invalid", reason: problem } } : { ok: true, reading };
}
