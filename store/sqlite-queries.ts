/**
 * The analysts' queries ({@link ReadingQueries}) on the SQLite file, opened read-only. Every statement walks the
 * primary key (device_id, sensor, ts) of the WITHOUT ROWID table: a series is a contiguous range of it, so a time
 * range is one index seek and a scan of exactly its rows, and the distinct series are found by skipping from one
 * key prefix to the next (one seek each) instead of reading the table. `devices` and `latest` read the per-series
 * rollup (store/sqlite-rollup.ts, kept by the processor in the same transaction as the rows) instead of the rows.
 */
import type Database from "better-sqlite3";
import { running } from "../common/pipeline.js";
import type { Quality } from "../schemas/index.js";
import {
  type Bucket,
  type BucketPoint,
  chartBucketWidth,
  groupDevices,
  pageOfRows,
  type RawPoint,
  type ReadingKind,
  type ReadingPage,
  type ReadingQueries,
  type ReadingRow,
  type ReadingsQuery,
  readingOfRow,
  readingsOfPages,
  type SeriesPoint,
  type SeriesQuery,
  type StatsQuery,
  slicePage,
} from "./queries.js";
import { openDatabase, seriesFromReadings } from "./sqlite.js";
import { seriesCache } from "./sqlite-series-cache.js";

export type { ReadingQueries } from "./queries.js";

/** Bounds standing for "all time" in statements that always take a range. */
const MIN_TIME = Number.MIN_SAFE_INTEGER;
const MAX_TIME = Number.MAX_SAFE_INTEGER;
/** Rows of a series read per statement while streaming: the first page is small so `--limit 10` reads little. */
const FIRST_PAGE = 256;
/** Larger pages make more garbage live at once, which V8 promotes and keeps: 1,024 rows kept an export of 10M rows near 110 MiB peak RSS (8,192: 170 MiB). */
const MAX_PAGE = 1_024;
/** Buckets of a series computed per statement while streaming `stats` in SQL. */
const BUCKETS_PER_PAGE = 4_096;
/** Rows (ts, value) of a series read per statement when buckets are computed here. */
const POINTS_PAGE = 8_192;
/**
 * Rows a bucket holds on average above which SQLite aggregates them (GROUP BY) rather than hand them over: a row
 * handed over costs about 1 µs, a bucket from GROUP BY about 5 µs (its row out, and a seek for its `last`).
 */
const DENSE_ROWS_PER_BUCKET = 16;
/**
 * Page cache per connection. Small, because it rarely helps: a read transaction that finds the log changed by the
 * processor (every batch, under ingest) starts with an empty cache anyway, and an export reads each page once;
 * memory is what a long export or several serve workers must keep constant.
 */
export const DEFAULT_CACHE_KIB = 8_192;

/**
 * One page of a series in columns (see `page` in sqliteQueries): ts, value and seq as JSON arrays; how many rows
 * differ from the first in unit, quality or tags; the first row's unit, quality and tags as a JSON array.
 */
type PageColumns = [string, string, string, number, string | null];

/** The newest row of a series as `latest` selects it, in raw mode: device_id, sensor, ts, value, unit, seq, quality, tags. */
type LatestRow = ReadingRow;

const EMPTY_PAGE: ReadingPage = { length: 0, ts: [], value: [], seq: [], kinds: [], kind: undefined };

/**
 * Where a paged walk of one series stands: its current page and the bound of the next. Each page is one statement
 * (its own read transaction), so a long walk holds no snapshot open between pages.
 */
class SeriesCursor {
  page: ReadingPage = EMPTY_PAGE;
  /** Rows of `page` handed on already. */
  at = 0;
  /** Where the kinds of `page` start in the kinds of the merged page being built; -1 when not there yet. */
  base = -1;
  #size = FIRST_PAGE;
  #done = false;

  constructor(
    private readonly fetch: (from: number, to: number, limit: number) => ReadingPage,
    private from: number,
    private to: number,
    private readonly asc: boolean,
  ) {}

  /** The rest of the current page, or the next page; empty at the end. */
  nextPage(): ReadingPage {
    if (this.at >= this.page.length && !this.load()) return EMPTY_PAGE;
    const rest = this.at === 0 ? this.page : slicePage(this.page, this.at, this.page.length);
    this.at = this.page.length;
    return rest;
  }

