/**
 * `stats` and `series` on the SQLite file: buckets of one series, planned by store/bucket-answers.ts over raw rows
 * and the rollup tiers. Sparse raw rows (a few a bucket, as cut buckets and short charts are) are aggregated here
 * from their rows read in pages; once a series proves dense the rest of the span is left to SQLite's GROUP BY.
 * Tier rows are always added up by GROUP BY: a bucket holds at most a day's 1,440 minute rows.
 */
import type Database from "better-sqlite3";
import { seriesBuckets, seriesPoints } from "../bucket-answers.js";
import { type BucketPart, horizonsOf, type Source } from "../bucket-plan.js";
import type { Bucket, RawPoint, SeriesPoint, SeriesQuery, StatsQuery } from "../queries.js";
import { TIERS, type TierTable } from "../tiers.js";
import { sensorsOf } from "./keys.js";

/** Buckets of a series computed per statement by GROUP BY. */
const BUCKETS_PER_PAGE = 4_096;
/** Rows (ts, value) of a series read per statement when buckets are computed here. */
const POINTS_PAGE = 8_192;
/**
 * Rows a bucket holds on average above which SQLite aggregates them (GROUP BY) rather than hand them over: a row
 * handed over costs about 1 µs, a bucket from GROUP BY about 5 µs (its row out, and a seek for its `last`).
 */
const DENSE_ROWS_PER_BUCKET = 16;

type BucketRow = [start: number, count: number, min: number, max: number, sum: number, last: number];
type Range = { device: string; sensor: string; from: number; to: number; every: number };
type Span = { lo: number; hi: number } | undefined;

export interface BucketQueries {
  stats(q: StatsQuery): AsyncGenerator<Bucket>;
  series(q: SeriesQuery): Promise<SeriesPoint[]>;
}

const partOf = ([start, count, min, max, sum, last]: BucketRow): BucketPart => ({
  start,
  count,
  min,
  max,
  sum,
  last,
});

/** A tier's statements: its rows added up per bucket, and the first and last reading of a span of its rows. */
function tierStatements(db: Database.Database, t: TierTable) {
  const where = `device_id = @device AND sensor = @sensor AND start >= @from AND start < @to`;
  return {
    // `last` from the bucket's latest row (the one with the largest start, so the largest last_ts): a seek.
    grouped: db
      .prepare<Range, BucketRow>(
        `SELECT g.b, g.n, g.lo, g.hi, g.total,
                (SELECT last_value FROM ${t} WHERE device_id = @device AND sensor = @sensor AND start = g.last_start)
         FROM (SELECT start - start % @every AS b, sum(count) AS n, min(min) AS lo, max(max) AS hi,
                      sum(sum) AS total, max(start) AS last_start
               FROM ${t} WHERE ${where} GROUP BY b) AS g
         ORDER BY g.b`,
      )
      .raw(),
    span: db
      .prepare<Omit<Range, "every">, [number | null, number | null]>(
        `SELECT (SELECT first_ts FROM ${t} WHERE ${where} ORDER BY start LIMIT 1),
                (SELECT last_ts FROM ${t} WHERE ${where} ORDER BY start DESC LIMIT 1)`,
      )
      .raw(),
  };
}

