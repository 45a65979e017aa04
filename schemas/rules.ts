/**
 * The contract's rules for a reading that neither JSON nor Avro can check (docs/contract.md, "MQTT input"),
 * written once: the gateway applies them to what devices send, the simulator's settings and the CLI's id settings
 * use them, and the processor applies {@link readingProblem} to every decoded reading, from whichever writer.
 * The id rule lives in `common/ids.ts`, below the settings that use it too; it is exported here with the others.
 * No imports beyond that and types, so nothing here loads the Avro codec.
 */
import { ID_PATTERN, ID_RULE, idFrom, MAX_ID_LENGTH } from "../common/ids.js";
import type { Reading } from "./reading.js";

export { ID_PATTERN, ID_RULE, idFrom, MAX_ID_LENGTH };

/** Earliest measurement time accepted, 2000-01-01T00:00:00Z: anything before is a device clock never set. */
export const MIN_TS = Date.UTC(2000, 0, 1);

/**
 * An ISO-8601 date and time with a UTC offset (`Z`, `+hh:mm` or `+hhmm`), seconds and their fraction optional,
 * e.g. `2026-01-31T12:00:00Z`. A time without an offset is refused: its meaning depends on the reader's zone.
 * The pattern checks the shape only; {@link parseTimestamp} also checks that the day and the time exist.
 */
export const ISO_WITH_OFFSET =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/i;

/** {@link ISO_WITH_OFFSET} with its fields captured: year, month, day, hour, minute, second, fraction, offset. */
const ISO_FIELDS =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-](\d{2}):?(\d{2}))$/i;

/** Days in `month` (1-12) of `year`, leap years by the Gregorian rule. */
function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * Why the fields of an ISO time that has the right shape name no real instant, or undefined when they do. A day or
 * hour that does not exist (`2025-02-30`, `T24:00`, minute or second 60) is refused rather than shifted into the
 * next month or day, as `Date.parse` would; so is a fraction that carries more than milliseconds (`.1234`; `.1230`
 * is fine), because two readings 0.1 ms apart would collide on one key (device, sensor, ts in ms).
 */
function isoProblem(fields: RegExpExecArray): string | undefined {
  const [, y, mo, d, h, mi, s = "00", fraction = "", , offH = "00", offM = "00"] = fields;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12) return `names month ${mo}, which does not exist (01 to 12)`;
  if (day < 1 || day > daysInMonth(year, month)) {
    return `names ${y}-${mo}-${d}, a day that does not exist (${y}-${mo} has ${daysInMonth(year, month)} days)`;
  }
  if (Number(h) > 23) return `names hour ${h}, which does not exist (00 to 23)`;
  if (Number(mi) > 59) return `names minute ${mi}, which does not exist (00 to 59)`;
  if (Number(s) > 59)
    return `names second ${s}, which does not exist (00 to 59; leap seconds are not accepted)`;
  if (Number(offH) > 23 || Number(offM) > 59) return `has an offset that does not exist`;
  if (/[1-9]/.test(fraction.slice(3))) {
    return `has .${fraction}: fractional seconds finer than milliseconds are not accepted`;
  }
  return undefined;
}

/**
 * A time of measurement as the contract allows it: an integer of epoch milliseconds (a safe integer) or an
 * ISO-8601 string with an offset ({@link ISO_WITH_OFFSET}) naming a day and time that exist, to the millisecond at
 * most. Returns the epoch milliseconds, or, as a string, why `raw` is not such a time, worded to follow the field's
 * name (`ts <reason>`). Bounds such as {@link MIN_TS} are the caller's: they differ between a device's reading and a
 * setting.
 */
export function parseTimestamp(raw: unknown): number | string {
  if (typeof raw === "number") {
    return Number.isSafeInteger(raw) ? raw : "must be an integer of epoch milliseconds or an ISO-8601 string";
  }
  if (typeof raw !== "string") return "must be an integer of epoch milliseconds or an ISO-8601 string";
  const fields = ISO_FIELDS.exec(raw);
  if (!fields) return "string must be ISO-8601 with a UTC offset, e.g. 2026-01-31T12:00:00Z";
  const problem = isoProblem(fields);
  if (problem !== undefined) return `${JSON.stringify(raw)} ${problem}`;
  const ts = Date.parse(raw);
  return Number.isNaN(ts) ? "is not a valid date" : ts;
}

/**
 * What the contract forbids in a decoded reading and Avro's types cannot express: `device_id` and `sensor` must
 * match {@link ID_PATTERN} and `value` must be finite. Returns the reason (`device_id breaks the id rules`,
 * `sensor breaks the id rules`, `value is not a finite number`, a NUL in `unit` or a tag value, the first that
 * applies), or undefined when the
 * reading keeps these rules. Meant for readings from any writer, not only this project's gateway.
 */
export function readingProblem(r: Reading): string | undefined {
  if (!ID_PATTERN.test(r.device_id)) return "device_id breaks the id rules";
  if (!ID_PATTERN.test(r.sensor)) return "sensor breaks the id rules";
  if (!Number.isFinite(r.value)) return "value is not a finite number";
  if (r.unit !== null) {
    const nul = nulProblem("unit", r.unit);
    if (nul) return nul;
  }
  // for...in allocates nothing for the usual empty tags: this runs for every reading the processor decodes.
  for (const name in r.tags) {
    const nul = nulProblem(`tag ${name}`, r.tags[name] as string);
    if (nul) return nul;
  }
  return undefined;
}

/**
 * Text every store can keep: PostgreSQL's `text` refuses U+0000, and a batch it refuses for its data would be held
 * and retried, never stored. So a unit or tag value holding it is refused where it arrives (gateway) and set aside
 * where it is decoded (processor). Returns the reason, or undefined.
 */
export function nulProblem(field: string, text: string): string | undefined {
  return text.includes("\u0000")
    ? `${field} contains a NUL character (U+0000), which the stores cannot keep`
    : undefined;
}
