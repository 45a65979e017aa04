import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { Reading } from "../schemas/index.js";
import { conflictOf, measurementOf, type StoredMeasurement, sameMeasurement } from "./measurement.js";
import { readingsDelete } from "./sqlite-retention.js";
import {
  fillNumberRows,
  nextInterval,
  RollupWriter,
  readNumberRows,
  SERIES_PER_ROW,
} from "./sqlite-rollup.js";
import { TierWriter } from "./sqlite-tiers.js";
import type { Conflict, WriteResult } from "./store.js";
import { type TierTable, tierMigrationSql } from "./tiers.js";

/** Version 3's rollup columns, in the order {@link seriesFromReadings} gives them. */
const SERIES_COLUMNS =
  "device_id, sensor, unit, first_ts, last_ts, last_value, last_seq, last_quality, last_tags, count";

/**
 * The `series` rollup computed from the rows (one read of every row): what migration 3 fills the table with.
 * Columns in the table's order.
 */
export function seriesFromReadings(): string {
  return `SELECT g.device_id, g.sensor, r.unit, g.first_ts, g.last_ts, r.value, r.seq, r.quality, r.tags, g.n
  FROM (SELECT device_id, sensor, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS n
        FROM readings GROUP BY device_id, sensor) AS g
  JOIN readings AS r ON r.device_id = g.device_id AND r.sensor = g.sensor AND r.ts = g.last_ts`;
}

/** Numbered migrations; `PRAGMA user_version` holds the number of the last one applied. Never edit a released one. */
export const MIGRATIONS: readonly {
  readonly version: number;
  readonly sql: string;
  /** What SQL alone cannot do, run after `sql` in the same transaction. */
  readonly run?: (db: Database.Database) => void;
}[] = [
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
  {
    // The rollup's numbers move out of `series`, 64 series to a row of `series_numbers` (store/sqlite-rollup.ts):
    // a batch of a whole fleet then rewrites a row per 64 series instead of one per series. `series` keeps each
    // series' key, its new `id` (its slot) and the text of its newest reading. Built here from version 4's table.
    // From here on `series_gen` steps only in a transaction that inserts a series or changes one's text (which is
    // all a reader's check of count(*) and max(text_gen) needs), not in every write.
    version: 5,
    sql: "",
    run: (db) => {
      // Read first and drop before creating, so the new tables reuse the old one's pages (none left free).
      const old = db
        .prepare(
          `SELECT device_id, sensor, unit, last_quality, last_tags, text_gen, first_ts, last_ts, last_value, last_seq,
                  count
           FROM series ORDER BY device_id, sensor`,
        )
        .raw()
        .all() as [
        string,
        string,
        string | null,
        string,
        string,
        number,
        number,
        number,
        number,
        number | null,
        number,
      ][];
      db.exec(`DROP TABLE series;
      CREATE TABLE series (
        device_id    TEXT    NOT NULL,
        sensor       TEXT    NOT NULL,
        id           INTEGER NOT NULL UNIQUE, -- the series' slot in series_numbers
        unit         TEXT,
        last_quality TEXT    NOT NULL,
        last_tags    TEXT    NOT NULL,
        text_gen     INTEGER NOT NULL,
        PRIMARY KEY (device_id, sensor)
      ) WITHOUT ROWID;
      CREATE TABLE series_numbers (chunk INTEGER PRIMARY KEY, data BLOB NOT NULL);`);
      const insert = db.prepare(
        "INSERT INTO series (device_id, sensor, id, unit, last_quality, last_tags, text_gen) VALUES (?, ?, ?, ?, ?, ?, ?)",
      );
      old.forEach(([device, sensor, unit, quality, tags, gen], id) => {
        insert.run(device, sensor, id, unit, quality, tags, gen);
      });
      fillNumberRows(
        db,
        old.map(
          ([, , , , , , first, last, value, seq, count], id) =>
            [id, first, last, value, seq, count, 0, 0] as const,
        ),
      );
    },
  },
  {
    // Each series' number slot gains last_seen and interval (store/sqlite-rollup.ts), for silent devices. Learned
    // here from each series' newest rows by ts (a key range each), as the writer would have learned them.
    version: 6,
    sql: "",
    run: (db) => {
      const recent = db
        .prepare<[string, string, number], number>(
          "SELECT received_at FROM readings WHERE device_id = ? AND sensor = ? ORDER BY ts DESC LIMIT ?",
        )
        .pluck();
      const texts = db
        .prepare<[], [string, string, number]>("SELECT device_id, sensor, id FROM series")
        .raw()
        .all();
      // Five numbers a series, unless migration 5 ran just now and wrote today's width.
      const bytes = db.prepare<[], number>("SELECT length(data) FROM series_numbers LIMIT 1").pluck().get();
      const width = bytes === undefined ? 5 : bytes / 8 / SERIES_PER_ROW;
      const rows = readNumberRows(db, width);
      fillNumberRows(
        db,
        texts.map(([device, sensor, id]) => {
          const o = (id & (SERIES_PER_ROW - 1)) * width;
          const f = rows[id >> 6] ?? new Float64Array(SERIES_PER_ROW * width);
          const seq = f[o + 3] as number;
          const times = recent.all(device, sensor, MIGRATION_GAPS + 1).sort((a, b) => a - b);
          let seen = times[0] ?? 0;
          let interval = 0;
          for (const at of times) {
            interval = nextInterval(interval, seen, at);
            seen = Math.max(seen, at);
          }
          return [
            id,
            f[o] as number,
            f[o + 1] as number,
            f[o + 2] as number,
            Number.isNaN(seq) ? null : seq,
            f[o + 4] as number,
            seen,
            interval,
          ] as const;
        }),
      );
    },
  },
  {
    // The rollup tiers rollup_1m, rollup_1h, rollup_1d and the retention horizons (store/tiers.ts), filled from
    // the rows stored so far.
    version: 7,
    sql: tierMigrationSql("sqlite"),
  },
];

