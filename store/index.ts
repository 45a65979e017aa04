/**
 * The store: where the processor writes readings. `openStore` picks the backend from the configuration; every
 * backend implements `ReadingStore` (store.ts) and holds the same `readings` table and key.
 */

import { PostgresStore } from "./postgres.js";
import { openPostgresQueries } from "./postgres-queries.js";
import type { ReadingQueries } from "./queries.js";
import { openSqliteQueries } from "./sqlite-queries.js";
import type { ReadingStore } from "./store.js";
import { WorkerStore } from "./worker-store.js";

export type { ReadingQueries } from "./queries.js";
export type { Conflict, ReadingStore, WriteResult } from "./store.js";

/** Where the readings live: a SQLite file, or (`databaseUrl`) a PostgreSQL database. */
export interface StoreConfig {
  readonly dbPath: string;
  readonly databaseUrl?: string | undefined;
}

/** The backend `config` selects, as logs and /readyz name it. */
export function storeName(config: StoreConfig): "PostgreSQL" | "SQLite" {
  return config.databaseUrl ? "PostgreSQL" : "SQLite";
}

/**
 * Opens the configured store and applies its migrations; rejects with a one-line reason when it cannot be opened.
 * `databaseUrl` selects PostgreSQL (docs/contract.md, "Stores") and `dbPath` is then unused. SQLite runs on a
 * worker thread, so commits (which wait for fsync) never stall the caller's event loop.
 */
export async function openStore(config: StoreConfig): Promise<ReadingStore> {
  if (config.databaseUrl) return PostgresStore.open(config.databaseUrl);
  return WorkerStore.open(config.dbPath);
}

/** Opens the configured store read-only for the analysts' queries (`query`, `serve`). */
export async function openQueries(config: StoreConfig): Promise<ReadingQueries> {
  if (config.databaseUrl) return openPostgresQueries(config.databaseUrl);
  return openSqliteQueries(config.dbPath);
}
