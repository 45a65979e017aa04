/**
 * What tells a duplicate from a conflict, for every backend: a reading whose key (device_id, sensor, ts) is stored
 * already is a duplicate when its measurement (value, unit, seq, quality, tags) is the same as the stored one, and
 * a conflict when it differs. Both store/sqlite.ts and store/postgres.ts use it.
 */
import { DEFAULT_QUALITY, type Reading } from "../schemas/index.js";
import type { Conflict } from "./store.js";

/** How the `tags` column stores a reading without tags. */
export const NO_TAGS = "{}";

/** The stored columns a resend must match, as the `readings` table holds them (`tags` as JSON text). */
export interface StoredMeasurement {
  readonly value: number;
  readonly unit: string | null;
  readonly seq: number | null;
  readonly quality: string;
  readonly tags: string;
}

/** The columns a reading is stored with: defaults of reading.v2.avsc for quality and tags. */
export function measurementOf(r: Reading): StoredMeasurement {
  return {
    value: r.value,
    unit: r.unit,
    seq: r.seq,
    quality: r.quality ?? DEFAULT_QUALITY,
    tags: r.tags === undefined ? NO_TAGS : JSON.stringify(r.tags),
  };
}

/** Whether a resend carries the measurement already stored (a duplicate) rather than another one (a conflict). */
export function sameMeasurement(a: StoredMeasurement, b: StoredMeasurement): boolean {
  return (
    a.value === b.value &&
    a.unit === b.unit &&
    a.seq === b.seq &&
    a.quality === b.quality &&
    a.tags === b.tags
  );
}

function describe(m: StoredMeasurement): string {
  const parts = [`value ${m.value}`];
  if (m.unit !== null) parts.push(`unit ${m.unit}`);
  if (m.seq !== null) parts.push(`seq ${m.seq}`);
  if (m.quality !== DEFAULT_QUALITY) parts.push(`quality ${m.quality}`);
  if (m.tags !== NO_TAGS) parts.push(`tags ${m.tags}`);
  return parts.join(", ");
}

/** The conflict of the reading at `index` with the row kept, both measurements in the operator's words. */
export function conflictOf(index: number, r: Reading, kept: StoredMeasurement): Conflict {
  return {
    index,
    reason:
      `conflicting reading for ${r.device_id}/${r.sensor} at ${new Date(r.ts).toISOString()} (${r.ts}): ` +
      `stored ${describe(kept)}; this one ${describe(measurementOf(r))}`,
  };
}
