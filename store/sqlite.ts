import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { Reading } from "../schemas/index.js";
import { conflictOf, measurementOf, type StoredMeasurement, sameMeasurement } from "./measurement.js";
import type { Conflict, WriteResult } from "./store.js";

/** The rollup's columns, in the order {@link seriesFromReadings} and the writer give them. */
const SERIES_COLUMNS =
  "device_id, sensor, unit, first_ts, last_ts, last_value, last_seq, last_quality, last_tags, count";

/**
 * The `series` rollup computed from the rows (one read of every row): what migration 3 fills the table with, and
 * what a reader of a file not yet migrated uses instead. Columns in the table's order; `measurement` stands for
 * the newest row's quality and tags (constants for a version 1 file, which has neither).
 */
export function seriesFromReadings(measurement = "r.quality, r.tags"): string {
  return `SELECT g.device_id, g.sensor, r.unit, g.first_ts, g.last_ts, r.value, r.seq, ${measurement}, g.n
  FROM (SELECT device_id, sensor, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS n
        FROM readings GROUP BY device_id, sensor) AS g
  JOIN readings AS r ON r.device_id = g.device_id AND r.sensor = g.sensor AND r.ts = g.last_ts`;
}

/** Numbered migrations; `PRAGMA user_version` holds the number of the last one applied. Never edit a released one. */
export const MIGRATIONS: readonly { readonly version: number; readonly sql: string }[] = [
  {
    version: 1,
    sql: `CREATE TABLE readings (
      device_id   TEXT    NOT NULL,
      sensor      TEXT    NOT NULL,
      ts          INTEGER NOT NULL,  -- time of measurement, epoch ms UTC
      value       REAL    NOT NULL,
      unit        TEXT,
      seq         INTEGER,           -- the device's sequence number, when it sends one
      gateway_id  TEXT    NOT NULL,
      received_at INTEGER NOT NULL,  -- gateway receive time, epoch ms UTC
      stored_at   INTEGER NOT NULL,  -- commit time, epoch ms UTC
      PRIMARY KEY (device_id, sensor, ts)
    ) WITHOUT ROWID;`,
  },
  {
    // Schema version 2. ADD COLUMN with a constant default changes only the table's definition, never its rows:
    // rows stored before read the defaults, which are those of reading.v2.avsc, so every row has a quality and tags.
    version: 2,
    sql: `ALTER TABLE readings ADD COLUMN quality TEXT NOT NULL DEFAULT 'good'; -- good, uncertain or bad
      ALTER TABLE readings ADD COLUMN tags TEXT NOT NULL DEFAULT '{}'; -- JSON object of string values`,
  },
  {
    // The per-series rollup: what `devices` and `latest` need without reading every row. Kept by the writer in the
    // same transaction as the rows (SqliteStore), so it always equals a GROUP BY over `readings`; `unit` and the
    // `last_*` columns are those of the row at `last_ts`, so `latest` reads this table alone (a key lookup per
    // series into `readings` costs 4,000 seeks, ~20 ms on ten million rows). Built here from the rows stored.
    version: 3,
    sql: `CREATE TABLE series (
      device_id    TEXT    NOT NULL,
      sensor       TEXT    NOT NULL,
      unit         TEXT,
      first_ts     INTEGER NOT NULL,
      last_ts      INTEGER NOT NULL,
      last_value   REAL    NOT NULL,
      last_seq     INTEGER,
      last_quality TEXT    NOT NULL,
      last_tags    TEXT    NOT NULL,
      count        INTEGER NOT NULL,
      PRIMARY KEY (device_id, sensor)
    ) WITHOUT ROWID;
    INSERT INTO series (${SERIES_COLUMNS}) ${seriesFromReadings()};`,
  },
  {
    // What lets a long-lived reader (serve) keep the rollup's text columns between questions and read only its
    // numbers (store/sqlite-series-cache.ts): `text_gen` is the generation of the writer's transaction that last
    // inserted the row or changed its unit, last_quality or last_tags, from the counter in `series_gen`, which
    // every write transaction bumps. So (count(*), max(text_gen)) changes whenever any row's text or the set of
    // rows does (a row inserted or changed gets a generation above every earlier one; a row deleted lowers the
    // count). Existing rows start at 0; the counter at 1, so any later change is seen.
    version: 4,
    sql: `ALTER TABLE series ADD COLUMN text_gen INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE series_gen (gen INTEGER NOT NULL);
    INSERT INTO series_gen (gen) VALUES (1);`,
  },
];