  /** Reads the next page into `page`; false at the end of the series. */
  load(): boolean {
    this.at = 0;
    this.base = -1;
    if (this.#done) {
      this.page = EMPTY_PAGE;
      return false;
    }
    this.page = this.fetch(this.from, this.to, this.#size);
    if (this.page.length < this.#size) this.#done = true;
    this.#size = Math.min(this.#size * 2, MAX_PAGE);
    const last = this.page.ts[this.page.length - 1];
    if (last === undefined) return false;
    // The key is unique per series, so the next page starts strictly after the last row read.
    if (this.asc) this.from = last + 1;
    else this.to = last;
    return true;
  }
}

/**
 * Opens the SQLite file at `path` read-only for {@link ReadingQueries}; rejects with a one-line reason when the file
 * is missing or holds no `readings` table. A file the processor has not migrated to schema version 2 answers with
 * the version 2 defaults (`quality` good, `tags` {}).
 */
export async function openSqliteQueries(
  path: string,
  opts: { readonly cacheKiB?: number } = {},
): Promise<ReadingQueries> {
  let db: Database.Database;
  try {
    db = openDatabase(path, { readonly: true });
  } catch (err) {
    throw new Error(`cannot open ${path}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  try {
    return sqliteQueries(db, opts.cacheKiB ?? DEFAULT_CACHE_KIB);
  } catch (err) {
    db.close();
    throw err;
  }
}

function sqliteQueries(db: Database.Database, cacheKiB: number): ReadingQueries {
  const version = db.pragma("user_version", { simple: true }) as number;
  const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'").get();
  if (version < 1 || hasTable === undefined) throw new Error("not a telemetry database: no readings table");
  // Version 1 files predate quality and tags; their rows read as the defaults migration 2 gives them.
  const ROW = `device_id, sensor, ts, value, unit, seq, ${version >= 2 ? "quality, tags" : "'good', '{}'"}`;
  db.pragma(`cache_size = -${cacheKiB}`);
  // No memory map: mapped pages count in the reader's RSS and would grow with every page an export touches.
  db.pragma("mmap_size = 0");

  const sensorsOf = db
    .prepare<{ device: string }, string>(
      `WITH RECURSIVE s(sensor) AS (
         SELECT (SELECT min(sensor) FROM readings WHERE device_id = @device)
         UNION ALL
         SELECT (SELECT min(sensor) FROM readings WHERE device_id = @device AND sensor > s.sensor) FROM s
         WHERE s.sensor IS NOT NULL)
       SELECT sensor FROM s WHERE sensor IS NOT NULL`,
    )
    .pluck();
  // A page of one series comes as columns: ts, value and seq as one JSON array each (numbers parse far faster than
  // an array per row with its strings), and unit, quality and tags once when the page holds one of each, as a
  // series almost always does; a page where one of them changes is read as one JSON array of rows instead. Both
  // give the same rows (`test/integration/query-store.test.ts` compares them with `readings()`).
  const QUALITY = version >= 2 ? "quality" : "'good'";
  const TAGS = version >= 2 ? "tags" : "'{}'";
  // Whether the page holds one unit, quality and tags: each row is compared with the page's first (one more seek)
  // where it is read, which costs far less than min() and max() of each over the page (the statement with its
  // JSON.parse: 0.7-1.3 µs a row instead of 0.9-1.7, over the first 30 devices of the 10M-row bench file).
  type PageRange = { device: string; sensor: string; from: number; to: number; limit: number };
  const page = (order: "ASC" | "DESC") => {
    const where = `FROM readings WHERE device_id = @device AND sensor = @sensor AND ts >= @from AND ts < @to ORDER BY ts ${order}`;
    const KIND = `unit, ${QUALITY}, ${TAGS}`;
    const columns = db
      .prepare<PageRange, PageColumns>(
        `SELECT json_group_array(ts), json_group_array(value), json_group_array(seq), total(odd),
                (SELECT json_array(${KIND}) ${where} LIMIT 1)
         FROM (SELECT ts, value, seq, ((${KIND}) IS NOT (SELECT ${KIND} ${where} LIMIT 1)) AS odd
               ${where} LIMIT @limit)`,
      )
      .raw();
    const rows = db
      .prepare<PageRange, string>(
        `SELECT json_group_array(json_array(${ROW})) FROM (SELECT ${ROW} ${where} LIMIT @limit)`,
      )
      .pluck();
    return (device: string, sensor: string, from: number, to: number, limit: number): ReadingPage => {
      const range = { device, sensor, from, to, limit };
      const c = columns.get(range);
      if (c === undefined || c[0] === "[]") return EMPTY_PAGE;
      const [tsText, valueText, seqText, odd, first] = c;
      if (odd !== 0 || first === null) return pageOfRows(JSON.parse(rows.get(range) ?? "[]") as ReadingRow[]);
      const [unit, quality, tags] = JSON.parse(first) as [string | null, Quality, string];
      const ts = JSON.parse(tsText) as number[];
      return {
        length: ts.length,
        ts,
        value: JSON.parse(valueText) as number[],
        seq: JSON.parse(seqText) as (number | null)[],
        kinds: [{ device_id: device, sensor, unit, quality, tags }],
        kind: undefined,
      };
    };
  };
  const pageAsc = page("ASC");
  const pageDesc = page("DESC");
  // Both from the rollup the processor keeps: one row per series, no read of `readings`. From version 5 on its
  // numbers are blobs (store/sqlite-rollup.ts), read with the kept text by seriesCache; a file of version 3 or 4
  // (not yet migrated by a processor) has them as columns of `series`, and an older file gets `series` as a
  // temporary view over the rows, slow but the same answers.
  const cache = version >= 5 ? seriesCache(db) : undefined;
  if (version < 3) {
    db.exec(`CREATE TEMP VIEW series (device_id, sensor, unit, first_ts, last_ts, last_value, last_seq, last_quality,
      last_tags, count) AS ${seriesFromReadings(version >= 2 ? undefined : "'good', '{}'")}`);
  }
  // Both answers are thousands of rows read whole; better-sqlite3 builds a JS array per row, value by value, which
  // costs more than SQLite's reading them. SQLite writes them as one JSON array instead (its reals round-trip) and
  // one JSON.parse makes the arrays: about half the time of `.raw().all()` for the 4,000 rows of `latest`.
  const jsonRows = (select: string, from: string) =>
    cache !== undefined
      ? undefined
      : db
          .prepare<{ device?: string }, string>(
            `SELECT json_group_array(json_array(${select})) FROM (SELECT * FROM series ${from} ORDER BY device_id, sensor)`,
          )
          .pluck();
  const latest = (where: string) =>
    jsonRows("device_id, sensor, last_ts, last_value, unit, last_seq, last_quality, last_tags", where);
  const latestAll = latest("");
  const latestOfDevice = latest("WHERE device_id = @device");
  const summaries = jsonRows("device_id, sensor, count, first_ts, last_ts, last_value, unit", "");
  /** Reads the rollup of a version 3 or 4 file, saying plainly when a processor has migrated it meanwhile. */
  const oldRollup = <T>(read: () => T): T => {
    try {
      return read();
    } catch (err) {
      const now = db.pragma("user_version", { simple: true }) as number;
      if (now === version) throw err;
      throw new Error(
        `the database was migrated from schema version ${version} to ${now} since this reader opened it; open it again (restart telemetry serve)`,
        { cause: err },
      );
    }
  };
  const span = db
    .prepare<[string, string, number, number], [number | null, number | null]>(
      "SELECT min(ts), max(ts) FROM readings WHERE device_id = ? AND sensor = ? AND ts >= ? AND ts < ?",
    )
    .raw();
  type Range = { device: string; sensor: string; from: number; to: number; every: number };
  // `last` by the bucket's newest ts: SQLite's bare-column rule is unreliable with several min()/max() at once.
  const buckets = db
    .prepare<Range, [number, number, number, number, number, number]>(
      `SELECT g.start, g.n, g.lo, g.hi, g.mean,
              (SELECT value FROM readings WHERE device_id = @device AND sensor = @sensor AND ts = g.last_ts)
       FROM (SELECT ts - ts % @every AS start, count(*) AS n, min(value) AS lo, max(value) AS hi,
                    avg(value) AS mean, max(ts) AS last_ts
             FROM readings WHERE device_id = @device AND sensor = @sensor AND ts >= @from AND ts < @to
             GROUP BY start) AS g
       ORDER BY g.start`,
    )
    .raw();
  // (ts, value) of a series as two JSON arrays: one parse each instead of an array per row.
  const points = db
    .prepare<[string, string, number, number, number], [string, string]>(
      `SELECT json_group_array(ts), json_group_array(value) FROM (
         SELECT ts, value FROM readings WHERE device_id = ? AND sensor = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?)`,
    )
    .raw();
  const pointsOf = (device: string, sensor: string, from: number, to: number, limit: number) => {
    const [ts, values] = points.get(device, sensor, from, to, limit) ?? ["[]", "[]"];
    return { ts: JSON.parse(ts) as number[], values: JSON.parse(values) as number[] };
  };

  const boundsOf = (device: string, sensor: string, from = MIN_TIME, to = MAX_TIME) => {
    const [lo, hi] = span.get(device, sensor, from, to) ?? [null, null];
    return lo === null || hi === null ? undefined : { lo, hi: hi + 1 };
  };

  type BucketRow = [start: number, count: number, min: number, max: number, mean: number, last: number];

  /** Buckets of `every` ms in [from, to) by SQLite's GROUP BY, a page of buckets per statement. */
  function* groupedBuckets(device: string, sensor: string, from: number, to: number, every: number) {
    const bounds = boundsOf(device, sensor, from, to);
    if (bounds === undefined) return;
    const pageMs = every * BUCKETS_PER_PAGE;
    for (let at = bounds.lo - (bounds.lo % every); at < bounds.hi; at += pageMs) {
      const range = { device, sensor, from: Math.max(at, from), to: Math.min(at + pageMs, to), every };
      yield* buckets.all(range) as BucketRow[];
    }
  }

  /**
   * Non-empty buckets of `every` ms in [from, to), in order. Sparse series (a few rows a bucket, as most charts
   * and hourly stats are) are aggregated here from their rows read in pages; once a series proves dense the rest
   * of the range, from the bucket in progress on, is left to SQLite's GROUP BY.
   */
  function* bucketRows(device: string, sensor: string, from: number, to: number, every: number) {
    let at = from;
    let rows = 0;
    let done = 0;
    let cur:
      | { start: number; count: number; min: number; max: number; sum: number; last: number }
      | undefined;
    const finished = (b: NonNullable<typeof cur>): BucketRow => [
      b.start,
      b.count,
      b.min,
      b.max,
      b.sum / b.count,
      b.last,
    ];
    for (;;) {
      const { ts, values } = pointsOf(device, sensor, at, to, POINTS_PAGE);
      for (let i = 0; i < ts.length; i++) {
        const t = ts[i] as number;
        const v = values[i] as number;
        // As SQLite's `ts - ts % every`: the remainder keeps the sign of ts.
        const start = t - (t % every);
        if (cur === undefined || cur.start !== start) {
          if (cur !== undefined) {
            yield finished(cur);
            done++;
          }
          cur = { start, count: 0, min: v, max: v, sum: 0, last: v };
        }
        cur.count++;
        if (v < cur.min) cur.min = v;
        if (v > cur.max) cur.max = v;
        cur.sum += v;
        cur.last = v;
      }
      rows += ts.length;
      const last = ts.at(-1);
      if (ts.length < POINTS_PAGE || last === undefined || cur === undefined) break;
      at = last + 1;
      if (rows > DENSE_ROWS_PER_BUCKET * (done + 1)) {
        yield* groupedBuckets(device, sensor, Math.max(cur.start, from), to, every);
        return;
      }
    }
    if (cur !== undefined) yield finished(cur);
  }

  async function* readingPages(q: ReadingsQuery): AsyncGenerator<ReadingPage> {
    const asc = q.order === "asc";
    const page = asc ? pageAsc : pageDesc;
    const sensors = q.sensor === undefined ? sensorsOf.all({ device: q.device }) : [q.sensor];
    const cursors = sensors.map(
      (sensor) =>
        new SeriesCursor(
          (from, to, limit) => page(q.device, sensor, from, to, limit),
          q.from ?? MIN_TIME,
          q.to ?? MAX_TIME,
          asc,
        ),
    );
    let left = q.limit ?? Number.POSITIVE_INFINITY;
    const only = cursors.length === 1 ? cursors[0] : undefined;
    if (only !== undefined) {
      while (left > 0) {
        const rows = only.nextPage();
        if (rows.length === 0) return;
        const kept = rows.length > left ? slicePage(rows, 0, left) : rows;
        left -= kept.length;
        yield kept;
      }
      return;
    }
    // Merging per-series index scans keeps time order across sensors without sorting the device's rows; ties go
    // to the sensor first by name (`open` keeps the cursors in sensor order). A merged page takes the kinds of
    // the series pages its rows come from.
    let open = cursors.filter((c) => c.load());
    while (left > 0 && open.length > 0) {
      const size = Math.min(left, MAX_PAGE);
      const ts: number[] = [];
      const value: number[] = [];
      const seq: (number | null)[] = [];
      const kind: number[] = [];
      const kinds: ReadingKind[] = [];
      for (const c of open) c.base = -1;
      let n = 0;
      while (n < size) {
        let best: SeriesCursor | undefined;
        let bestTs = 0;
        for (const c of open) {
          const t = c.page.ts[c.at] as number;
          if (best === undefined || (asc ? t < bestTs : t > bestTs)) {
            best = c;
            bestTs = t;
          }
        }
        if (best === undefined) break;
        const p = best.page;
        const i = best.at;
        if (best.base < 0) {
          best.base = kinds.length;
          for (const k of p.kinds) kinds.push(k);
        }
        ts.push(bestTs);
        value.push(p.value[i] as number);
        seq.push(p.seq[i] ?? null);
        kind.push(best.base + (p.kind === undefined ? 0 : (p.kind[i] as number)));
        n++;
        best.at = i + 1;
        if (best.at === p.length && !best.load()) {
          const done = best;
          open = open.filter((c) => c !== done);
        }
      }
      left -= n;
      yield { length: n, ts, value, seq, kinds, kind: kinds.length > 1 ? kind : undefined };
    }
  }

  const queries: Omit<ReadingQueries, "stop" | typeof Symbol.asyncDispose> = {
    // Only a kept reader has the rollup's text as kinds; the answers print from the objects otherwise.
    ...(cache === undefined
      ? {}
      : { devicesPage: async () => cache.devicesPage(), latestPage: async () => cache.latestPage() }),
    async devices() {
      if (cache !== undefined) return cache.devices();
      type Summary = [string, string, number, number, number, number, string | null];
      const rows = JSON.parse(oldRollup(() => summaries?.get({})) ?? "[]") as Summary[];
      const row = (i: number) => rows[i] as Summary;
      return groupDevices(
        rows.length,
        (i) => row(i)[0],
        (i) => {
          const [, sensor, count, first_ts, last_ts, last_value, unit] = row(i);
          return { sensor, unit, first_ts, last_ts, last_value, count };
        },
      );
    },

    async latest(device) {
      if (cache !== undefined) {
        const all = cache.latest();
        return device === undefined ? all : all.filter((r) => r.device_id === device);
      }
      const json = oldRollup(() =>
        device === undefined ? latestAll?.get({}) : latestOfDevice?.get({ device }),
      );
      return (JSON.parse(json ?? "[]") as LatestRow[]).map(readingOfRow);
    },

    readings(q: ReadingsQuery) {
      return readingsOfPages(readingPages(q));
    },

    readingPages,

    async *stats(q: StatsQuery) {
      const sensors = q.sensor === undefined ? sensorsOf.all({ device: q.device }) : [q.sensor];
      for (const sensor of sensors) {
        const rows = bucketRows(q.device, sensor, q.from ?? MIN_TIME, q.to ?? MAX_TIME, q.every);
        for (const [start, count, min, max, mean, last] of rows) {
          yield { device_id: q.device, sensor, start, count, min, max, mean, last } satisfies Bucket;
        }
      }
    },

    async series(q: SeriesQuery) {
      const bounds = boundsOf(q.device, q.sensor, q.from, q.to);
      if (bounds === undefined) return [];
      const raw = pointsOf(q.device, q.sensor, bounds.lo, bounds.hi, q.points + 1);
      if (raw.ts.length <= q.points)
        return raw.ts.map((ts, i): RawPoint => ({ ts, value: raw.values[i] as number }));
      const width = chartBucketWidth(bounds.hi - bounds.lo, q.points);
      return Array.from(
        bucketRows(q.device, q.sensor, bounds.lo, bounds.hi, width),
        ([ts, count, min, max, mean]): BucketPoint => ({ ts, min, max, mean, count }),
      ) satisfies SeriesPoint[];
    },
  };
  return running(queries, async () => {
    if (db.open) db.close();
  });
}
