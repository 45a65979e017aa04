/** What the SQLite questions share: the sensors of a device. */
import type Database from "better-sqlite3";

/**
 * The sensors of a device in name order among the rows of `table` (`readings`, or a rollup tier whose rows outlive
 * raw retention), found by skipping from one key prefix to the next (a seek each).
 */
export function sensorsOf(db: Database.Database, table = "readings"): (device: string) => string[] {
  const select = db
    .prepare<{ device: string }, string>(
      `WITH RECURSIVE s(sensor) AS (
         SELECT (SELECT min(sensor) FROM ${table} WHERE device_id = @device)
         UNION ALL
         SELECT (SELECT min(sensor) FROM ${table} WHERE device_id = @device AND sensor > s.sensor) FROM s
         WHERE s.sensor IS NOT NULL)
       SELECT sensor FROM s WHERE sensor IS NOT NULL`,
    )
    .pluck();
  return (device) => select.all({ device });
}
