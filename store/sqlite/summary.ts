/**
 * `latest` and `devices` on the SQLite file: both read the per-series rollup (store/sqlite-rollup.ts, kept by the
 * processor in the same transaction as the rows), one row per series, never the readings themselves.
 */
import type Database from "better-sqlite3";
import type { Quality } from "../../schemas/index.js";
import { type DeviceSummary, groupDevices, type StoredReading, tagsOf } from "../queries.js";
import { rollupReader } from "../sqlite-rollup.js";

export interface SummaryQueries {
  /** The newest reading of every series (of `device` alone when given), ordered by device and sensor. */
  latest(device?: string): StoredReading[];
  /** Every device with its series, ordered by device and sensor; `count` is exact. */
  devices(): DeviceSummary[];
}

export function summaryQueries(db: Database.Database): SummaryQueries {
  const read = rollupReader(db);
  return {
    latest(device) {
      const all = read();
      return (device === undefined ? all : all.filter((s) => s.device_id === device)).map((s) => ({
        device_id: s.device_id,
        sensor: s.sensor,
        ts: s.last_ts,
        value: s.last_value,
        unit: s.unit,
        seq: s.last_seq,
        quality: s.last_quality as Quality,
        tags: tagsOf(s.last_tags),
      }));
    },
    devices() {
      const all = read();
      return groupDevices(
        all.length,
        (i) => all[i]?.device_id ?? "",
        (i) => {
          const { sensor, unit, first_ts, last_ts, last_value, count } = all[i] as (typeof all)[number];
          return { sensor, unit, first_ts, last_ts, last_value, count };
        },
      );
    },
  };
}
