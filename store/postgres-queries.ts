/**
 * The analysts' queries ({@link ReadingQueries}) on PostgreSQL, answering as store/sqlite-queries.ts does on the
 * SQLite file. Every statement walks the primary key (device_id, sensor, ts): a series is a contiguous range of
 * it, a time range one index scan, and the distinct series are found by skipping from one key prefix to the next.
 * The connections are read-only; each statement reads what is committed when it starts.
 */
import type pg from "pg";
import { running } from "../common/pipeline.js";
import type { Quality } from "../schemas/index.js";
import { seriesBuckets, seriesPoints } from "./bucket-answers.js";
import { NO_TAGS } from "./measurement.js";
import { openError, openPool } from "./postgres.js";
import { postgresBucketReader, sensorsOf as tierSensorsOf } from "./postgres-buckets.js";
import {
  type Bucket,
  groupDevices,
  MAX_TIME,
  MIN_TIME,
  pageRange,
  pagesOfReadings,
  type ReadingQueries,
  type ReadingsQuery,
  type SeriesQuery,
  type StatsQuery,
  type StoredReading,
} from "./queries.js";

/** Rows of a series read per statement while streaming: the first page is small so `--limit 10` reads little. */
const FIRST_PAGE = 256;
const MAX_PAGE = 8_192;
/** A server answers several requests at once; a CLI query uses one connection. */
const POOL_SIZE = 4;
/** A page's limit when it has none. */
const NO_LIMIT = Number.MAX_SAFE_INTEGER;
const EMPTY_TAGS: Readonly<Record<string, string>> = Object.freeze({});

/** A stored row without its key, as the statements below select it. */
interface Row {
  readonly ts: number;
  readonly value: number;
  readonly unit: string | null;
  readonly seq: number | null;
  readonly quality: Quality;
  readonly tags: string;
}
type KeyedRow = Row & { readonly device_id: string; readonly sensor: string };

const ROW = "ts, value, unit, seq, quality, tags";

function toReading(device_id: string, sensor: string, r: Row): StoredReading {
  const tags = r.tags === NO_TAGS ? EMPTY_TAGS : (JSON.parse(r.tags) as Record<string, string>);
  return { device_id, sensor, ts: r.ts, value: r.value, unit: r.unit, seq: r.seq, quality: r.quality, tags };
}

/** Where a paged walk of one series stands: the rows of the current page and the bound of the next. */
class SeriesCursor {
  #page: Row[] = [];
  #at = 0;
  #size = FIRST_PAGE;
  #done = false;

  constructor(
    private readonly fetch: (from: number, to: number, limit: number) => Promise<Row[]>,
    readonly sensor: string,
    private from: number,
    private to: number,
    private readonly asc: boolean,
  ) {}

