/**
 * `stats` and `series` on the SQLite file: buckets of one series. Sparse series (a few rows a bucket, as most
 * charts and hourly stats are) are aggregated here from their rows read in pages; once a series proves dense the
 * rest of the range is left to SQLite's GROUP BY.
 */
import type Database from "better-sqlite3";
import {
  type Bucket,
  type BucketPoint,
  chartBucketWidth,
  type RawPoint,
  type SeriesPoint,
  type SeriesQuery,
  type StatsQuery,
} from "../queries.js";
import { MAX_TIME, MIN_TIME, sensorsOf } from "./keys.js";

/** Buckets of a series computed per statement by GROUP BY. */
const BUCKETS_PER_PAGE = 4_096;
/** Rows (ts, value) of a series read per statement when buckets are computed here. */
const POINTS_PAGE = 8_192;
/**
 * Rows a bucket holds on average above which SQLite aggregates them (GROUP BY) rather than hand them over: a row
 * handed over costs about 1 µs, a bucket from GROUP BY about 5 µs (its row out, and a seek for its `last`).
 */
const DENSE_ROWS_PER_BUCKET = 16;

type BucketRow = [start: number, count: number, min: number, max: number, mean: number, last: number];

export interface BucketQueries {
  stats(q: StatsQuery): AsyncGenerator<Bucket>;
  series(q: SeriesQuery): SeriesPoint[];
}

export function bucketQueries(db: Database.Database): BucketQueries {
  const sensors = sensorsOf(db);
  const span = db
    .prepare<[string, string, number, number], [number | null, number | null]>(
      "SELECT min(ts), max(ts) FROM readings WHERE device_id = ? AND sensor = ? AND ts >= ? AND ts < ?",
    )
    .raw();
  type Range = { device: string; sensor: string; from: number; to: number; every: number };
  // `last` by the bucket's newest ts: SQLite's bare-column rule is unreliable with several min()/max() at once.
  const grouped = db
    .prepare<Range, BucketRow>(
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

  /** Buckets of `every` ms in [from, to) by SQLite's GROUP BY, a page of buckets per statement. */
  function* groupedBuckets(device: string, sensor: string, from: number, to: number, every: number) {
    const bounds = boundsOf(device, sensor, from, to);
    if (bounds === undefined) return;
    const pageMs = every * BUCKETS_PER_PAGE;
    for (let at = bounds.lo - (bounds.lo % every); at < bounds.hi; at += pageMs) {
      yield* grouped.all({ device, sensor, from: Math.max(at, from), to: Math.min(at + pageMs, to), every });
    }
  }

  /** Non-empty buckets of `every` ms in [from, to), in order. */
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
        // From the bucket in progress on, SQLite aggregates the rest.
        yield* groupedBuckets(device, sensor, Math.max(cur.start, from), to, every);
        return;
      }
    }
    if (cur !== undefined) yield finished(cur);
  }

  return {
    async *stats(q) {
      for (const sensor of q.sensor === undefined ? sensors(q.device) : [q.sensor]) {
        const rows = bucketRows(q.device, sensor, q.from ?? MIN_TIME, q.to ?? MAX_TIME, q.every);
        for (const [start, count, min, max, mean, last] of rows) {
          yield { device_id: q.device, sensor, start, count, min, max, mean, last };
        }
      }
    },

    series(q) {
      const bounds = boundsOf(q.device, q.sensor, q.from, q.to);
      if (bounds === undefined) return [];
      const raw = pointsOf(q.device, q.sensor, bounds.lo, bounds.hi, q.points + 1);
      if (raw.ts.length <= q.points)
        return raw.ts.map((ts, i): RawPoint => ({ ts, value: raw.values[i] as number }));
      const width = chartBucketWidth(bounds.hi - bounds.lo, q.points);
      return Array.from(
        bucketRows(q.device, q.sensor, bounds.lo, bounds.hi, width),
        ([ts, count, min, max, mean]): BucketPoint => ({ ts, min, max, mean, count }),
      );
    },
  };
}
