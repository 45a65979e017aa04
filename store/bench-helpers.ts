/**
 * Writes for the benchmark's reference points, kept in store/ so that every statement against `readings` lives
 * here: bench/raw.ts measures the raw ceiling of SQLite inserts and bench/naive.ts a straightforward processor, both
 * on purpose without the product's store (store/sqlite.ts). Not used by the product.
 */
import type Database from "better-sqlite3";
import type { Reading } from "../schemas/index.js";

/**
 * The version 1 columns (the benchmark's readings carry no quality or tags, which take their defaults). A reading
 * whose key is stored already is skipped, as the product does.
 */
const INSERT_ONE =
  "INSERT INTO readings (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at) " +
  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";

/** Inserts one reading with the given commit time; returns 1 when a row was added, 0 when its key was stored. */
export type InsertOne = (reading: Reading, storedAt: number) => number;

/**
 * One prepared single-row INSERT on `db` (opened and migrated by the caller, e.g. with store/sqlite.ts's
 * `openDatabase`). It runs in whatever transaction the caller holds; outside one, each call is its own transaction
 * (autocommit), which is what the per-row reference measures.
 */
export function prepareInsertOne(db: Database.Database): InsertOne {
  const insert = db.prepare(INSERT_ONE);
  return (r, storedAt) =>
    insert.run(r.device_id, r.sensor, r.ts, r.value, r.unit, r.seq, r.gateway_id, r.received_at, storedAt)
      .changes;
}
