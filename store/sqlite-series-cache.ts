/**
 * `latest` and `devices` of every series for a long-lived reader (a serve worker, the dashboard refreshing): both
 * read the whole `series` rollup, 4,000 rows for 1,000 devices, and most of that cost is its text (ids, unit,
 * quality, tags: SQLite writing it out, V8 making strings of it), which rarely changes, while the numbers change
 * with every batch. So the text is kept here between questions and each question reads, in one statement (one
 * snapshot), the rollup's numbers together with `count(*)` and `max(text_gen)` (migration 4): when those two are
 * what they were, the kept text is exactly the table's, row for row in key order; when not, the text is read again
 * in the same transaction as the numbers. The answer is never older than the question.
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

/** What the kept text was read with: it stands while the table's count and highest generation are these. */
interface Kept {
  readonly count: number;
  readonly gen: number;
  /** Each series' text in key order, as a page's kinds (tags as JSON text); each row's kind is its own. */
  readonly kinds: readonly ReadingKind[];
  readonly kindOfRow: readonly number[];
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

/** Needs a file at schema version 4 or later (the reader checks; older files are read the old way). */
export function seriesCache(db: Database.Database): SeriesCache {
  let kept: Kept | undefined;
  // Numbers as JSON arrays: one parse each is far cheaper than a JS array per row. The ordered subquery selects only
  // the columns used (copying the text columns through it cost a quarter more).
  const numbers = (columns: readonly string[]) =>
    db
      .prepare<[], [number, number | null, ...string[]]>(
        `SELECT count(*), max(text_gen), ${columns.map((c) => `json_group_array(${c})`).join(", ")}
         FROM (SELECT text_gen, ${columns.join(", ")} FROM series ORDER BY device_id, sensor)`,
      )
      .raw();
  const latestNumbers = numbers(["last_ts", "last_value", "last_seq"]);
  const deviceNumbers = numbers(["count", "first_ts", "last_ts", "last_value"]);
  const texts = db
    .prepare<[], string>(
      `SELECT json_group_array(json_array(device_id, sensor, unit, last_quality, last_tags))
       FROM (SELECT * FROM series ORDER BY device_id, sensor)`,
    )
    .pluck();

  const readTexts = (count: number, gen: number): Kept => {
    type Row = [string, string, string | null, Quality, string];
    const kinds = (JSON.parse(texts.get() ?? "[]") as Row[]).map(
      ([device_id, sensor, unit, quality, tags]): ReadingKind => ({ device_id, sensor, unit, quality, tags }),
    );
    if (kinds.length !== count) throw new Error("series changed within one read transaction");
    return {
      count,
      gen,
      kinds,
      kindOfRow: kinds.map((_, i) => i),
      tags: kinds.map((k) => Object.freeze(tagsOf(k.tags))),
    };
  };

  /** The numbers of `statement`, parsed, with the text they go with. */
  const read = (statement: ReturnType<typeof numbers>): { kept: Kept; columns: number[][] } => {
    const parse = (row: [number, number | null, ...string[]]) =>
      (row.slice(2) as string[]).map((c) => JSON.parse(c) as number[]);
    // An aggregate without GROUP BY always gives one row.
    const get = () => statement.get() as [number, number | null, ...string[]];
    const row = get();
    if (kept !== undefined && kept.count === row[0] && kept.gen === (row[1] ?? 0))
      return { kept, columns: parse(row) };
    // The text changed: read it and the numbers again in one transaction, so both are of the same moment.
    return db.transaction(() => {
      const again = get();
      const fresh = readTexts(again[0], again[1] ?? 0);
      kept = fresh;
      return { kept: fresh, columns: parse(again) };
    })();
  };

  return {
    latest() {
      const { kept, columns } = read(latestNumbers);
      const [ts = [], value = [], seq = []] = columns;
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
      const { kept, columns } = read(latestNumbers);
      const [ts = [], value = [], seq = []] = columns;
      return { length: kept.kinds.length, ts, value, seq, kinds: kept.kinds, kind: kept.kindOfRow };
    },

    devicesPage() {
      const { kept, columns } = read(deviceNumbers);
      const [count = [], first_ts = [], last_ts = [], last_value = []] = columns;
      return { length: kept.kinds.length, kinds: kept.kinds, first_ts, last_ts, last_value, count };
    },

    devices() {
      return devicesOfPage(this.devicesPage());
    },
  };
}
