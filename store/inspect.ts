/**
 * Reading the `readings` table from outside the processor: tests, the demo and the benchmark check what was
 * stored through this module, so that every statement against the table lives in store/. It opens the database
 * read-only (it can neither change rows nor create the file, and WAL lets it read while the processor writes) and
 * is not part of the product's write path.
 */
import Database from "better-sqlite3";
import type { StoredReading } from "./queries.js";

/**
 * One stored row, every column of the `readings` table (store/sqlite.ts, migrations 1 and 2): the fields of a
 * {@link StoredReading} (quality `good` for version 1 readings), its tags as JSON text (`{}` when none), and when
 * and by which gateway it came.
 */
export interface StoredRow extends Omit<StoredReading, "tags"> {
  readonly tags: string;
  readonly gateway_id: string;
  /** Gateway receive time, epoch ms UTC. */
  readonly received_at: number;
  /** Commit time, epoch ms UTC. */
  readonly stored_at: number;
}

/** The key of a row: one row per (device_id, sensor, ts). */
export interface RowKey {
  readonly device_id: string;
  readonly sensor: string;
  readonly ts: number;
}

/** What one series (device_id, sensor) holds. */
export interface SeriesSummary {
  readonly device_id: string;
  readonly sensor: string;
  readonly rows: number;
  readonly firstTs: number;
  readonly lastTs: number;
  readonly minValue: number;
  readonly maxValue: number;
}

/** Row count and the sum of every value (`total()`: 0.0 for an empty table, exact for integer-valued readings). */
export interface Totals {
  readonly rows: number;
  readonly valueSum: number;
}

/** The three times of a row the benchmark's latency figures come from, as [seq, received_at, stored_at]. */
export type RowTimes = readonly [seq: number | null, receivedAt: number, storedAt: number];

const COLUMNS = "device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at, quality, tags";
const KEY_ORDER = "ORDER BY device_id, sensor, ts";

/**
 * A read-only view of one database file. Each call reads what is committed at that moment. `close()` (or `using`)
 * releases the file; calls after it throw.
 */
export class StoreInspector implements Disposable {
  readonly #db: Database.Database;

  /** Opens `path` read-only; throws when the file does not exist or is not a database with a `readings` table. */
  constructor(path: string) {
    this.#db = new Database(path, { readonly: true, fileMustExist: true });
    try {
      this.#db.prepare("SELECT 1 FROM readings LIMIT 1").get();
    } catch (err) {
      this.#db.close();
      throw err;
    }
  }

  /** Number of rows stored. */
  count(): number {
    return (this.#db.prepare("SELECT count(*) AS n FROM readings").get() as { n: number }).n;
  }

  /** Every row, ordered by key (device_id, sensor, ts). */
  rows(): StoredRow[] {
    return this.#db.prepare(`SELECT ${COLUMNS} FROM readings ${KEY_ORDER}`).all() as StoredRow[];
  }

  /** The row stored under `key`, or undefined when there is none. */
  row(key: RowKey): StoredRow | undefined {
    return this.#db
      .prepare(`SELECT ${COLUMNS} FROM readings WHERE device_id = ? AND sensor = ? AND ts = ?`)
      .get(key.device_id, key.sensor, key.ts) as StoredRow | undefined;
  }

  /** One summary per series (device_id, sensor) that holds rows, ordered by device_id then sensor. */
  series(): SeriesSummary[] {
    return this.#db
      .prepare(
        "SELECT device_id, sensor, count(*) AS rows, min(ts) AS firstTs, max(ts) AS lastTs, " +
          "min(value) AS minValue, max(value) AS maxValue FROM readings GROUP BY device_id, sensor ORDER BY 1, 2",
      )
      .all() as SeriesSummary[];
  }

  /** Row count and value sum in one pass. */
  totals(): Totals {
    return this.#db
      .prepare("SELECT count(*) AS rows, total(value) AS valueSum FROM readings")
      .get() as Totals;
  }

  /**
   * Every row's [seq, received_at, stored_at], in no particular order, streamed rather than held in memory (the
   * benchmark reads millions). Do not call other methods while iterating.
   */
  times(): IterableIterator<RowTimes> {
    return this.#db
      .prepare("SELECT seq, received_at, stored_at FROM readings")
      .raw()
      .iterate() as IterableIterator<RowTimes>;
  }

  /** Releases the file. Idempotent. */
  close(): void {
    if (this.#db.open) this.#db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Opens a read-only view of the database at `path` (see `StoreInspector`). */
export function inspectStore(path: string): StoreInspector {
  return new StoreInspector(path);
}

/**
 * Number of rows in the database at `path`, or 0 while there is nothing to read yet (no file, or the processor has
 * not created the table): for polling from the moment a processor starts.
 */
export function countRows(path: string): number {
  let inspector: StoreInspector;
  try {
    inspector = new StoreInspector(path);
  } catch {
    return 0;
  }
  try {
    return inspector.count();
  } finally {
    inspector.close();
  }
}

/** Every row of the database at `path`, ordered by key; throws when it cannot be read. */
export function readRows(path: string): StoredRow[] {
  const inspector = new StoreInspector(path);
  try {
    return inspector.rows();
  } finally {
    inspector.close();
  }
}
