/**
 * `latest` and `devices` on the SQLite file: both read the per-series rollup (store/sqlite-rollup.ts, kept by the
 * processor in the same transaction as the rows), one row per series, never the readings themselves.
 *
 * The rollup's text (key, unit, quality, tags: 4,000 rows for 1,000 devices) rarely changes while its numbers
 * change with every batch, and reading the text took 5-12 ms a question where the target is 5: so a reader keeps
 * the text between questions, and reads it again when `count(*)` or `max(text_gen)` of `series` changed, which
 * they do whenever a text row is added, changed or removed (migration 4). Both are read in the same transaction
 * as the numbers, so an answer is never older than the question.
 */
import type Database from "better-sqlite3";
import type { Quality } from "../../schemas/index.js";
import { type DeviceSummary, groupDevices, type StoredReading, tagsOf } from "../queries.js";
import { numberRowsReader, numbersOf } from "../sqlite-rollup.js";

type Text = [
  device_id: string,
  sensor: string,
  id: number,
  unit: string | null,
  quality: Quality,
  tags: string,
];

export interface SummaryQueries {
  /** The newest reading of every series (of `device` alone when given), ordered by device and sensor. */
  latest(device?: string): StoredReading[];
  /** Every device with its series, ordered by device and sensor; `count` is exact. */
  devices(): DeviceSummary[];
}

export function summaryQueries(db: Database.Database): SummaryQueries {
  const numberRows = numberRowsReader(db);
  const marks = db.prepare<[], [number, number | null]>("SELECT count(*), max(text_gen) FROM series").raw();
  const texts = db
    .prepare<[], Text>(
      "SELECT device_id, sensor, id, unit, last_quality, last_tags FROM series ORDER BY device_id, sensor",
    )
    .raw();
  let kept: { mark: string; texts: Text[] } | undefined;
  /** Every series' text, and the rows of numbers (see numbersOf), of one moment. */
  const read = db.transaction(() => {
    const mark = (marks.get() ?? []).join();
    if (kept?.mark !== mark) kept = { mark, texts: texts.all() };
    return { texts: kept.texts, rows: numberRows() };
  });

  return {
    latest(device) {
      const { texts, rows } = read();
      return (device === undefined ? texts : texts.filter((t) => t[0] === device)).map(
        ([device_id, sensor, id, unit, quality, tags]) => {
          const n = numbersOf(rows, id);
          return {
            device_id,
            sensor,
            ts: n.last_ts,
            value: n.last_value,
            unit,
            seq: n.last_seq,
            quality,
            tags: tagsOf(tags),
          };
        },
      );
    },
    devices() {
      const { texts, rows } = read();
      return groupDevices(
        texts.length,
        (i) => texts[i]?.[0] ?? "",
        (i) => {
          const [, sensor, id, unit] = texts[i] as Text;
          const { first_ts, last_ts, last_value, count } = numbersOf(rows, id);
          return { sensor, unit, first_ts, last_ts, last_value, count };
        },
      );
    },
  };
}