  /** The cursor's current row, reading the next page when this one is used up; undefined at the end. */
  async head(): Promise<Row | undefined> {
    if (this.#at < this.#page.length) return this.#page[this.#at];
    if (this.#done) return undefined;
    this.#page = await this.fetch(this.from, this.to, this.#size);
    this.#at = 0;
    if (this.#page.length < this.#size) this.#done = true;
    this.#size = Math.min(this.#size * 2, MAX_PAGE);
    const last = this.#page.at(-1);
    if (last === undefined) return undefined;
    // The key is unique per series, so the next page starts strictly after the last row read.
    if (this.asc) this.from = last.ts + 1;
    else this.to = last.ts;
    return this.#page[0];
  }

  advance(): void {
    this.#at++;
  }
}

const SENSORS_OF = `WITH RECURSIVE s(sensor) AS (
    SELECT min(sensor) FROM readings WHERE device_id = $1
    UNION ALL
    SELECT (SELECT min(sensor) FROM readings WHERE device_id = $1 AND sensor > s.sensor) FROM s
    WHERE s.sensor IS NOT NULL)
  SELECT sensor FROM s WHERE sensor IS NOT NULL ORDER BY sensor`;
const PAGE_ASC = `SELECT ${ROW} FROM readings WHERE device_id = $1 AND sensor = $2 AND ts >= $3 AND ts < $4
  ORDER BY ts ASC LIMIT $5`;
const PAGE_DESC = `SELECT ${ROW} FROM readings WHERE device_id = $1 AND sensor = $2 AND ts >= $3 AND ts < $4
  ORDER BY ts DESC LIMIT $5`;
/**
 * The series (of one device when `$1` is given) by skipping along the key from `$2` (`$3`: inclusive) up to `$4`
 * (exclusive; null: no end), while at most `$5` devices are seen, then each one's newest row.
 */
const LATEST = `WITH RECURSIVE s(device_id, sensor, k) AS (
    (SELECT device_id, sensor, 1 FROM readings
     WHERE ($1::text IS NULL OR device_id = $1) AND device_id >= $2 AND (device_id > $2 OR $3::boolean)
       AND ($4::text IS NULL OR device_id < $4)
     ORDER BY device_id, sensor LIMIT 1)
    UNION ALL
    SELECT n.device_id, n.sensor, s.k + (n.device_id <> s.device_id)::int FROM s CROSS JOIN LATERAL (
      SELECT device_id, sensor FROM readings
      WHERE (device_id, sensor) > (s.device_id, s.sensor) AND ($1::text IS NULL OR device_id = $1)
        AND ($4::text IS NULL OR device_id < $4)
      ORDER BY device_id, sensor LIMIT 1) AS n
    WHERE s.k < $5::bigint OR n.device_id = s.device_id)
  SELECT s.device_id, s.sensor, r.* FROM s CROSS JOIN LATERAL (
    SELECT ${ROW} FROM readings WHERE device_id = s.device_id AND sensor = s.sensor ORDER BY ts DESC LIMIT 1) AS r
  ORDER BY s.device_id, s.sensor`;
/**
 * The devices of a page (bounds as in LATEST) by skipping along the key, then their series summed: counting is a
 * read of every row of them, the table having no per-series totals to look up. The interval is migration 3's
 * aggregate.
 */
const SUMMARIES = `WITH RECURSIVE d(device_id, k) AS (
    (SELECT device_id, 1 FROM readings
     WHERE device_id >= $1 AND (device_id > $1 OR $2::boolean) AND ($3::text IS NULL OR device_id < $3)
     ORDER BY device_id LIMIT 1)
    UNION ALL
    SELECT n.device_id, d.k + 1 FROM d CROSS JOIN LATERAL (
      SELECT device_id FROM readings WHERE device_id > d.device_id AND ($3::text IS NULL OR device_id < $3)
      ORDER BY device_id LIMIT 1) AS n
    WHERE d.k < $4::bigint)
  SELECT g.device_id, g.sensor, g.n, g.first_ts, g.last_ts, g.last_seen, g.interval, r.value, r.unit
  FROM (SELECT device_id, sensor, count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts,
          max(received_at) AS last_seen, telemetry_interval(received_at ORDER BY received_at) AS interval
        FROM readings WHERE device_id IN (SELECT device_id FROM d) GROUP BY device_id, sensor) AS g
  JOIN readings AS r ON r.device_id = g.device_id AND r.sensor = g.sensor AND r.ts = g.last_ts
  ORDER BY g.device_id, g.sensor`;

/**
 * Opens the PostgreSQL database at `url` read-only for {@link ReadingQueries}; rejects with one line (password
 * masked) when it cannot connect or the database holds no `readings` table.
 */
export async function openPostgresQueries(url: string): Promise<ReadingQueries> {
  const pool = openPool(url, { max: POOL_SIZE, applicationName: "telemetry query", readOnly: true });
  try {
    const { rows } = await pool.query<{ t: string | null }>("SELECT to_regclass('readings')::text AS t");
    if (rows[0]?.t == null) throw new Error("not a telemetry database: no readings table");
  } catch (err) {
    await pool.end().catch(() => {});
    throw openError(url, err);
  }
  return postgresQueries(pool);
}

function postgresQueries(pool: pg.Pool): ReadingQueries {
  const sensorsOf = async (device: string) =>
    (await pool.query<{ sensor: string }>(SENSORS_OF, [device])).rows.map((r) => r.sensor);
  const reader = postgresBucketReader(pool);
  const queries: Omit<ReadingQueries, "stop" | typeof Symbol.asyncDispose> = {
    // The server's current snapshot (xmin:xmax:running xids): a transaction that commits in between either got its
    // xid after the first snapshot (xmax grows) or was running in it (it leaves the list), so two equal snapshots
    // mean nothing was committed between them. Cluster-wide, so another database's writes change it too (a miss,
    // never a stale answer); it reads no table.
    async version() {
      const { rows } = await pool.query<{ v: string }>("SELECT pg_current_snapshot()::text AS v");
      return rows[0]?.v ?? "";
    },
    async devices(page = {}) {
      const range = pageRange(page);
      const { rows } = await pool.query<{
        device_id: string;
        sensor: string;
        n: number;
        first_ts: number;
        last_ts: number;
        last_seen: number;
        interval: number;
        value: number;
        unit: string | null;
      }>(SUMMARIES, [range.from, !range.fromExclusive, range.to ?? null, page.limit ?? NO_LIMIT]);
      const row = (i: number) => rows[i] as (typeof rows)[number];
      return groupDevices(
        rows.length,
        (i) => row(i).device_id,
        (i) => {
          const r = row(i);
          return {
            sensor: r.sensor,
            unit: r.unit,
            first_ts: r.first_ts,
            last_ts: r.last_ts,
            last_value: r.value,
            count: r.n,
          };
        },
        (i) => ({ last_seen: row(i).last_seen, interval: row(i).interval }),
      );
    },

    async latest(device, page = {}) {
      const range = pageRange(page);
      const { rows } = await pool.query<KeyedRow>(LATEST, [
        device ?? null,
        range.from,
        !range.fromExclusive,
        range.to ?? null,
        page.limit ?? NO_LIMIT,
      ]);
      return rows.map((r) => toReading(r.device_id, r.sensor, r));
    },

    async *readings(q: ReadingsQuery) {
      const asc = q.order === "asc";
      const page = asc ? PAGE_ASC : PAGE_DESC;
      const sensors = q.sensor === undefined ? await sensorsOf(q.device) : [q.sensor];
      const cursors = sensors.map(
        (sensor) =>
          new SeriesCursor(
            async (from, to, limit) =>
              (await pool.query<Row>(page, [q.device, sensor, from, to, limit])).rows,
            sensor,
            q.from ?? MIN_TIME,
            q.to ?? MAX_TIME,
            asc,
          ),
      );
      // Merging per-series index scans keeps time order across sensors without sorting the device's rows.
      let left = q.limit ?? Number.POSITIVE_INFINITY;
      while (left > 0) {
        let best: SeriesCursor | undefined;
        let bestRow: Row | undefined;
        for (const c of cursors) {
          const row = await c.head();
          if (row === undefined) continue;
          if (bestRow === undefined || (asc ? row.ts < bestRow.ts : row.ts > bestRow.ts)) {
            best = c;
            bestRow = row;
          }
        }
        if (best === undefined || bestRow === undefined) return;
        best.advance();
        left--;
        yield toReading(q.device, best.sensor, bestRow);
      }
    },

    readingPages(q: ReadingsQuery) {
      return pagesOfReadings(queries.readings(q));
    },

    async *stats(q: StatsQuery) {
      const sensors = q.sensor === undefined ? await tierSensorsOf(pool, q.device) : [q.sensor];
      for (const sensor of sensors) {
        for await (const b of seriesBuckets(reader, q.device, sensor, q.every, q.from, q.to)) {
          const { start, count, min, max, sum, last } = b;
          yield {
            device_id: q.device,
            sensor,
            start,
            count,
            min,
            max,
            mean: sum / count,
            last,
          } satisfies Bucket;
        }
      }
    },

    series: (q: SeriesQuery) => seriesPoints(reader, q),
  };
  return running(queries, () => pool.end());
}