/**
 * How long a write waits for another connection's write lock. Short, because better-sqlite3 waits synchronously:
 * the processor retries a busy batch itself, with backoff, and keeps its event loop (heartbeats, /readyz) alive.
 */
const BUSY_TIMEOUT_MS = 250;
const CACHE_KIB = 65_536;
const COLUMNS = "device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at, quality, tags";

/**
 * Opens (creating if needed) the database: WAL so analysts can read while the processor writes, synchronous=FULL
 * so a committed transaction survives a power cut (the processor's ack promises that), and migrations applied.
 */
export function openDatabase(path: string, opts: { readonly?: boolean } = {}): Database.Database {
  if (!opts.readonly && path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  if (opts.readonly) return db;
  const mode = db.pragma("journal_mode = WAL", { simple: true });
  if (mode !== "wal" && path !== ":memory:")
    throw new Error(`${path}: could not switch to WAL (got ${mode})`);
  db.pragma("synchronous = FULL");
  // 64 MiB of page cache: a batch touches a leaf page per (device, sensor), and re-reading them costs each commit.
  db.pragma(`cache_size = -${CACHE_KIB}`);
  migrate(db);
  return db;
}

/** Applies the migrations the database has not seen yet, each in its own transaction. */
export function migrate(db: Database.Database): number {
  const current = db.pragma("user_version", { simple: true }) as number;
  const latest = MIGRATIONS.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new Error(
      `database schema version ${current} is newer than this program knows (${latest}); upgrade it`,
    );
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return latest;
}

/** The columns a resend must match for its copy to count as a duplicate rather than a conflict. */
const MEASUREMENT = "value, unit, seq, quality, tags";

/** Series upserted per statement, and the parameters of one. */
const UPSERT_ROWS = 32;
const SERIES_PARAMS = SERIES_COLUMNS.split(",").length + 1; // and text_gen

/** What one batch adds to a series: only rows actually inserted count. */
interface SeriesDelta {
  first_ts: number;
  last_ts: number;
  /** The newest inserted reading's measurement. */
  last: StoredMeasurement;
  count: number;
}

/**
 * Folds the inserted readings of a batch into one delta per series (device, then sensor: nested maps, so no id
 * can collide with a joined key), so the write adds one rollup upsert per series, not one per row.
 */
class SeriesDeltas {
  readonly #byDevice = new Map<string, Map<string, SeriesDelta>>();

  add(r: Reading, m: StoredMeasurement): void {
    let sensors = this.#byDevice.get(r.device_id);
    if (!sensors) {
      sensors = new Map();
      this.#byDevice.set(r.device_id, sensors);
    }
    const d = sensors.get(r.sensor);
    if (!d) {
      sensors.set(r.sensor, { first_ts: r.ts, last_ts: r.ts, last: m, count: 1 });
      return;
    }
    d.count++;
    if (r.ts < d.first_ts) d.first_ts = r.ts;
    if (r.ts > d.last_ts) {
      d.last_ts = r.ts;
      d.last = m;
    }
  }

  *entries(): Generator<[string, string, SeriesDelta]> {
    for (const [device, sensors] of this.#byDevice) {
      for (const [sensor, d] of sensors) yield [device, sensor, d];
    }
  }
}

/** Options of {@link SqliteStore}; the product uses the defaults. */
export interface SqliteStoreOptions {
  /**
   * Keep the `series` rollup in each write transaction (default true). False only for the benchmark's measure of
   * what the rollup costs (bench/processor-child.ts): readers of a file written so see a stale `series`.
   */
  readonly rollups?: boolean;
}

/**
 * The SQLite store, synchronous inside: the processor runs it on a worker thread (worker-store.ts) so that a commit
 * waiting for fsync never stalls deliveries and acks. A reading whose key is already stored is a duplicate when its
 * measurement (value, unit, seq, quality, tags) is the same, and a conflict when it differs; neither changes the row.
 * The `series` rollup (migration 3) changes in the same transaction as the rows it sums, so readers never see one
 * without the other.
 */
export class SqliteStore {
  readonly db: Database.Database;
  readonly #write: Database.Transaction<(readings: readonly Reading[], storedAt: number) => WriteResult>;
  readonly #delete: Database.Transaction<(cutoff: number, limit: number) => number>;

  constructor(path: string, opts: SqliteStoreOptions = {}) {
    this.db = openDatabase(path);
    const rollups = opts.rollups ?? true;
    // One prepared single-row INSERT: measured cheaper per row than multi-row VALUES lists (bench/README.md).
    const insert = this.db.prepare(
      `INSERT INTO readings (${COLUMNS}) VALUES (${COLUMNS.split(",").fill("?").join(", ")}) ON CONFLICT DO NOTHING`,
    );
    const stored = this.db.prepare<[string, string, number], StoredMeasurement>(
      `SELECT ${MEASUREMENT} FROM readings WHERE device_id = ? AND sensor = ? AND ts = ?`,
    );
    // In an UPDATE every right-hand side reads the row as it was, so `last_ts` is compared before it changes.
    // A newly inserted ts never equals the stored last_ts (that row exists), so ">" decides which is newer.
    const newer = (col: string) =>
      `${col} = CASE WHEN excluded.last_ts > series.last_ts THEN excluded.${col} ELSE series.${col} END`;
    // The row's text columns change only with a newer reading whose unit, quality or tags differ: then it takes
    // this transaction's generation (migration 4), as a new row does.
    const textChanged = `excluded.last_ts > series.last_ts AND (excluded.unit IS NOT series.unit
      OR excluded.last_quality IS NOT series.last_quality OR excluded.last_tags IS NOT series.last_tags)`;
    // Up to UPSERT_ROWS series per statement: a batch of a whole fleet has a series per reading, and one call per
    // series cost ~1.5 µs a reading more (160,000 fleet-ordered readings, writeBatch CPU 15.7-16.1 µs/reading
    // against 13.3-14.7). Each VALUES row is its own upsert. A statement per row count, prepared when first used.
    const upserts: Database.Statement[] = [];
    const upsertSeries = (rows: number): Database.Statement => {
      const known = upserts[rows];
      if (known !== undefined) return known;
      const row = `(${SERIES_COLUMNS.split(",").fill("?").join(", ")}, ?)`;
      const statement = this.db.prepare(
        `INSERT INTO series (${SERIES_COLUMNS}, text_gen) VALUES ${Array(rows).fill(row).join(", ")}
         ON CONFLICT (device_id, sensor) DO UPDATE SET
           text_gen = CASE WHEN ${textChanged} THEN excluded.text_gen ELSE series.text_gen END,
           ${["unit", "last_value", "last_seq", "last_quality", "last_tags"].map(newer).join(", ")},
           last_ts = max(series.last_ts, excluded.last_ts),
           first_ts = min(series.first_ts, excluded.first_ts),
           count = series.count + excluded.count`,
      );
      upserts[rows] = statement;
      return statement;
    };
    const nextGen = this.db.prepare("UPDATE series_gen SET gen = gen + 1 RETURNING gen").pluck();
    this.#write = this.db.transaction((readings: readonly Reading[], storedAt: number) => {
      let inserted = 0;
      let duplicates = 0;
      const conflicts: Conflict[] = [];
      const deltas = new SeriesDeltas();
      readings.forEach((r, index) => {
        const m = measurementOf(r);
        const changes = insert.run(
          r.device_id,
          r.sensor,
          r.ts,
          m.value,
          m.unit,
          m.seq,
          r.gateway_id,
          r.received_at,
          storedAt,
          m.quality,
          m.tags,
        ).changes;
        if (changes > 0) {
          inserted++;
          if (rollups) deltas.add(r, m);
          return;
        }
        // Only resends reach here, so the extra lookup costs nothing on the fast path.
        const kept = stored.get(r.device_id, r.sensor, r.ts);
        if (kept === undefined || sameMeasurement(kept, m)) duplicates++;
        else conflicts.push(conflictOf(index, r, kept));
      });
      // One step of the counter per transaction that changes the rollup; read under the write lock, so two writers
      // never share a generation.
      const gen = inserted > 0 && rollups ? (nextGen.get() as number) : 0;
      const params: unknown[] = [];
      const flush = () => {
        if (params.length === 0) return;
        upsertSeries(params.length / SERIES_PARAMS).run(params);
        params.length = 0;
      };
      for (const [device, sensor, d] of deltas.entries()) {
        const m = d.last;
        params.push(
          device,
          sensor,
          m.unit,
          d.first_ts,
          d.last_ts,
          m.value,
          m.seq,
          m.quality,
          m.tags,
          d.count,
          gen,
        );
        if (params.length === UPSERT_ROWS * SERIES_PARAMS) flush();
      }
      flush();
      return { inserted, duplicates, conflicts };
    });

    const oldSeries = this.db
      .prepare<[number, number], [string, string]>(
        "SELECT device_id, sensor FROM series WHERE first_ts < ? LIMIT ?",
      )
      .raw();
    // The ts just past the first `n` rows of a series older than the cutoff: the end of this batch's key range.
    const rangeEnd = this.db
      .prepare<[string, string, number, number], number>(
        "SELECT ts FROM readings WHERE device_id = ? AND sensor = ? AND ts < ? ORDER BY ts LIMIT 1 OFFSET ?",
      )
      .pluck();
    const deleteRange = this.db.prepare<[string, string, number]>(
      "DELETE FROM readings WHERE device_id = ? AND sensor = ? AND ts < ?",
    );
    const firstTs = this.db
      .prepare<[string, string], number>(
        "SELECT ts FROM readings WHERE device_id = ? AND sensor = ? ORDER BY ts LIMIT 1",
      )
      .pluck();
    const shrinkSeries = this.db.prepare<[number, number, string, string]>(
      "UPDATE series SET first_ts = ?, count = count - ? WHERE device_id = ? AND sensor = ?",
    );
    const dropSeries = this.db.prepare<[string, string]>(
      "DELETE FROM series WHERE device_id = ? AND sensor = ?",
    );
    this.#delete = this.db.transaction((cutoff: number, limit: number) => {
      let deleted = 0;
      // Every series holding an old row has first_ts < cutoff, and each gives at least one row: `limit` suffice.
      for (const [device, sensor] of oldSeries.all(cutoff, limit)) {
        const left = limit - deleted;
        if (left <= 0) break;
        const end = Math.min(cutoff, rangeEnd.get(device, sensor, cutoff, left) ?? cutoff);
        const n = deleteRange.run(device, sensor, end).changes;
        deleted += n;
        const first = firstTs.get(device, sensor);
        if (first === undefined) dropSeries.run(device, sensor);
        else shrinkSeries.run(first, n, device, sensor);
      }
      return deleted;
    });
  }

  /** Writes a batch in one IMMEDIATE transaction; returns once it has committed (throws SQLite's error if not). */
  writeBatch(readings: readonly Reading[]): WriteResult {
    if (readings.length === 0) return EMPTY_RESULT;
    return this.#write.immediate(readings, Date.now());
  }

  /**
   * Deletes at most `limit` readings whose `ts` is before `cutoff` (epoch ms) in one IMMEDIATE transaction, each
   * series' old rows as one key range, and corrects the rollup (first_ts, count; a series left empty is removed).
   * Returns how many were deleted; fewer than `limit` means none older than `cutoff` is left.
   */
  deleteOlderThan(cutoff: number, limit: number): number {
    return this.#delete.immediate(cutoff, limit);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

const EMPTY_RESULT: WriteResult = Object.freeze({ inserted: 0, duplicates: 0, conflicts: [] });
