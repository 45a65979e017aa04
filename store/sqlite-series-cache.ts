/**
 * `latest` and `devices` of every series for a reader of a version 5 file (store/sqlite-rollup.ts): both read the
 * whole rollup, 4,000 series for 1,000 devices. Its text (ids, unit, quality, tags) rarely changes, while its
 * numbers change with every batch; so the text is kept here between questions, and each question reads, in one
 * read transaction, every row of `series_numbers` (63 blobs for 4,000 series) together with `count(*)` and
 * `max(text_gen)` of `series`: when those two are what they were, the kept text is exactly the table's, row for row
 * in key order; when not, the text is read again in the same transaction. The answer is never older than the
 * question.
 */
import type Database from "better-sqlite3";
import type { Quality } from "../schemas/index.js";
import {
  type DeviceSummary,
  type DevicesPage,
  devicesOfPage,
  type ReadingKind,
  type ReadingPage,
  type StoredReading,
  tagsOf,
} from "./queries.js";
import { numberRowsReader, SLOT, slotOf } from "./sqlite-rollup.js";

/** What the kept text was read with: it stands while the table's count and highest generation are these. */
interface Kept {
  readonly count: number;
  readonly gen: number;
  /** Each series' text in key order, as a page's kinds (tags as JSON text); each row's kind is its own. */
  readonly kinds: readonly ReadingKind[];
  readonly kindOfRow: readonly number[];
  /** Each series' id, in the same order. */
  readonly ids: readonly number[];
  /** Where each series' numbers are in `series_numbers` (see slotOf): its row, and its place in the row. */
  readonly rowOf: Int32Array;
  readonly atOf: Int32Array;
  /** Each series' tags as an object (frozen: `latest()` hands the same ones out every time). */
  readonly tags: readonly Readonly<Record<string, string>>[];
}

export interface SeriesCache {
  /** The newest reading of every series, ordered by device and sensor. */
  latest(): StoredReading[];
  /**
   * The same as one page of columns: the numbers as read, the kept text as its kinds, so nothing is built per row
   * (and a renderer that keeps text per kind object reuses it from one question to the next).
   */
  latestPage(): ReadingPage;
  /** Every device with its series, ordered by device and sensor. */
  devices(): DeviceSummary[];
  /** The same in columns, the kept text as its kinds. */
  devicesPage(): DevicesPage;
}

/** Needs a file at schema version 5 or later (the reader checks; older files are read the old way). */
export function seriesCache(db: Database.Database): SeriesCache {
  let kept: Kept | undefined;
  const numberRows = numberRowsReader(db);
  const marks = db.prepare<[], [number, number | null]>("SELECT count(*), max(text_gen) FROM series").raw();
  const texts = db
    .prepare<[], string>(
      `SELECT json_group_array(json_array(device_id, sensor, unit, last_quality, last_tags, id))
       FROM (SELECT * FROM series ORDER BY device_id, sensor)`,
    )
    .pluck();

  const readTexts = (count: number, gen: number): Kept => {
    type Row = [string, string, string | null, Quality, string, number];
    const rows = JSON.parse(texts.get() ?? "[]") as Row[];
    if (rows.length !== count) throw new Error("series changed within one read transaction");
    const kinds = rows.map(
      ([device_id, sensor, unit, quality, tags]): ReadingKind => ({ device_id, sensor, unit, quality, tags }),
    );
    const ids = rows.map((r) => r[5]);
    const slots = ids.map(slotOf);
    return {
      count,
      gen,
      kinds,
      kindOfRow: kinds.map((_, i) => i),
      ids,
      rowOf: Int32Array.from(slots, (s) => s.row),
      atOf: Int32Array.from(slots, (s) => s.at),
      tags: kinds.map((k) => Object.freeze(tagsOf(k.tags))),
    };
  };

  /** The kept text (read again when it changed) and every number row, of one moment. */
  const read = db.transaction((): { kept: Kept; rows: Float64Array[] } => {
    const [count, gen] = marks.get() as [number, number | null];
    if (kept === undefined || kept.count !== count || kept.gen !== (gen ?? 0))
      kept = readTexts(count, gen ?? 0);
    return { kept, rows: numberRows() };
  });

  /** The numbers at `at` (see SLOT) of every kept series, in key order. */
  const column = (k: Kept, rows: readonly (Float64Array | undefined)[], at: number): number[] => {
    const n = k.ids.length;
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const f = rows[k.rowOf[i] as number];
      if (f === undefined)
        throw new Error(`series ${k.ids[i]} has no numbers (series_numbers row ${k.rowOf[i]} missing)`);
      out[i] = f[(k.atOf[i] as number) + at] as number;
    }
    return out;
  };
  const seqs = (k: Kept, rows: readonly (Float64Array | undefined)[]): (number | null)[] =>
    column(k, rows, SLOT.SEQ).map((s) => (Number.isNaN(s) ? null : s));

  return {
    latest() {
      const { kept, rows } = read();
      const ts = column(kept, rows, SLOT.LAST);
      const value = column(kept, rows, SLOT.VALUE);
      const seq = seqs(kept, rows);
      return kept.kinds.map(
        (k, i): StoredReading => ({
          device_id: k.device_id,
          sensor: k.sensor,
          ts: ts[i] as number,
          value: value[i] as number,
          unit: k.unit,
          seq: seq[i] ?? null,
          quality: k.quality,
          tags: kept.tags[i] as Readonly<Record<string, string>>,
        }),
      );
    },

    latestPage() {
      const { kept, rows } = read();
      return {
        length: kept.kinds.length,
        ts: column(kept, rows, SLOT.LAST),
        value: column(kept, rows, SLOT.VALUE),
        seq: seqs(kept, rows),
        kinds: kept.kinds,
        kind: kept.kindOfRow,
      };
    },

    devicesPage() {
      const { kept, rows } = read();
      return {
        length: kept.kinds.length,
        kinds: kept.kinds,
        first_ts: column(kept, rows, SLOT.FIRST),
        last_ts: column(kept, rows, SLOT.LAST),
        last_value: column(kept, rows, SLOT.VALUE),
        count: column(kept, rows, SLOT.COUNT),
      };
    },

    devices() {
      return devicesOfPage(this.devicesPage());
    },
  };
}
