/**
 * The contract's times and bucket widths for queries (docs/contract.md, "Queries"), parsed in one place for the
 * `query` command and the HTTP API. Pure: "now" is the caller's.
 */
import { ISO_WITH_OFFSET } from "../schemas/index.js";

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const DAY_MS = UNIT_MS.d;
const RELATIVE = /^-(\d{1,9})(s|m|h|d|w)$/;
const EPOCH_MS = /^\d{1,16}$/;
/** The last millisecond a JavaScript Date can hold. */
const MAX_DATE_MS = 8_640_000_000_000_000;
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
const BUCKET = /^(\d{1,4})(m|h|d)$/;

/** What {@link parseTime} accepts, in words, for error messages. */
export const TIME_RULE =
  "must be an ISO-8601 time with offset (2026-01-31T12:00:00Z), a UTC date (2026-01-31), epoch ms, now, or relative like -15m, -24h, -7d";

/** What {@link parseBucket} accepts, in words. */
export const BUCKET_RULE = "must be minutes, hours or days that divide a day, e.g. 1m, 5m, 15m, 1h, 1d";

/**
 * A query time as epoch ms: an ISO-8601 date-time with an offset, a date alone (midnight UTC), an integer of epoch
 * milliseconds, `now`, or `-<n><s|m|h|d|w>` before `now`. Throws an Error whose message is {@link TIME_RULE}, or
 * says the date does not exist, when `raw` is none of these.
 */
export function parseTime(raw: string, now: number): number {
  const text = raw.trim();
  if (text === "now") return now;
  const relative = RELATIVE.exec(text);
  if (relative) {
    const ts = now - Number(relative[1]) * UNIT_MS[relative[2] as keyof typeof UNIT_MS];
    if (ts < -MAX_DATE_MS) throw new Error(`reaches before the earliest date (${TIME_RULE})`);
    return ts;
  }
  if (EPOCH_MS.test(text) && Number(text) <= MAX_DATE_MS) return Number(text);
  if (ISO_WITH_OFFSET.test(text) || DATE_ONLY.test(text)) {
    const ts = Date.parse(text);
    if (Number.isNaN(ts) || (DATE_ONLY.test(text) && new Date(ts).toISOString().slice(0, 10) !== text)) {
      throw new Error(`is not a valid date (${TIME_RULE})`);
    }
    return ts;
  }
  throw new Error(TIME_RULE);
}

/**
 * A bucket width in ms from `1m`, `5m`, `15m`, `1h`, `1d` and the like: whole minutes, hours or days that divide a
 * day evenly (so buckets start on the same UTC times every day), or `1d`. Throws with {@link BUCKET_RULE}.
 */
export function parseBucket(raw: string): number {
  const m = BUCKET.exec(raw.trim());
  if (!m) throw new Error(BUCKET_RULE);
  const width = Number(m[1]) * UNIT_MS[m[2] as "m" | "h" | "d"];
  if (width === 0 || width > DAY_MS || DAY_MS % width !== 0) throw new Error(BUCKET_RULE);
  return width;
}

/** The one-line complaint about a range whose start is after its end, or undefined when it is a range. */
export function rangeProblem(from: number | undefined, to: number | undefined): string | undefined {
  if (from !== undefined && to !== undefined && from > to) {
    return `from (${new Date(from).toISOString()}) is after to (${new Date(to).toISOString()})`;
  }
  return undefined;
}
