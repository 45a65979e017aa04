/**
 * Retention of raw readings on SQLite (`RETENTION`), the body of SqliteStore's delete transaction: old rows go
 * series by series as key ranges, the `series` rollup follows, and the `readings` horizon rises to the cutoff so a
 * reading older than it is refused from then on (its row may have been stored, counted in the tiers and deleted).
 * The tiers keep what they counted.
 */
import type Database from "better-sqlite3";
import type { RollupWriter } from "./sqlite-rollup.js";
import type { TierWriter } from "./sqlite-tiers.js";

/** The function SqliteStore runs in a transaction to delete at most `limit` readings with `ts < cutoff`. */
export function readingsDelete(
  db: Database.Database,
  rollup: RollupWriter | undefined,
  tiers: TierWriter,
): (cutoff: number, limit: number) => number {
  const rangeEnd = db
    .prepare<[string, string, number, number], number>(
      "SELECT ts FROM readings WHERE device_id = ? AND sensor = ? AND ts < ? ORDER BY ts LIMIT 1 OFFSET ?",
    )
    .pluck();
  const deleteRange = db.prepare<[string, string, number]>(
    "DELETE FROM readings WHERE device_id = ? AND sensor = ? AND ts < ?",
  );
  const firstTs = db
    .prepare<[string, string], number>(
      "SELECT ts FROM readings WHERE device_id = ? AND sensor = ? ORDER BY ts LIMIT 1",
    )
    .pluck();
  return (cutoff, limit) => {
    if (rollup === undefined) throw new Error("deleting readings needs the rollup kept (rollups: true)");
    tiers.begin();
    tiers.raise("readings", cutoff);
    rollup.begin();
    let deleted = 0;
    // Every series holding an old row has first_ts < cutoff, and each gives at least one row: `limit` suffice.
    for (const [id, device, sensor] of rollup.olderThan(cutoff, limit)) {
      const left = limit - deleted;
      if (left <= 0) break;
      const end = Math.min(cutoff, rangeEnd.get(device, sensor, cutoff, left) ?? cutoff);
      const n = deleteRange.run(device, sensor, end).changes;
      deleted += n;
      rollup.shrink(id, n, firstTs.get(device, sensor));
    }
    rollup.commit();
    return deleted;
  };
}
