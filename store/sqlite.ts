import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { DEFAULT_QUALITY, type Reading } from "../schemas/index.js";
import type { Conflict, WriteResult } from "./store.js";

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
];

/**
 * How long a write waits for another connection's write lock. Short, because better-sqlite3 waits synchronously:
 * the processor retries a busy batch itself, with backoff, and keeps its event loop (heartbeats, /readyz) alive.
 */
const BUSY_TIMEOUT_MS = 250;
const CACHE_KIB = 65_536;
const COLUMNS = "device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at, quality, tags";
const NO_TAGS = "{}";

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

type StoredMeasurement = Pick<Reading, "value" | "unit" | "seq" | "quality"> & { tags: string };

function describeMeasurement(m: StoredMeasurement): string {
  const parts = [`value ${m.value}`];
  if (m.unit !== null) parts.push(`unit ${m.unit}`);
  if (m.seq !== null) parts.push(`seq ${m.seq}`);
  if (m.quality !== DEFAULT_QUALITY) parts.push(`quality ${m.quality}`);
  if (m.tags !== NO_TAGS) parts.push(`tags ${m.tags}`);
  return parts.join(", ");
}

function measurementOf(r: Reading): StoredMeasurement {
  return {
    value: r.value,
    unit: r.unit,
    seq: r.seq,
    quality: r.quality ?? DEFAULT_QUALITY,
    tags: r.tags === undefined ? NO_TAGS : JSON.stringify(r.tags),
  };
}

function sameMeasurement(a: StoredMeasurement, b: StoredMeasurement): boolean {
  return (
    a.value === b.value &&
    a.unit === b.unit &&
    a.seq === b.seq &&
    a.quality === b.quality &&
    a.tags === b.tags
  );
}

/**
 * The SQLite store, synchronous inside: the processor runs it on a worker thread (worker-store.ts) so that a commit
 * waiting for fsync never stalls deliveries and acks. A reading whose key is already stored is a duplicate when its
 * measurement (value, unit, seq, quality, tags) is the same, and a conflict when it differs; neither changes the row.
 */
export class SqliteStore {
  readonly db: Database.Database;
  readonly #write: Database.Transaction<(readings: readonly Reading[], storedAt: number) => WriteResult>;

  constructor(path: string) {
    this.db = openDatabase(path);
    // One prepared single-row INSERT: measured cheaper per row than multi-row VALUES lists (bench/README.md).
    const insert = this.db.prepare(
      `INSERT INTO readings (${COLUMNS}) VALUES (${COLUMNS.split(",").fill("?").join(", ")}) ON CONFLICT DO NOTHING`,
    );
    const stored = this.db.prepare<[string, string, number], StoredMeasurement>(
      `SELECT ${MEASUREMENT} FROM readings WHERE device_id = ? AND sensor = ? AND ts = ?`,
    );
    this.#write = this.db.transaction((readings: readonly Reading[], storedAt: number) => {
      let inserted = 0;
      let duplicates = 0;
      const conflicts: Conflict[] = [];
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
          return;
        }
        // Only resends reach here, so the extra lookup costs nothing on the fast path.
        const kept = stored.get(r.device_id, r.sensor, r.ts);
        if (kept === undefined || sameMeasurement(kept, m)) duplicates++;
        else {
          conflicts.push({
            index,
            reason:
              `conflicting reading for ${r.device_id}/${r.sensor} at ${new Date(r.ts).toISOString()} (${r.ts}): ` +
              `stored ${describeMeasurement(kept)}; this one ${describeMeasurement(m)}`,
          });
        }
      });
      return { inserted, duplicates, conflicts };
    });
  }

  /** Writes a batch in one IMMEDIATE transaction; returns once it has committed (throws SQLite's error if not). */
  writeBatch(readings: readonly Reading[]): WriteResult {
    if (readings.length === 0) return EMPTY_RESULT;
    return this.#write.immediate(readings, Date.now());
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

const EMPTY_RESULT: WriteResult = Object.freeze({ inserted: 0, duplicates: 0, conflicts: [] });