/** Receive-time gaps per series migration 6 learns the interval from. */
const MIGRATION_GAPS = 16;

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
      m.run?.(db);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return latest;
}

/** The columns a resend must match for its copy to count as a duplicate rather than a conflict. */
const MEASUREMENT = "value, unit, seq, quality, tags";

/** Options of {@link SqliteStore}; the product uses the defaults. */
export interface SqliteStoreOptions {
  /**
   * Keep the `series` rollup and the tiers in each write transaction (default true). False only for the
   * benchmark's measure of what they cost (bench/processor-child.ts): readers of a file written so see them stale.
   */
  readonly rollups?: boolean;
  /** Keep the tiers (default true; with `rollups` false, never). False only for the benchmark, as `rollups`. */
  readonly tiers?: boolean;
}

/**
 * The SQLite store, synchronous inside: the processor runs it on a worker thread (worker-store.ts) so that a commit
 * waiting for fsync never stalls deliveries and acks. A reading whose key is already stored is a duplicate when its
 * measurement (value, unit, seq, quality, tags) is the same, and a conflict when it differs; neither changes the row.
 * The `series` rollup (migration 3) and the tiers (migration 7) change in the same transaction as the rows they
 * sum, so readers never see one without the other. A reading below the `readings` horizon is refused as expired.
 */
export class SqliteStore {
  readonly db: Database.Database;
  readonly #write: Database.Transaction<(readings: readonly Reading[], storedAt: number) => WriteResult>;
  readonly #delete: Database.Transaction<(cutoff: number, limit: number) => number>;
  readonly #deleteTier: Database.Transaction<(table: TierTable, cutoff: number, limit: number) => number>;
  readonly #rollup: RollupWriter | undefined;
  readonly #tiers: TierWriter;

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
    const rollup = rollups ? new RollupWriter(this.db) : undefined;
    this.#rollup = rollup;
    const tiers = new TierWriter(this.db);
    this.#tiers = tiers;
    const keepTiers = rollups && (opts.tiers ?? true);
    this.#write = this.db.transaction((readings: readonly Reading[], storedAt: number) => {
      let inserted = 0;
      let duplicates = 0;
      let expired = 0;
      const conflicts: Conflict[] = [];
      /** The readings this batch inserted: what the tiers count (a Reading has the value as stored). */
      const added: Reading[] = [];
      const horizon = tiers.begin();
      rollup?.begin();
      readings.forEach((r, index) => {
        // Its row may have been stored, counted and deleted by retention: storing it again could count it twice.
        if (r.ts < horizon) {
          expired++;
          return;
        }
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
          added.push(r);
          rollup?.add({
            device_id: r.device_id,
            sensor: r.sensor,
            ts: r.ts,
            received_at: r.received_at,
            ...m,
          });
          return;
        }
        // Only resends reach here, so the extra lookup costs nothing on the fast path.
        const kept = stored.get(r.device_id, r.sensor, r.ts);
        if (kept === undefined || sameMeasurement(kept, m)) duplicates++;
        else conflicts.push(conflictOf(index, r, kept));
      });
      rollup?.commit();
      if (keepTiers) tiers.add(added);
      return expired > 0
        ? { inserted, duplicates, conflicts, expired, horizon }
        : { inserted, duplicates, conflicts, expired };
    });
    this.#delete = this.db.transaction(readingsDelete(this.db, rollup, tiers));
    this.#deleteTier = this.db.transaction((table: TierTable, cutoff: number, limit: number) => {
      tiers.begin();
      return tiers.deleteOlderThan(table, cutoff, limit);
    });
  }

  /** Writes a batch in one IMMEDIATE transaction; returns once it has committed (throws SQLite's error if not). */
  writeBatch(readings: readonly Reading[]): WriteResult {
    if (readings.length === 0) return EMPTY_RESULT;
    return this.#forgetOnError(() => this.#write.immediate(readings, Date.now()));
  }

  /**
   * Deletes at most `limit` readings whose `ts` is before `cutoff` (epoch ms) in one IMMEDIATE transaction, each
   * series' old rows as one key range, corrects the rollup (first_ts, count; a series left empty is removed) and
   * raises the `readings` horizon to `cutoff`. Returns how many were deleted; fewer than `limit` means none older
   * than `cutoff` is left.
   */
  deleteOlderThan(cutoff: number, limit: number): number {
    return this.#forgetOnError(() => this.#delete.immediate(cutoff, limit));
  }

  /** {@link ReadingStore.deleteTierOlderThan} in one IMMEDIATE transaction (TierWriter.deleteOlderThan). */
  deleteTierOlderThan(table: TierTable, cutoff: number, limit: number): number {
    return this.#forgetOnError(() => this.#deleteTier.immediate(table, cutoff, limit));
  }

  /** A transaction that failed was rolled back: the copies in memory, changed for it, are forgotten. */
  #forgetOnError<T>(transaction: () => T): T {
    try {
      return transaction();
    } catch (err) {
      this.#rollup?.forget();
      this.#tiers.forget();
      throw err;
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

const EMPTY_RESULT: WriteResult = Object.freeze({ inserted: 0, duplicates: 0, conflicts: [], expired: 0 });
