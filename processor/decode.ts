import type { Failure } from "../common/pipeline.js";
import { DecodeError, type Reading, readingProblem, type SchemaRegistry } from "../schemas/index.js";

/** One reading of a message, with what breaks the contract's rules in it, if anything. */
export interface DecodedReading {
  readonly reading: Reading;
  readonly problem: string | undefined;
}

export type Decoded =
  | { readonly ok: true; readonly batch: boolean; readonly readings: readonly DecodedReading[] }
  | { readonly ok: false; readonly failure: Failure };

/**
 * The processor's decode step: a message body becomes its readings (a batch of any batch version, or one reading of
 * any reading version, resolved to the current schema), each checked against the contract's rules; or the failure
 * that sends the whole message to `<QUEUE>.dead` (`not-avro`, `unknown-schema`, `truncated`, `invalid`). Pure:
 * never throws.
 */
export function decodeMessage(body: Buffer, schemas: SchemaRegistry): Decoded {
  let decoded: { readonly readings: readonly Reading[]; readonly batch: boolean };
  try {
    decoded = schemas.decodeMessage(body);
  } catch (err) {
    const kind = err instanceof DecodeError ? err.kind : "invalid";
    return { ok: false, failure: { kind, reason: err instanceof Error ? err.message : String(err) } };
  }
  return {
    ok: true,
    batch: decoded.batch,
    readings: decoded.readings.map((reading) => ({ reading, problem: readingProblem(reading) })),
  };
}