export function bucketQueries(db: Database.Database): BucketQueries {
  const sensorLists = [sensorsOf(db), ...TIERS.map((t) => sensorsOf(db, t.table))];
  // A series whose raw rows retention deleted still has buckets in the tiers.
  const sensors = (device: string) => [...new Set(sensorLists.flatMap((list) => list(device)))].sort();
  const horizonRows = db.prepare<[], [string, number]>("SELECT name, ts FROM horizons").raw();
  const tiers: Record<TierTable, ReturnType<typeof tierStatements>> = {
    rollup_1m: tierStatements(db, "rollup_1m"),
    rollup_1h: tierStatements(db, "rollup_1h"),
    rollup_1d: tierStatements(db, "rollup_1d"),
  };
  const span = db
    .prepare<Omit<Range, "every">, [number | null, number | null]>(
      "SELECT min(ts), max(ts) FROM readings WHERE device_id = @device AND sensor = @sensor AND ts >= @from AND ts < @to",
    )
    .raw();
  // `last` by the bucket's newest ts: SQLite's bare-column rule is unreliable with several min()/max() at once.
  const grouped = db
    .prepare<Range, BucketRow>(
      `SELECT g.start, g.n, g.lo, g.hi, g.total,
              (SELECT value FROM readings WHERE device_id = @device AND sensor = @sensor AND ts = g.last_ts)
       FROM (SELECT ts - ts % @every AS start, count(*) AS n, min(value) AS lo, max(value) AS hi,
                    sum(value) AS total, max(ts) AS last_ts
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
  const spanOf = (source: Source, device: string, sensor: string, from: number, to: number): Span => {
    const statement = source === "readings" ? span : tiers[source].span;
    const [lo, hi] = statement.get({ device, sensor, from, to }) ?? [null, null];
    return lo === null || hi === null ? undefined : { lo, hi };
  };

  /** Buckets of `every` ms in [from, to) by GROUP BY over raw rows or a tier's, a page of buckets per statement. */
  function* groupedParts(
    source: Source,
    device: string,
    sensor: string,
    from: number,
    to: number,
    every: number,
  ) {
    const bounds = spanOf(source, device, sensor, from, to);
    if (bounds === undefined) return;
    const statement = source === "readings" ? grouped : tiers[source].grouped;
    const pageMs = every * BUCKETS_PER_PAGE;
    for (let at = bounds.lo - (bounds.lo % every); at <= bounds.hi; at += pageMs) {
      const range = { device, sensor, from: Math.max(at, from), to: Math.min(at + pageMs, to), every };
      for (const row of statement.all(range)) yield partOf(row);
    }
  }

  /** Non-empty buckets of `every` ms of raw rows in [from, to), in order. */
  function* rawParts(device: string, sensor: string, from: number, to: number, every: number) {
    let at = from;
    let rows = 0;
    let done = 0;
    let cur:
      | { start: number; count: number; min: number; max: number; sum: number; last: number }
      | undefined;
    for (;;) {
      const { ts, values } = pointsOf(device, sensor, at, to, POINTS_PAGE);
      for (let i = 0; i < ts.length; i++) {
        const t = ts[i] as number;
        const v = values[i] as number;
        // As SQLite's `ts - ts % every`: the remainder keeps the sign of ts.
        const start = t - (t % every);
        if (cur === undefined || cur.start !== start) {
          if (cur !== undefined) {
            yield cur;
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
        yield* groupedParts("readings", device, sensor, Math.max(cur.start, from), to, every);
        return;
      }
    }
    if (cur !== undefined) yield cur;
  }

  const reader = {
    horizons: () => horizonsOf(horizonRows.all()),
    parts: (source: Source, device: string, sensor: string, from: number, to: number, every: number) =>
      source === "readings"
        ? rawParts(device, sensor, from, to, every)
        : groupedParts(source, device, sensor, from, to, every),
    span: spanOf,
    rawPoints: (device: string, sensor: string, from: number, to: number, limit: number) => {
      const raw = pointsOf(device, sensor, from, to, limit);
      return raw.ts.map((ts, i): RawPoint => ({ ts, value: raw.values[i] as number }));
    },
  };

  return {
    async *stats(q) {
      for (const sensor of q.sensor === undefined ? sensors(q.device) : [q.sensor]) {
        for await (const b of seriesBuckets(reader, q.device, sensor, q.every, q.from, q.to)) {
          const { start, count, min, max, sum, last } = b;
          yield { device_id: q.device, sensor, start, count, min, max, mean: sum / count, last };
        }
      }
    },
    series: (q) => seriesPoints(reader, q),
  };
}
