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
import {
  type DevicePage,
  type DeviceSummary,
  groupDevices,
  pageRange,
  type StoredReading,
  tagsOf,
} from "../queries.js";
import { floatsOf, numbersOf, SERIES_PER_ROW } from "../sqlite-rollup.js";

type Text = [
  device_id: string,
  sensor: string,
  id: number,
  unit: string | null,
  quality: Quality,
  tags: string,
];

export interface SummaryQueries {
  /** The newest reading of every series (of `device` alone when given) of the devices of `page`. */
  latest(device?: string, page?: DevicePage): StoredReading[];
  /** Every device of `page` with its series, ordered by device and sensor; `count` is exact. */
  devices(page?: DevicePage): DeviceSummary[];
}

/** The first index of `texts` (sorted by device) whose device is past `id` (or at it, when `inclusive`). */
function firstAt(texts: readonly Text[], id: string, inclusive: boolean): number {
  let lo = 0;
  let hi = texts.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const d = (texts[mid] as Text)[0];
    if (d > id || (inclusive && d === id)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The texts of the series of the devices of `page` (of `device` alone when given), in their order. */
function pageOf(texts: readonly Text[], page: DevicePage, device?: string): readonly Text[] {
  if (device !== undefined) {
    const at = firstAt(texts, device, true);
    return pageOf(texts.slice(at, firstAt(texts, device, false)), page);
  }
  if (page.limit === undefined && page.after === undefined && page.match === undefined) return texts;
  const range = pageRange(page);
  let end = firstAt(texts, range.from, !range.fromExclusive);
  const begin = end;
  let devices = 0;
  const limit = page.limit ?? Number.POSITIVE_INFINITY;
  while (end < texts.length) {
    const d = (texts[end] as Text)[0];
    if (range.to !== undefined && d >= range.to) break;
    if (d !== (texts[end - 1] as Text | undefined)?.[0] || end === begin) {
      if (devices === limit) break;
      devices++;
    }
    end++;
  }
  return texts.slice(begin, end);
}

export function summaryQueries(db: Database.Database): SummaryQueries {
  const chunk = db.prepare<[number], Buffer>("SELECT data FROM series_numbers WHERE chunk = ?").pluck();
  const marks = db.prepare<[], [number, number | null]>("SELECT count(*), max(text_gen) FROM series").raw();
  const texts = db
    .prepare<[], Text>(
      "SELECT device_id, sensor, id, unit, last_quality, last_tags FROM series ORDER BY device_id, sensor",
    )
    .raw();
  let kept: { mark: string; texts: Text[] } | undefined;
  /**
   * The texts of the series of a page, and the rows of numbers (see numbersOf) they need, of one moment: a page of
   * a large fleet reads its own rows, not every one.
   */
  const read = db.transaction((page: DevicePage, device?: string) => {
    const mark = (marks.get() ?? []).join();
    if (kept?.mark !== mark) kept = { mark, texts: texts.all() };
    const picked = pageOf(kept.texts, page, device);
    const rows: Float64Array[] = [];
    for (const [, , id] of picked) {
      const n = Math.floor(id / SERIES_PER_ROW);
      if (rows[n] !== undefined) continue;
      const data = chunk.get(n);
      if (data !== undefined) rows[n] = floatsOf(data);
    }
    return { texts: picked, rows };
  });

  return {
    latest(device, page = {}) {
      const { texts, rows } = read(page, device);
      return texts.map(([device_id, sensor, id, unit, quality, tags]) => {
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
      });
    },
    devices(page = {}) {
      const { texts, rows } = read(page);
      return groupDevices(
        texts.length,
        (i) => texts[i]?.[0] ?? "",
        (i) => {
          const [, sensor, id, unit] = texts[i] as Text;
          const { first_ts, last_ts, last_value, count } = numbersOf(rows, id);
          return { sensor, unit, first_ts, last_ts, last_value, count };
        },
        (i) => numbersOf(rows, (texts[i] as Text)[2]),
      );
    },
  };
}
